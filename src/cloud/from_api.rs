//! From the CRD types to the cloud layer's plain configuration.
//!
//! The controller and `doctor` both turn an `AcrCredentialPolicy` spec into a
//! [`ProviderConfig`] and a binding's registry into a [`Registry`]; doing it in one place keeps
//! the two in agreement. Defaults (session name, Secret keys, durations) come from the API's
//! own accessors, so they are the ones documented on the CRD.

use std::path::PathBuf;

use super::credentials::access_key::SecretRef;
use super::credentials::{AssumeRoleConfig, ProviderConfig, SourceConfig, TokenFiles};
use super::error::CloudError;
use super::registry::Registry;
use crate::api::defaults::DEFAULT_SESSION_NAME;
use crate::api::{AcrCredentialPolicySpec, RegistrySpec};

/// The provider configuration a policy describes. `files` says where the ACK add-on token and
/// the RRSA token are mounted (controller settings; a policy's own `rrsa.tokenFile` wins).
pub fn provider_config(
    spec: &AcrCredentialPolicySpec,
    files: &TokenFiles,
) -> Result<ProviderConfig, CloudError> {
    let s = &spec.source;
    let source = match (&s.managed_role, &s.worker_role, &s.rrsa, &s.access_key) {
        (Some(_), None, None, None) => SourceConfig::ManagedRole {
            token_file: files.managed.clone(),
        },
        (None, Some(_), None, None) => SourceConfig::WorkerRole { role_name: None },
        (None, None, Some(r), None) => SourceConfig::Rrsa {
            role_arn: r.role_arn.clone(),
            oidc_provider_arn: r.oidc_provider_arn.clone(),
            token_file: r
                .token_file
                .as_deref()
                .map_or_else(|| files.rrsa.clone(), PathBuf::from),
            session_name: DEFAULT_SESSION_NAME.to_string(),
        },
        (None, None, None, Some(a)) => SourceConfig::AccessKey(SecretRef {
            namespace: a.secret_ref.namespace.clone(),
            name: a.secret_ref.name.clone(),
            access_key_id_key: a.secret_ref.id_key().to_string(),
            access_key_secret_key: a.secret_ref.secret_key().to_string(),
        }),
        _ => {
            return Err(CloudError::Config {
                message:
                    "spec.source must set exactly one of managedRole, workerRole, rrsa or accessKey"
                        .into(),
            });
        }
    };
    let assume_role = spec.assume_role.as_ref().map(|h| AssumeRoleConfig {
        role_arn: h.role_arn.clone(),
        session_name: h.session_name().to_string(),
        external_id: h.external_id.clone(),
        duration: h.duration(),
    });
    Ok(ProviderConfig {
        source,
        assume_role,
    })
}

/// The registry a binding names; `default_region` is the controller's region.
pub fn registry(spec: &RegistrySpec, default_region: &str) -> Registry {
    let region = spec
        .region
        .clone()
        .unwrap_or_else(|| default_region.to_string());
    match &spec.instance_id {
        Some(id) => Registry::Enterprise {
            region,
            instance_id: id.clone(),
        },
        None => Registry::Personal { region },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn policy(yaml: &str) -> AcrCredentialPolicySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn every_source_and_the_hop() {
        let files = &TokenFiles {
            managed: "/var/addon/token-config".into(),
            rrsa: "/run/rrsa/token".into(),
        };
        let c = provider_config(&policy("source: {managedRole: {}}"), files).unwrap();
        assert_eq!(
            c.source,
            SourceConfig::ManagedRole {
                token_file: files.managed.clone()
            }
        );
        let c = provider_config(&policy("source: {workerRole: {}}"), files).unwrap();
        assert_eq!(c.source, SourceConfig::WorkerRole { role_name: None });
        let c = provider_config(
            &policy("source: {rrsa: {roleArn: 'acs:ram::1:role/r', oidcProviderArn: 'acs:ram::1:oidc-provider/p'}}"),
            files,
        )
        .unwrap();
        assert!(
            matches!(c.source, SourceConfig::Rrsa { ref token_file, .. } if token_file == Path::new("/run/rrsa/token"))
        );
        let c = provider_config(
            &policy("source: {rrsa: {roleArn: 'acs:ram::1:role/r', oidcProviderArn: 'acs:ram::1:oidc-provider/p', tokenFile: /own/token}}"),
            files,
        )
        .unwrap();
        assert!(
            matches!(c.source, SourceConfig::Rrsa { ref token_file, .. } if token_file == Path::new("/own/token"))
        );
        let c = provider_config(
            &policy("source: {accessKey: {secretRef: {namespace: ops, name: ak}}}\nassumeRole: {roleArn: 'acs:ram::2:role/x', duration: 2h, externalId: e-1}"),
            files,
        )
        .unwrap();
        assert_eq!(
            c.source,
            SourceConfig::AccessKey(SecretRef {
                namespace: "ops".into(),
                name: "ak".into(),
                access_key_id_key: "AccessKeyId".into(),
                access_key_secret_key: "AccessKeySecret".into()
            })
        );
        let hop = c.assume_role.unwrap();
        assert_eq!(
            (
                hop.duration.as_secs(),
                hop.session_name.as_str(),
                hop.external_id.as_deref()
            ),
            (7200, "acr-credential-controller", Some("e-1"))
        );
        assert!(provider_config(&policy("source: {}"), files).is_err());
    }

    #[test]
    fn registries() {
        let ee: RegistrySpec =
            serde_yaml::from_str("{instanceId: cri-abc, region: cn-shanghai}").unwrap();
        assert_eq!(
            registry(&ee, "cn-hangzhou"),
            Registry::Enterprise {
                region: "cn-shanghai".into(),
                instance_id: "cri-abc".into()
            }
        );
        let personal: RegistrySpec = serde_yaml::from_str("{}").unwrap();
        assert_eq!(
            registry(&personal, "cn-hangzhou"),
            Registry::Personal {
                region: "cn-hangzhou".into()
            }
        );
    }
}
