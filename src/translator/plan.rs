//! What one translation pass should do, decided without touching the API server: which
//! translated objects to apply, which to prune, and which to leave alone and why.
//!
//! The ownership rule (also in the README's migration guide): an object belongs to the live
//! translation while it carries the translation label for this ConfigMap **and** no one else
//! has claimed its spec — no field manager other than the translator's owns a field under
//! `spec` (the controller's status writes are on the `status` subresource and do not count), and
//! it has no `kubectl.kubernetes.io/last-applied-configuration` annotation (client-side
//! `kubectl apply`, which Argo CD also uses, may not show up in `managedFields` when the values
//! it applies equal the translated ones). An object that fails the rule has been taken over,
//! typically by applying the `migrate` output from Git: it is never changed or deleted again.
//!
//! The AccessKey Secrets the translation writes follow the same rule, with their data in place
//! of a spec ([`secret_is_ours`]), and go once nothing needs them
//! ([`access_key_secrets_to_prune`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::events::EventType;
use serde_json::Value;

use crate::api::AcrCredentialPolicy;
use crate::legacy::TRANSLATED_LABEL;
use crate::model::events;

/// A Secret, by namespace and name.
pub type SecretRef = (String, String);

/// The annotation client-side `kubectl apply` leaves on what it applied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An object that exists in the cluster, as far as planning needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Existing {
    pub name: String,
    pub uid: Option<String>,
    /// The translation label's value, if any.
    pub label: Option<String>,
    /// Who other than the translator claims the spec, if anyone (see [`taken_over_by`]).
    pub taken_over_by: Option<String>,
    /// The spec, as JSON.
    pub spec: Value,
}

impl Existing {
    /// Builds the view of an object from its metadata and spec.
    pub fn new(meta: &ObjectMeta, spec: Value, manager: &str) -> Self {
        Existing {
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone(),
            label: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(TRANSLATED_LABEL))
                .cloned(),
            taken_over_by: taken_over_by(meta, manager),
            spec,
        }
    }
}

/// Who, other than field manager `manager`, has claimed the spec of the object: a manager that
/// owns a field under `spec` (outside the `status` subresource), or client-side `kubectl apply`
/// (its annotation). `None`: the translator alone manages it.
pub fn taken_over_by(meta: &ObjectMeta, manager: &str) -> Option<String> {
    claimed_by(meta, manager, &["f:spec"])
}

/// Who, other than field manager `manager`, has claimed any of the top-level `fields` of the
/// object (outside the `status` subresource), or applied it with client-side `kubectl apply`.
fn claimed_by(meta: &ObjectMeta, manager: &str, fields: &[&str]) -> Option<String> {
    if meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LAST_APPLIED))
    {
        return Some(format!("kubectl apply ({LAST_APPLIED})"));
    }
    meta.managed_fields.iter().flatten().find_map(|entry| {
        let who = entry.manager.as_deref().unwrap_or_default();
        let on_status = entry.subresource.as_deref() == Some("status");
        let owns = entry
            .fields_v1
            .as_ref()
            .and_then(|f| f.0.as_object())
            .is_some_and(|f| fields.iter().any(|field| f.contains_key(*field)));
        (who != manager && !on_status && owns).then(|| format!("field manager {who:?}"))
    })
}

/// Whether a Secret is one the live translation wrote and still owns: it carries this
/// ConfigMap's translation label (`label`), no manager other than `manager` owns any of its data
/// (`data`, `stringData`), and it was not applied with client-side `kubectl apply`. Only such a
/// Secret is rewritten or deleted.
pub fn secret_is_ours(meta: &ObjectMeta, label: &str, manager: &str) -> bool {
    let labelled = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(TRANSLATED_LABEL))
        .is_some_and(|v| v == label);
    labelled && claimed_by(meta, manager, &["f:data", "f:stringData"]).is_none()
}

/// The AccessKey Secret a policy reads, if its source is `accessKey`.
pub fn access_key_ref(policy: &AcrCredentialPolicy) -> Option<SecretRef> {
    let source = policy.spec.source.access_key.as_ref()?;
    let r = &source.secret_ref;
    Some((r.namespace.clone(), r.name.clone()))
}

/// The AccessKey Secrets to delete: of the `candidates` (Secrets the translation may have
/// written: named by its inline AccessKeys now or before, or read by a policy it labelled),
/// those in `namespace` (the one it writes them to) that no inline AccessKey of this pass names
/// (`wanted`) and no policy reads (`read`). Whether each is still the translation's own is
/// checked on the Secret itself ([`secret_is_ours`]).
pub fn access_key_secrets_to_prune(
    candidates: &BTreeSet<SecretRef>,
    wanted: &BTreeSet<SecretRef>,
    read: &BTreeSet<SecretRef>,
    namespace: &str,
) -> Vec<SecretRef> {
    candidates
        .iter()
        .filter(|c| c.0 == namespace && !wanted.contains(*c) && !read.contains(*c))
        .cloned()
        .collect()
}

/// Something left alone, for an Event on the ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// An object of the translated name exists without this ConfigMap's translation label.
    NameClash { kind: &'static str, name: String },
    /// A translated object was taken over; the translation no longer changes or prunes it.
    TakenOver {
        kind: &'static str,
        name: String,
        by: String,
    },
}

impl Notice {
    /// Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Notice::NameClash { .. } => events::reasons::NAME_CLASH,
            Notice::TakenOver { .. } => events::reasons::TAKEN_OVER,
        }
    }

    /// Event type: a clash is a Warning, a take-over is normal.
    pub fn event_type(&self) -> EventType {
        match self {
            Notice::NameClash { .. } => EventType::Warning,
            Notice::TakenOver { .. } => EventType::Normal,
        }
    }

    /// Event note.
    pub fn message(&self) -> String {
        match self {
            Notice::NameClash { kind, name } => format!(
                "{kind} {name} exists and was not created by this translation (no {TRANSLATED_LABEL} label for this ConfigMap); it is left as it is and the translated {kind} {name} is not applied"
            ),
            Notice::TakenOver { kind, name, by } => format!(
                "{kind} {name} was taken over ({by} manages its spec); the translation no longer changes or deletes it"
            ),
        }
    }
}

/// What to do for one kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Names of desired objects to server-side apply (absent or different).
    pub apply: Vec<String>,
    /// Translated objects the ConfigMap no longer yields: (name, uid) to delete.
    pub delete: Vec<(String, Option<String>)>,
    /// Objects left alone.
    pub notices: Vec<Notice>,
}

/// Plans one kind: `desired` maps names to specs (JSON); `existing` is every object of the kind;
/// `label` is this ConfigMap's translation label value.
pub fn plan(
    kind: &'static str,
    desired: &BTreeMap<String, Value>,
    existing: &[Existing],
    label: &str,
) -> Plan {
    let mut p = Plan::default();
    let by_name: BTreeMap<&str, &Existing> =
        existing.iter().map(|e| (e.name.as_str(), e)).collect();
    for (name, spec) in desired {
        match by_name.get(name.as_str()) {
            None => p.apply.push(name.clone()),
            Some(e) if e.label.as_deref() != Some(label) => p.notices.push(Notice::NameClash {
                kind,
                name: name.clone(),
            }),
            Some(Existing {
                taken_over_by: Some(by),
                ..
            }) => p.notices.push(Notice::TakenOver {
                kind,
                name: name.clone(),
                by: by.clone(),
            }),
            Some(e) if &e.spec != spec => p.apply.push(name.clone()),
            Some(_) => {}
        }
    }
    let wanted: BTreeSet<&str> = desired.keys().map(String::as_str).collect();
    for e in existing {
        if e.label.as_deref() != Some(label) || wanted.contains(e.name.as_str()) {
            continue;
        }
        match &e.taken_over_by {
            Some(by) => p.notices.push(Notice::TakenOver {
                kind,
                name: e.name.clone(),
                by: by.clone(),
            }),
            None => p.delete.push((e.name.clone(), e.uid.clone())),
        }
    }
    p
}

#[cfg(test)]
mod tests;
