//! Translation of the legacy `kube-system/acr-configuration` ConfigMap of Alibaba's
//! aliyun-acr-credential-helper into `AcrCredentialPolicy` and `AcrRegistryBinding` objects.
//!
//! One pure function, [`translate`] (and [`translate_configmap`] around it), serves both the
//! controller's live translation (`run --legacy-configmap`, in `translator`, which
//! labels and applies the result) and `acr-credential-controller migrate` (which prints it for a
//! GitOps repository). Names are
//! deterministic, so translating the same ConfigMap again yields the same objects. Ambiguous or
//! lossy spots become [`Warning`]s; malformed input becomes [`TranslateError`]s naming the key
//! and, where possible, the line, and then nothing is translated.
//!
//! - `keys`: the single-value keys; `registry_info`: the `acr-registry-info` list.
//! - `build`: one entry's credential policy; `naming`: deterministic object names.
//! - `go_duration`: Go's duration syntax (`expiring-threshold`).
//! - `error`: the error type.

mod build;
mod error;
mod go_duration;
mod keys;
mod naming;
mod registry_info;

use std::{collections::BTreeMap, fmt};

use k8s_openapi::{api::core::v1::ConfigMap, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use serde::Serialize;

pub use error::{TranslateError, TranslateErrors};

use crate::{
    api::{
        AcrCredentialPolicy, AcrCredentialPolicySpec, AcrRegistryBinding, AcrRegistryBindingSpec,
        PolicyReference, RegistrySpec, validate_binding, validate_policy,
    },
    sensitive::Sensitive,
};

/// Namespace of the legacy ConfigMap.
pub const CONFIGMAP_NAMESPACE: &str = "kube-system";
/// The chart's default `webhook.timeoutSeconds`: a legacy `timeout-seconds` other than this is
/// reported with the Helm value to set (`tests/chart_templates.rs` checks the chart renders
/// it; `webhook` re-exports it).
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 5;
/// Name of the legacy ConfigMap.
pub const CONFIGMAP_NAME: &str = "acr-configuration";
/// Label the controller's live translation puts on objects it translated (value: `<namespace>.<name>`
/// of the ConfigMap, [`TRANSLATED_LABEL_VALUE`] for the default one), so it can prune those the
/// ConfigMap no longer yields. `migrate` output does not carry it: objects
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
    /// The spelling of `--legacy-token-mode` (`run` and `migrate`).
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
    /// Put [`TRANSLATED_LABEL`] with [`TRANSLATED_LABEL_VALUE`] on every object. Neither caller
    /// sets it: `migrate` output carries no label, and the live translation labels the objects
    /// itself with the name of the ConfigMap it watches.
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
        // The Personal Edition registry of the cluster's region: an entry with nothing set.
        entries.push(registry_info::Entry::default());
    }

    let token_mode = options.token_mode.unwrap_or_else(|| {
        let needs_mode = entries.iter().any(|e| {
            e.access_key.is_none() && !(rrsa && e.rrsa_role_arn.is_some())
        });
        if needs_mode {
            warnings.push(Warning::new(
                "tokenMode",
                "the credential source is an install option of the legacy add-on, not part of the ConfigMap; assumed tokenMode auto (the ACK managed add-on role, source managedRole). If the add-on ran with tokenMode workerRole, translate again with the worker-role token mode (--legacy-token-mode worker-role)",
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
        match build::policy_for(entry, rrsa, token_mode, threshold.as_ref(), &mut t) {
            Ok((policy_name, policy)) => {
                let binding_name = naming::unique_binding_name(entry, &bindings, &mut t.warnings);
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

/// Renders a translation as multi-document YAML ready to commit: a header comment with the
/// command and every warning, then policies, then bindings.
pub fn render_yaml(t: &Translation) -> Result<String, serde_yaml::Error> {
    let mut out = format!(
        "# Translated from ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} by `acr-credential-controller migrate --legacy-token-mode {}`.\n",
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
