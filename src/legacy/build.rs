//! The credential policy of one `acr-registry-info` entry: which source (RRSA, an AccessKey,
//! or the add-on's token mode), which assume-role hop, and the renewal threshold checked
//! against the resulting token lifetime.

use std::time::Duration;

use super::{
    ACCESS_KEY_SECRET_NAMESPACE, LegacyAccessKey, TokenMode, Translation, Warning,
    error::TranslateError, key, naming, registry_info,
};
use crate::api::{
    AccessKeySecretRef, AccessKeySource, AcrCredentialPolicySpec, AssumeRole, CredentialSource,
    ManagedRoleSource, RrsaSource, WorkerRoleSource, duration,
};

/// The policy for one entry, and its deterministic name.
pub(super) fn policy_for(
    entry: &registry_info::Entry,
    rrsa_enabled: bool,
    token_mode: TokenMode,
    threshold: Option<&(String, Duration)>,
    t: &mut Translation,
) -> Result<(String, AcrCredentialPolicySpec), TranslateError> {
    let k = key::ACR_REGISTRY_INFO;
    let field = |f: &str| format!("[{}].{f}", entry.index);
    let has_rrsa = entry.rrsa_role_arn.is_some() || entry.rrsa_oidc_provider_arn.is_some();

    if has_rrsa && !rrsa_enabled {
        t.warnings.push(Warning::new(
            k,
            format!(
                "{}: rrsaRoleARN and rrsaOIDCProviderRoleARN are ignored because the rrsa key does not say \"enable: true\" (as the legacy helper ignores them)",
                field("rrsaRoleARN")
            ),
        ));
    }
    let use_rrsa = has_rrsa && rrsa_enabled;
    if use_rrsa && entry.access_key.is_some() {
        return Err(TranslateError::InvalidValue {
            key: k.to_owned(),
            line: entry.line,
            field: format!("[{}]", entry.index),
            message: "sets both RRSA roles and customAccessKey; keep one credential source"
                .to_owned(),
        });
    }

    let (source, slug) = if use_rrsa {
        let (Some(role), Some(provider)) = (&entry.rrsa_role_arn, &entry.rrsa_oidc_provider_arn)
        else {
            let missing = if entry.rrsa_role_arn.is_none() {
                "rrsaRoleARN"
            } else {
                "rrsaOIDCProviderRoleARN"
            };
            return Err(TranslateError::InvalidValue {
                key: k.to_owned(),
                line: entry.line,
                field: field(missing),
                message: format!(
                    "{missing} is missing: with RRSA, set both rrsaRoleARN and rrsaOIDCProviderRoleARN"
                ),
            });
        };
        t.warnings.push(Warning::new(
            k,
            format!(
                "{}: the trust policy of {role} lets the legacy helper's ServiceAccount (system:serviceaccount:kube-system:aliyun-acr-credential-helper) assume it; add the controller's ServiceAccount to its oidc:sub condition before switching over",
                field("rrsaRoleARN")
            ),
        ));
        (
            CredentialSource {
                rrsa: Some(RrsaSource {
                    role_arn: role.clone(),
                    oidc_provider_arn: provider.clone(),
                    token_file: None,
                }),
                ..CredentialSource::default()
            },
            format!("rrsa-{}", naming::role_slug(role)),
        )
    } else if let Some((id, secret)) = &entry.access_key {
        let access_key_secret_name =
            format!("acr-legacy-access-key-{}", naming::short_hash(id.expose()));
        t.warnings.push(Warning::new(
            k,
            format!(
                "{}: the AccessKey pair was in plain text; the policy now reads it from Secret {ACCESS_KEY_SECRET_NAMESPACE}/{access_key_secret_name} (keys AccessKeyId and AccessKeySecret). Create that Secret (the values are not printed here), then remove customAccessKey and customAccessKeySecret from the ConfigMap",
                field("customAccessKey")
            ),
        ));
        t.access_keys.push(LegacyAccessKey {
            namespace: ACCESS_KEY_SECRET_NAMESPACE.to_owned(),
            name: access_key_secret_name.clone(),
            access_key_id: id.clone(),
            access_key_secret: secret.clone(),
        });
        (
            CredentialSource {
                access_key: Some(AccessKeySource {
                    secret_ref: AccessKeySecretRef {
                        namespace: ACCESS_KEY_SECRET_NAMESPACE.to_owned(),
                        name: access_key_secret_name,
                        access_key_id_key: None,
                        access_key_secret_key: None,
                    },
                }),
                ..CredentialSource::default()
            },
            "access-key".to_owned(),
        )
    } else {
        match token_mode {
            TokenMode::Auto => (
                CredentialSource {
                    managed_role: Some(ManagedRoleSource {}),
                    ..CredentialSource::default()
                },
                "managed-role".to_owned(),
            ),
            TokenMode::WorkerRole => (
                CredentialSource {
                    worker_role: Some(WorkerRoleSource {}),
                    ..CredentialSource::default()
                },
                "worker-role".to_owned(),
            ),
        }
    };

    let assume_role = entry.assume_role_arn.as_ref().map(|arn| AssumeRole {
        role_arn: arn.clone(),
        session_name: None,
        external_id: None,
        duration: entry
            .expire_duration
            .map(|s| duration::format(Duration::from_secs(s))),
    });
    if entry.expire_duration.is_some() && assume_role.is_none() {
        t.warnings.push(Warning::new(
            k,
            format!(
                "{}: ignored without assumeRoleARN (registry tokens then live 1h)",
                field("expireDuration")
            ),
        ));
    }
    let lifetime = Duration::from_secs(
        entry
            .expire_duration
            .filter(|_| assume_role.is_some())
            .unwrap_or(3600),
    );
    if let Some((text, d)) = threshold
        && *d >= lifetime
    {
        return Err(TranslateError::InvalidValue {
            key: key::EXPIRING_THRESHOLD.to_owned(),
            line: None,
            field: key::EXPIRING_THRESHOLD.to_owned(),
            message: format!(
                "{text} is not shorter than the {} lifetime of the tokens of acr-registry-info entry [{}]; the threshold must be shorter, 15m is usual",
                duration::format(lifetime),
                entry.index
            ),
        });
    }

    let spec = AcrCredentialPolicySpec {
        source,
        assume_role,
        renew_before: threshold.map(|(text, _)| text.clone()),
        allowed_namespaces: None,
    };
    let name = naming::policy_name(&spec, &slug);
    Ok((name, spec))
}
