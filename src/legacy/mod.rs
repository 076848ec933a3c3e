//! Translation of the legacy `kube-system/acr-configuration` ConfigMap of Alibaba's
//! aliyun-acr-credential-helper into `AcrCredentialPolicy` and `AcrRegistryBinding` objects.
//!
//! One pure function, [`translate`], serves both the controller (which applies the result) and
//! `acr-credential-controller migrate` (which prints it for a GitOps repository). Names are
//! deterministic, so translating the same ConfigMap again yields the same objects. Ambiguous or
//! lossy spots become [`Warning`]s; malformed input becomes [`TranslateError`]s naming the key
//! and, where possible, the line, and then nothing is translated.
//!
//! - `keys`: the single-value keys; `registry_info`: the `acr-registry-info` list.
//! - `go_duration`: Go's duration syntax (`expiring-threshold`).
//! - `error`: the error type.

mod error;
mod go_duration;
mod keys;
mod registry_info;

use std::{collections::BTreeMap, fmt, time::Duration};

use k8s_openapi::{api::core::v1::ConfigMap, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use serde::Serialize;

pub use error::{TranslateError, TranslateErrors};

use crate::{
    api::{
        AccessKeySecretRef, AccessKeySource, AcrCredentialPolicy, AcrCredentialPolicySpec,
        AcrRegistryBinding, AcrRegistryBindingSpec, AssumeRole, CredentialSource,
        ManagedRoleSource, PolicyReference, RegistrySpec, RrsaSource, WorkerRoleSource, duration,
        validate_binding, validate_policy,
    },
    sensitive::Sensitive,
};

/// Namespace of the legacy ConfigMap.
pub const CONFIGMAP_NAMESPACE: &str = "kube-system";
/// Name of the legacy ConfigMap.
pub const CONFIGMAP_NAME: &str = "acr-configuration";
/// Label the controller puts on objects it translated (value: [`TRANSLATED_LABEL_VALUE`]), so it
/// can prune those the ConfigMap no longer yields. `migrate` output does not carry it: objects
/// committed to Git belong to their owner, not to the translation.
pub const TRANSLATED_LABEL: &str = "acrcredentials.io/translated-from";
/// Value of [`TRANSLATED_LABEL`]: `<namespace>.<name>` of the ConfigMap.
pub const TRANSLATED_LABEL_VALUE: &str = "kube-system.acr-configuration";
/// Namespace of the Secrets that receive `customAccessKey` pairs.
pub const ACCESS_KEY_SECRET_NAMESPACE: &str = "kube-system";

/// The keys of the legacy ConfigMap.
pub mod key {
    /// ServiceAccounts: `default`, `*`, or names separated by commas.
    pub const SERVICE_ACCOUNT: &str = "service-account";
    /// Namespaces: `all`, or names separated by commas.
    pub const WATCH_NAMESPACE: &str = "watch-namespace";
    /// Renewal threshold, a Go duration such as `15m`.
    pub const EXPIRING_THRESHOLD: &str = "expiring-threshold";
    /// The registries: a YAML list inside a string.
    pub const ACR_REGISTRY_INFO: &str = "acr-registry-info";
    /// `enable: true` inside a string turns RRSA on.
    pub const RRSA: &str = "rrsa";
    /// `enable`, `failure-policy`, `timeout-seconds` inside a string.
    pub const WEBHOOK_CONFIGURATION: &str = "webhook-configuration";
    /// Obsolete.
    pub const NOTIFY_EMAIL: &str = "notify-email";
    /// Ignored: the API follows from the registry edition.
    pub const ACR_API_VERSION: &str = "acr-api-version";
    /// Every key, for typo suggestions.
    pub const ALL: [&str; 8] = [
        SERVICE_ACCOUNT,
        WATCH_NAMESPACE,
        EXPIRING_THRESHOLD,
        ACR_REGISTRY_INFO,
        RRSA,
        WEBHOOK_CONFIGURATION,
        NOTIFY_EMAIL,
        ACR_API_VERSION,
    ];
}

/// How aliyun-acr-credential-helper obtained credentials. This was an install option of the
/// add-on (`tokenMode`), not part of the ConfigMap, so the caller says which it was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenMode {
    /// `tokenMode: auto`: the ACK managed add-on role (AliyunCSManagedAcrRole).
    #[default]
    Auto,
    /// `tokenMode: workerRole`: the cluster's worker RAM role.
    WorkerRole,
}

impl TokenMode {
    /// The spelling of `migrate --token-mode`.
    pub fn as_arg(self) -> &'static str {
        match self {
            TokenMode::Auto => "auto",
            TokenMode::WorkerRole => "worker-role",
        }
    }
}

/// Options of [`translate`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TranslateOptions {
    /// The add-on's `tokenMode`; `None` assumes `auto` and says so in a warning.
    pub token_mode: Option<TokenMode>,
    /// Put [`TRANSLATED_LABEL`] on every object (the controller does; `migrate` does not).
    pub label_as_translated: bool,
}

/// Something the translation had to decide or drop; the user should read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// The ConfigMap key it concerns.
    pub key: String,
    /// What happened.
    pub message: String,
}

impl Warning {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Warning {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// An AccessKey pair that was written in plain text in `acr-registry-info`. The translated
/// policy points at a Secret that must hold it; the controller may create that Secret, the CLI
/// never prints the values.
#[derive(Clone, Debug)]
pub struct LegacyAccessKey {
    /// Namespace of the Secret the policy references.
    pub namespace: String,
    /// Name of the Secret the policy references.
    pub name: String,
    /// The AccessKey ID (`customAccessKey`), for the Secret's `AccessKeyId` key.
    pub access_key_id: Sensitive<String>,
    /// The AccessKey secret (`customAccessKeySecret`), for the Secret's `AccessKeySecret` key.
    pub access_key_secret: Sensitive<String>,
}

/// The result of a successful translation. Objects are sorted by name.
#[derive(Clone, Debug, Default)]
pub struct Translation {
    /// Credential policies, one per distinct credential configuration.
    pub policies: Vec<AcrCredentialPolicy>,
    /// Registry bindings, one per `acr-registry-info` entry.
    pub bindings: Vec<AcrRegistryBinding>,
    /// AccessKey pairs that must be moved into Secrets.
    pub access_keys: Vec<LegacyAccessKey>,
    /// The token mode the translation used (given, or assumed with a warning).
    pub token_mode: TokenMode,
    /// What the user should know.
    pub warnings: Vec<Warning>,
}

/// Translates a ConfigMap object; see [`translate`]. Warns when it is not
/// `kube-system/acr-configuration`.
pub fn translate_configmap(
    cm: &ConfigMap,
    options: &TranslateOptions,
) -> Result<Translation, TranslateErrors> {
    let data = cm.data.clone().unwrap_or_default();
    let mut t = translate(&data, options)?;
    let ns = cm
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(CONFIGMAP_NAMESPACE);
    let name = cm.metadata.name.as_deref().unwrap_or_default();
    if ns != CONFIGMAP_NAMESPACE || name != CONFIGMAP_NAME {
        t.warnings.insert(
            0,
            Warning::new(
                "metadata",
                format!("translating ConfigMap {ns}/{name}; the legacy helper only reads {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}"),
            ),
        );
    }
    Ok(t)
}

/// Translates the `data` of the legacy ConfigMap into policies and bindings.
pub fn translate(
    data: &BTreeMap<String, String>,
    options: &TranslateOptions,
) -> Result<Translation, TranslateErrors> {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();

    for k in data.keys() {
        if !key::ALL.contains(&k.as_str()) {
            errors.push(TranslateError::UnknownKey {
                key: k.clone(),
                suggestion: error::suggest(k, &key::ALL),
            });
        }
    }
    let get = |k: &str| data.get(k).map(String::as_str);

    let namespaces = keys::watch_namespace(get(key::WATCH_NAMESPACE), &mut warnings)
        .map_err(|e| errors.push(e))
        .ok();
    let service_accounts = keys::service_account(get(key::SERVICE_ACCOUNT), &mut warnings)
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let threshold = keys::expiring_threshold(get(key::EXPIRING_THRESHOLD))
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let rrsa = keys::rrsa(get(key::RRSA))
        .map_err(|e| errors.push(e))
        .unwrap_or(false);
    let inject = keys::webhook_configuration(get(key::WEBHOOK_CONFIGURATION), &mut warnings)
        .map_err(|e| errors.push(e))
        .unwrap_or(false);
    keys::notify_email(get(key::NOTIFY_EMAIL), &mut warnings);
    keys::acr_api_version(get(key::ACR_API_VERSION), &mut warnings);
    let entries = registry_info::parse(get(key::ACR_REGISTRY_INFO), &mut warnings)
        .map_err(|mut e| errors.append(&mut e))
        .unwrap_or_default();

    if !errors.is_empty() {
        return Err(TranslateErrors(errors));
    }
    let Some(namespaces) = namespaces else {
        return Err(TranslateErrors(errors));
    };

    let mut entries = entries;
    if entries.is_empty() {
        warnings.push(Warning::new(
            key::ACR_REGISTRY_INFO,
            "no registry listed: translated to the Personal Edition registry of the controller's region, as the legacy helper did",
        ));
        entries.push(registry_info::Entry {
            index: 0,
            line: None,
            instance_id: None,
            region: None,
            domains: None,
            assume_role_arn: None,
            expire_duration: None,
            rrsa_role_arn: None,
            rrsa_oidc_provider_arn: None,
            access_key: None,
        });
    }

    let token_mode = options.token_mode.unwrap_or_else(|| {
        let needs_mode = entries.iter().any(|e| {
            e.access_key.is_none() && !(rrsa && e.rrsa_role_arn.is_some())
        });
        if needs_mode {
            warnings.push(Warning::new(
                "tokenMode",
                "the credential source is an install option of the legacy add-on, not part of the ConfigMap; assumed tokenMode auto (the ACK managed add-on role, source managedRole). If the add-on ran with tokenMode workerRole, translate again with the worker-role token mode (migrate --token-mode worker-role)",
            ));
        }
        TokenMode::Auto
    });

    let mut t = Translation {
        warnings,
        token_mode,
        ..Translation::default()
    };
    let mut policies: BTreeMap<String, AcrCredentialPolicySpec> = BTreeMap::new();
    let mut bindings: BTreeMap<String, AcrRegistryBindingSpec> = BTreeMap::new();
    for entry in &entries {
        match build_entry(entry, rrsa, token_mode, threshold.as_ref(), &mut t) {
            Ok((policy_name, policy)) => {
                let binding_name = unique_binding_name(entry, &bindings, &mut t.warnings);
                let binding = AcrRegistryBindingSpec {
                    registry: RegistrySpec {
                        instance_id: entry.instance_id.clone(),
                        region: entry.region.clone(),
                        domains: entry.domains.clone(),
                    },
                    policy_ref: Some(PolicyReference {
                        name: policy_name.clone(),
                    }),
                    namespaces: namespaces.clone(),
                    service_accounts: service_accounts.clone(),
                    inject_on_create: inject.then_some(true),
                };
                // The same rules the API server applies; a failure here is a gap in the checks
                // above, reported against the entry rather than emitted as a broken object.
                for (field, problems) in [
                    ("policy", validate_policy(&policy).err()),
                    ("binding", validate_binding(&binding).err()),
                ] {
                    for p in problems.unwrap_or_default() {
                        errors.push(TranslateError::InvalidValue {
                            key: key::ACR_REGISTRY_INFO.to_owned(),
                            line: entry.line,
                            field: format!("[{}]", entry.index),
                            message: format!("the translated {field} would be invalid: {p}"),
                        });
                    }
                }
                policies.insert(policy_name, policy);
                bindings.insert(binding_name, binding);
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(TranslateErrors(errors));
    }

    let labels = options.label_as_translated.then(|| {
        BTreeMap::from([(
            TRANSLATED_LABEL.to_owned(),
            TRANSLATED_LABEL_VALUE.to_owned(),
        )])
    });
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        labels: labels.clone(),
        ..ObjectMeta::default()
    };
    t.policies = policies
        .into_iter()
        .map(|(name, spec)| AcrCredentialPolicy {
            metadata: meta(name),
            spec,
            status: None,
        })
        .collect();
    t.bindings = bindings
        .into_iter()
        .map(|(name, spec)| AcrRegistryBinding {
            metadata: meta(name),
            spec,
            status: None,
        })
        .collect();
    t.access_keys.sort_by(|a, b| a.name.cmp(&b.name));
    t.access_keys.dedup_by(|a, b| a.name == b.name);
    Ok(t)
}

/// The policy for one entry, and its deterministic name.
fn build_entry(
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
            format!("rrsa-{}", role_slug(role)),
        )
    } else if let Some((id, secret)) = &entry.access_key {
        let secret_name = format!("acr-legacy-access-key-{}", short_hash(id.expose()));
        t.warnings.push(Warning::new(
            k,
            format!(
                "{}: the AccessKey pair was in plain text; the policy now reads it from Secret {ACCESS_KEY_SECRET_NAMESPACE}/{secret_name} (keys AccessKeyId and AccessKeySecret). Create that Secret (the values are not printed here), then remove customAccessKey and customAccessKeySecret from the ConfigMap",
                field("customAccessKey")
            ),
        ));
        t.access_keys.push(LegacyAccessKey {
            namespace: ACCESS_KEY_SECRET_NAMESPACE.to_owned(),
            name: secret_name.clone(),
            access_key_id: id.clone(),
            access_key_secret: secret.clone(),
        });
        (
            CredentialSource {
                access_key: Some(AccessKeySource {
                    secret_ref: AccessKeySecretRef {
                        namespace: ACCESS_KEY_SECRET_NAMESPACE.to_owned(),
                        name: secret_name,
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
    let name = policy_name(&spec, &slug);
    Ok((name, spec))
}

/// `legacy-managed-role` / `legacy-worker-role` for the plain add-on identities; otherwise a
/// readable slug plus a hash of the credential identity (source and assume-role settings,
/// not `renewBefore`, so changing the threshold keeps the names).
fn policy_name(spec: &AcrCredentialPolicySpec, slug: &str) -> String {
    let plain = spec.assume_role.is_none()
        && (spec.source.managed_role.is_some() || spec.source.worker_role.is_some());
    if plain {
        return format!("legacy-{slug}");
    }
    let identity = serde_json::to_string(&(&spec.source, &spec.assume_role)).unwrap_or_default();
    let via = spec
        .assume_role
        .as_ref()
        .map(|a| format!("-to-{}", role_slug(&a.role_arn)))
        .unwrap_or_default();
    format!("legacy-{slug}{via}-{}", short_hash(&identity))
}

/// `legacy-<instanceId>`, or `legacy-personal[-<region>]`; later duplicates get `-2`, `-3`.
fn unique_binding_name(
    entry: &registry_info::Entry,
    taken: &BTreeMap<String, AcrRegistryBindingSpec>,
    warnings: &mut Vec<Warning>,
) -> String {
    let base = match (&entry.instance_id, &entry.region) {
        (Some(id), _) => format!("legacy-{id}"),
        (None, Some(region)) => format!("legacy-personal-{region}"),
        (None, None) => "legacy-personal".to_owned(),
    };
    if !taken.contains_key(&base) {
        return base;
    }
    let name = (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|n| !taken.contains_key(n))
        .unwrap_or(base.clone());
    warnings.push(Warning::new(
        key::ACR_REGISTRY_INFO,
        format!(
            "[{}]: the same registry is listed again; translated as a second binding, {name}",
            entry.index
        ),
    ));
    name
}

/// The role name of an ARN, as a DNS-label-friendly slug of at most 40 characters.
fn role_slug(arn: &str) -> String {
    let name = arn.rsplit('/').next().unwrap_or(arn).to_ascii_lowercase();
    let mut slug = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (slug.is_empty() || slug.ends_with('-'))) {
            slug.push(c);
        }
    }
    slug.truncate(40);
    let slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        "role".to_owned()
    } else {
        slug
    }
}

/// 8 hex digits of the 64-bit FNV-1a hash. Stable across Rust versions and platforms, unlike
/// `std`'s hashers, which is what deterministic names need.
fn short_hash(input: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:08x}", hash >> 32)
}

/// Renders a translation as multi-document YAML ready to commit: a header comment with the
/// command and every warning, then policies, then bindings.
pub fn render_yaml(t: &Translation) -> Result<String, serde_yaml::Error> {
    let mut out = format!(
        "# Translated from ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} by `acr-credential-controller migrate --token-mode {}`.\n",
        t.token_mode.as_arg()
    );
    if !t.warnings.is_empty() {
        out.push_str("# Review these warnings before committing:\n");
        for w in &t.warnings {
            out.push_str(&format!("#   - {w}\n"));
        }
    }
    let mut docs = Vec::new();
    for p in &t.policies {
        docs.push(serde_yaml::to_string(p)?);
    }
    for b in &t.bindings {
        docs.push(serde_yaml::to_string(b)?);
    }
    out.push_str(&docs.join("---\n"));
    Ok(out)
}

#[cfg(test)]
mod tests;
