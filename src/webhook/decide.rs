//! The admission decision for one ServiceAccount CREATE (pure).
//!
//! A ServiceAccount gets the pull Secret when a live binding with `injectOnCreate: true`
//! selects its namespace (the policy's `allowedNamespaces` included) and the ServiceAccount,
//! with the very functions the reconciler uses ([`Resolved::selects`],
//! [`service_account_selected`]) over the same watch caches, and only bindings that
//! [`resolve`] (those the reconciler acts on). It is skipped, with a fixed reason, in an
//! excluded namespace (kube-system, kube-node-lease and the controller's own namespace: on
//! Kubernetes 1.20 the webhook's namespace selector cannot see namespace names, so the check is
//! made here too), with the opt-out label, when nothing selects it, or when a field it would
//! touch has an unexpected shape.
//!
//! The patch adds `{name: <secret>}` to `imagePullSecrets` (the whole list when there is none,
//! else appended), never duplicates or removes an entry, and records the name in
//! [`ADDED_ANNOTATION`] like the reconciler does, so the entry is removed when no binding
//! wants it any more. The Secret itself need not exist yet: the controller writes it next.

use std::collections::{BTreeMap, BTreeSet};

use json_patch::jsonptr::PointerBuf;
use kube::runtime::reflector::Store;
use serde_json::{Map, Value, json};

use super::review::ServiceAccountCreate;
use crate::api::{AcrCredentialPolicy, AcrRegistryBinding};
use crate::model::resolve::{ResolveConfig, Resolved, resolve};
use crate::model::selection::{NamespaceVerdict, namespace_verdict, service_account_selected};
use crate::model::service_accounts::{ADDED_ANNOTATION, parse_recorded};

/// The object label that opts a ServiceAccount out: `acrcredentials.io/inject-on-create: "false"`.
pub const OPT_OUT_LABEL: &str = "acrcredentials.io/inject-on-create";
/// The value of [`OPT_OUT_LABEL`] that opts out.
pub const OPT_OUT_VALUE: &str = "false";
/// Namespaces skipped whatever the configuration says (the release namespace is added).
pub const ALWAYS_EXCLUDED: [&str; 2] = ["kube-system", "kube-node-lease"];

/// The fixed decisions, used as the audit annotation and the metric's `result` label.
pub mod decision {
    /// The reference was added.
    pub const PATCHED: &str = "Patched";
    /// The ServiceAccount lists the Secret already.
    pub const ALREADY_LISTED: &str = "AlreadyListed";
    /// No binding with injectOnCreate selects it.
    pub const NOT_SELECTED: &str = "NotSelected";
    /// In an excluded namespace.
    pub const EXCLUDED_NAMESPACE: &str = "ExcludedNamespace";
    /// It carries the opt-out label.
    pub const OPTED_OUT: &str = "OptedOut";
    /// Its namespace is neither cached nor readable.
    pub const NAMESPACE_UNKNOWN: &str = "NamespaceUnknown";
    /// `imagePullSecrets`, `metadata.labels` or `metadata.annotations` is not of the shape a
    /// ServiceAccount has.
    pub const UNEXPECTED_SHAPE: &str = "UnexpectedShape";
    /// The watch caches have not listed yet; deciding on a partial view could miss bindings.
    pub const CACHES_NOT_SYNCED: &str = "CachesNotSynced";
    /// The review was well formed but not a ServiceAccount CREATE (see `review::not_ours`).
    pub const NOT_OURS: &str = "NotOurs";
    /// The body was not an AdmissionReview (answered with HTTP 400).
    pub const INVALID_REVIEW: &str = "InvalidReview";
}

/// What the webhook is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The pull Secret's name (the controller's `--secret-name`).
    pub secret_name: String,
    /// Namespaces never mutated.
    pub excluded_namespaces: BTreeSet<String>,
}

impl Settings {
    /// [`ALWAYS_EXCLUDED`] plus `release_namespace`.
    pub fn new(secret_name: &str, release_namespace: &str) -> Self {
        let mut excluded: BTreeSet<String> =
            ALWAYS_EXCLUDED.iter().map(|n| (*n).to_owned()).collect();
        excluded.insert(release_namespace.to_owned());
        Self {
            secret_name: secret_name.to_owned(),
            excluded_namespaces: excluded,
        }
    }
}

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Add the reference with this JSONPatch, because of `binding`.
    Patch { binding: String, patch: Value },
    /// Admit unchanged; the reason is one of [`decision`].
    Skip(&'static str),
}

impl Outcome {
    /// The fixed decision name.
    pub fn decision(&self) -> &'static str {
        match self {
            Outcome::Patch { .. } => decision::PATCHED,
            Outcome::Skip(why) => why,
        }
    }
}

/// The string labels of an object's metadata; `None` when they are not a map of strings.
pub fn labels_of(object: &Map<String, Value>) -> Option<BTreeMap<String, String>> {
    match object.get("metadata").and_then(|m| m.get("labels")) {
        None | Some(Value::Null) => Some(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect(),
        Some(_) => None,
    }
}

/// The binding that injects into ServiceAccount `sa` (name and labels) of `namespace` (labels
/// `ns_labels`), if any: of the live bindings with `injectOnCreate: true` whose spec selects both
/// (cheap tests first), in name order, the first that resolves against the policy cache as the
/// reconciler resolves it and still selects them with the policy's `allowedNamespaces`. Only
/// bindings up to that one are resolved. Returned as a slice for [`decide`].
pub fn candidates<'a>(
    bindings: impl IntoIterator<Item = &'a AcrRegistryBinding>,
    policies: &Store<AcrCredentialPolicy>,
    config: &ResolveConfig,
    namespace: &str,
    ns_labels: &BTreeMap<String, String>,
    sa: (&str, &BTreeMap<String, String>),
) -> Vec<Resolved> {
    let mut picked: Vec<&AcrRegistryBinding> = bindings
        .into_iter()
        .filter(|b| b.spec.inject_on_create() && b.metadata.deletion_timestamp.is_none())
        .filter(|b| {
            namespace_verdict(&b.spec.namespaces, None, namespace, ns_labels)
                != NamespaceVerdict::NotSelected
        })
        .filter(|b| service_account_selected(&b.spec.effective_service_accounts(), sa.0, sa.1))
        .collect();
    picked.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    picked
        .into_iter()
        .filter_map(|b| resolve(b, policies, config).ok())
        .find(|r| {
            r.selects(namespace, ns_labels)
                && service_account_selected(&r.service_accounts, sa.0, sa.1)
        })
        .into_iter()
        .collect()
}

/// Decides on `sa`, given its namespace's labels (`None`: the namespace is unknown) and the
/// [`candidates`] for that namespace.
pub fn decide(
    sa: &ServiceAccountCreate,
    ns_labels: Option<&BTreeMap<String, String>>,
    candidates: &[Resolved],
    settings: &Settings,
) -> Outcome {
    if settings.excluded_namespaces.contains(&sa.namespace) {
        return Outcome::Skip(decision::EXCLUDED_NAMESPACE);
    }
    let Some(labels) = labels_of(&sa.object) else {
        return Outcome::Skip(decision::UNEXPECTED_SHAPE);
    };
    if labels.get(OPT_OUT_LABEL).map(String::as_str) == Some(OPT_OUT_VALUE) {
        return Outcome::Skip(decision::OPTED_OUT);
    }
    let Some(ns_labels) = ns_labels else {
        return Outcome::Skip(decision::NAMESPACE_UNKNOWN);
    };
    let chosen = candidates.iter().find(|b| {
        b.inject_on_create
            && b.selects(&sa.namespace, ns_labels)
            && service_account_selected(&b.service_accounts, &sa.name, &labels)
    });
    let Some(binding) = chosen else {
        return Outcome::Skip(decision::NOT_SELECTED);
    };
    match patch_for(&sa.object, &settings.secret_name) {
        Ok(Some(patch)) => Outcome::Patch {
            binding: binding.name.clone(),
            patch,
        },
        Ok(None) => Outcome::Skip(decision::ALREADY_LISTED),
        Err(why) => Outcome::Skip(why),
    }
}

fn pointer(tokens: &[&str]) -> String {
    PointerBuf::from_tokens(tokens.iter().copied()).to_string()
}

/// The JSONPatch that adds `secret` to the object's `imagePullSecrets` and records it in
/// [`ADDED_ANNOTATION`]; `Ok(None)` when an entry of that name is there already.
pub fn patch_for(object: &Map<String, Value>, secret: &str) -> Result<Option<Value>, &'static str> {
    let mut ops = Vec::new();
    match object.get("imagePullSecrets") {
        None | Some(Value::Null) => ops.push(json!({
            "op": "add", "path": "/imagePullSecrets", "value": [{"name": secret}],
        })),
        Some(Value::Array(items)) => {
            if items
                .iter()
                .any(|i| i.get("name").and_then(Value::as_str) == Some(secret))
            {
                return Ok(None);
            }
            ops.push(json!({
                "op": "add", "path": "/imagePullSecrets/-", "value": {"name": secret},
            }));
        }
        Some(_) => return Err(decision::UNEXPECTED_SHAPE),
    }
    match object.get("metadata") {
        None | Some(Value::Null) => ops.push(json!({
            "op": "add", "path": "/metadata",
            "value": {"annotations": {ADDED_ANNOTATION: secret}},
        })),
        Some(Value::Object(meta)) => match meta.get("annotations") {
            None | Some(Value::Null) => ops.push(json!({
                "op": "add", "path": "/metadata/annotations",
                "value": {ADDED_ANNOTATION: secret},
            })),
            Some(Value::Object(annotations)) => {
                let mut recorded = match annotations.get(ADDED_ANNOTATION) {
                    None => BTreeSet::new(),
                    Some(Value::String(v)) => parse_recorded(v),
                    Some(_) => return Err(decision::UNEXPECTED_SHAPE),
                };
                recorded.insert(secret.to_owned());
                let value = recorded.into_iter().collect::<Vec<_>>().join(",");
                ops.push(json!({
                    "op": "add",
                    "path": pointer(&["metadata", "annotations", ADDED_ANNOTATION]),
                    "value": value,
                }));
            }
            Some(_) => return Err(decision::UNEXPECTED_SHAPE),
        },
        Some(_) => return Err(decision::UNEXPECTED_SHAPE),
    }
    Ok(Some(Value::Array(ops)))
}

#[cfg(test)]
mod tests;
