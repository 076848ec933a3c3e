//! ServiceAccount `imagePullSecrets`: add our Secret, remove exactly what we added.
//!
//! `imagePullSecrets` is an atomic list (no merge key), so it is never server-side-applied:
//! every change is a JSON patch that first tests `metadata.resourceVersion`, so a concurrent
//! writer (another tool, or Kubernetes 1.20's token controller adding a `secrets` entry right
//! after creation) makes our patch fail (409 or 422) instead of being overwritten; we re-read
//! and try again. Entries others added are never removed, reordered or duplicated. What we
//! added is recorded in the [`ADDED_ANNOTATION`] annotation, so removal touches only that.
//!
//! [`plan`] is pure; `binding::converge` sends it to the API server, with retries. It reads a
//! ServiceAccount through [`Account`], so the same plan comes from the API type and from the
//! compact form the watch cache holds (`super::cached_service_account`).

use std::collections::BTreeSet;

use json_patch::jsonptr::PointerBuf;
use json_patch::{
    AddOperation, Patch as JsonPatch, PatchOperation, RemoveOperation, TestOperation,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::json;

/// Annotation listing (comma-separated) the pull Secrets this controller added.
pub const ADDED_ANNOTATION: &str = "acrcredentials.io/added-image-pull-secrets";

/// How many times a patch is retried when the ServiceAccount changed under us.
pub const MAX_ATTEMPTS: u32 = 8;

/// What the `imagePullSecrets` patch reads of a ServiceAccount.
pub trait Account {
    /// `metadata.resourceVersion`, which the patch tests.
    fn tested_version(&self) -> Option<&str>;
    /// Whether `imagePullSecrets` is there (even empty).
    fn lists_pull_secrets(&self) -> bool;
    /// The names in `imagePullSecrets`, in order.
    fn pull_secret_names(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator;
    /// Whether `metadata.annotations` is there (even empty).
    fn has_annotations(&self) -> bool;
    /// The value of our [`ADDED_ANNOTATION`].
    fn added_annotation(&self) -> Option<&str>;
}

impl Account for ServiceAccount {
    fn tested_version(&self) -> Option<&str> {
        self.metadata.resource_version.as_deref()
    }

    fn lists_pull_secrets(&self) -> bool {
        self.image_pull_secrets.is_some()
    }

    fn pull_secret_names(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.image_pull_secrets
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|r| r.name.as_str())
    }

    fn has_annotations(&self) -> bool {
        self.metadata.annotations.is_some()
    }

    fn added_annotation(&self) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(ADDED_ANNOTATION)
            .map(String::as_str)
    }
}

/// Whether the ServiceAccount lists `secret` in imagePullSecrets.
pub fn is_bound(sa: &impl Account, secret: &str) -> bool {
    sa.pull_secret_names().any(|n| n == secret)
}

/// Whether a ServiceAccount lists the pull Secret, and who added the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Not listed (a name our annotation still records is not an entry).
    Absent,
    /// Listed, and recorded in [`ADDED_ANNOTATION`]: added by this controller (or its webhook),
    /// removed when no binding wants it any more.
    Ours,
    /// Listed but not recorded: someone else added it; it is never removed.
    Others,
}

/// The entry `secret` of `sa`'s `imagePullSecrets`, and whose it is.
pub fn entry(sa: &impl Account, secret: &str) -> Entry {
    match (is_bound(sa, secret), recorded(sa).contains(secret)) {
        (false, _) => Entry::Absent,
        (true, true) => Entry::Ours,
        (true, false) => Entry::Others,
    }
}

/// The pull Secrets our annotation says we added.
pub fn recorded(sa: &impl Account) -> BTreeSet<String> {
    sa.added_annotation()
        .map(parse_recorded)
        .unwrap_or_default()
}

/// The pull Secret names in a value of the [`ADDED_ANNOTATION`] annotation.
pub fn parse_recorded(value: &str) -> BTreeSet<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn ptr(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn annotation_ops(sa: &impl Account, names: &BTreeSet<String>) -> Vec<PatchOperation> {
    let has_annotations = sa.has_annotations();
    let has_ours = sa.added_annotation().is_some();
    if names.is_empty() {
        if has_ours {
            return vec![PatchOperation::Remove(RemoveOperation {
                path: ptr(&["metadata", "annotations", ADDED_ANNOTATION]),
            })];
        }
        return Vec::new();
    }
    let value = names.iter().cloned().collect::<Vec<_>>().join(",");
    if has_annotations {
        vec![PatchOperation::Add(AddOperation {
            path: ptr(&["metadata", "annotations", ADDED_ANNOTATION]),
            value: json!(value),
        })]
    } else {
        vec![PatchOperation::Add(AddOperation {
            path: ptr(&["metadata", "annotations"]),
            value: json!({ ADDED_ANNOTATION: value }),
        })]
    }
}

/// The JSON patch that makes `sa` reference `secret` (`want`) or drop the reference we added
/// (`!want`); `None` when nothing is to be done. The patch starts with a `test` of the
/// resourceVersion it was computed from.
pub fn plan(sa: &impl Account, secret: &str, want: bool) -> Option<JsonPatch> {
    let rv = sa.tested_version()?.to_owned();
    let mut ours = recorded(sa);
    let listed = is_bound(sa, secret);
    let mut ops = vec![PatchOperation::Test(TestOperation {
        path: ptr(&["metadata", "resourceVersion"]),
        value: json!(rv),
    })];
    if want {
        if listed {
            return None;
        }
        ops.push(PatchOperation::Add(if sa.lists_pull_secrets() {
            AddOperation {
                path: ptr(&["imagePullSecrets", "-"]),
                value: json!({ "name": secret }),
            }
        } else {
            AddOperation {
                path: ptr(&["imagePullSecrets"]),
                value: json!([{ "name": secret }]),
            }
        }));
        ours.insert(secret.to_owned());
        ops.extend(annotation_ops(sa, &ours));
    } else {
        if !ours.contains(secret) {
            return None;
        }
        // Remove the last entry with our name (the one we appended); others stay in order.
        let index = sa.pull_secret_names().rposition(|n| n == secret);
        if let Some(i) = index {
            let i = i.to_string();
            ops.push(PatchOperation::Remove(RemoveOperation {
                path: ptr(&["imagePullSecrets", &i]),
            }));
        }
        ours.remove(secret);
        ops.extend(annotation_ops(sa, &ours));
    }
    Some(JsonPatch(ops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::LocalObjectReference;

    fn sa(entries: &[&str], annotation: Option<&str>) -> ServiceAccount {
        let mut s = ServiceAccount::default();
        s.metadata.name = Some("default".into());
        s.metadata.resource_version = Some("42".into());
        if !entries.is_empty() {
            s.image_pull_secrets = Some(
                entries
                    .iter()
                    .map(|n| LocalObjectReference {
                        name: (*n).to_owned(),
                    })
                    .collect(),
            );
        }
        if let Some(a) = annotation {
            s.metadata.annotations = Some([(ADDED_ANNOTATION.to_owned(), a.to_owned())].into());
        }
        s
    }

    fn apply(sa: &ServiceAccount, patch: &JsonPatch) -> ServiceAccount {
        let mut doc = serde_json::to_value(sa).unwrap();
        json_patch::patch(&mut doc, patch).unwrap();
        serde_json::from_value(doc).unwrap()
    }

    fn names(sa: &ServiceAccount) -> Vec<String> {
        sa.image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.clone())
            .collect()
    }

    #[test]
    fn adds_after_others_and_records_it() {
        let before = sa(&["theirs", "other"], None);
        let after = apply(&before, &plan(&before, "acr-credentials", true).unwrap());
        assert_eq!(names(&after), ["theirs", "other", "acr-credentials"]);
        assert_eq!(recorded(&after), BTreeSet::from(["acr-credentials".into()]));
        assert!(
            plan(&after, "acr-credentials", true).is_none(),
            "idempotent"
        );
    }

    #[test]
    fn adds_to_an_empty_account() {
        let before = sa(&[], None);
        let after = apply(&before, &plan(&before, "acr-credentials", true).unwrap());
        assert_eq!(names(&after), ["acr-credentials"]);
    }

    #[test]
    fn an_entry_others_added_is_neither_recorded_nor_removed() {
        let before = sa(&["acr-credentials"], None);
        assert!(plan(&before, "acr-credentials", true).is_none());
        assert!(plan(&before, "acr-credentials", false).is_none());
    }

    #[test]
    fn removes_only_what_we_added_keeping_order() {
        let before = sa(&["a", "acr-credentials", "b"], Some("acr-credentials"));
        let after = apply(&before, &plan(&before, "acr-credentials", false).unwrap());
        assert_eq!(names(&after), ["a", "b"]);
        assert!(recorded(&after).is_empty());
        assert!(
            after
                .metadata
                .annotations
                .as_ref()
                .is_none_or(|a| !a.contains_key(ADDED_ANNOTATION))
        );
    }

    #[test]
    fn a_stale_resource_version_fails_the_test_op() {
        let before = sa(&[], None);
        let patch = plan(&before, "acr-credentials", true).unwrap();
        let mut moved = before.clone();
        moved.metadata.resource_version = Some("43".into());
        let mut doc = serde_json::to_value(&moved).unwrap();
        assert!(json_patch::patch(&mut doc, &patch).is_err());
    }
}
