//! Which namespaces and ServiceAccounts a binding targets: pure functions over watched state.
//!
//! Namespaces: exactly one of `names` / `all` / `selector`, minus `exclude`, and then only those
//! matching the policy's `allowedNamespaces` (the others are reported as not allowed).
//! Namespaces that do not exist or are terminating are never selected: nothing can be written
//! there. ServiceAccounts: `names` / `all` / `selector`, `names: [default]` when unset.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::api::{NamespaceSelection, ServiceAccountSelection};

/// Whether `labels` match a Kubernetes label selector. A selector that cannot be parsed matches
/// nothing; none gets here, because `api::validate_binding` and `validate_policy` (run when a
/// binding is resolved) refuse unknown operators and values that do not fit the operator.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels))
}

/// What a binding's namespace selection says about one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceVerdict {
    /// The binding writes its Secret here.
    Selected,
    /// Selected by the binding, but the policy's `allowedNamespaces` does not allow it.
    NotAllowed,
    /// Not selected.
    NotSelected,
}

/// The verdict for one namespace, given its name and labels.
pub fn namespace_verdict(
    selection: &NamespaceSelection,
    allowed: Option<&LabelSelector>,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> NamespaceVerdict {
    let excluded = selection
        .exclude
        .as_ref()
        .is_some_and(|ex| ex.iter().any(|n| n == name));
    let picked = picks(
        selection.names.as_deref(),
        selection.all,
        selection.selector.as_ref(),
        name,
        labels,
    );
    if !picked || excluded {
        NamespaceVerdict::NotSelected
    } else if allowed.is_some_and(|a| !selector_matches(a, labels)) {
        NamespaceVerdict::NotAllowed
    } else {
        NamespaceVerdict::Selected
    }
}

/// Whether a namespace can receive objects (exists and is not terminating).
pub fn namespace_usable(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p != "Terminating")
}

/// The namespaces a binding targets, over every namespace known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceSelectionResult {
    /// Usable namespaces the binding writes to.
    pub selected: BTreeSet<String>,
    /// Namespaces the binding selects but the policy does not allow.
    pub not_allowed: BTreeSet<String>,
}

/// Applies a binding's selection to every known namespace.
pub fn select_namespaces<'a>(
    selection: &NamespaceSelection,
    allowed: Option<&LabelSelector>,
    namespaces: impl IntoIterator<Item = &'a Namespace>,
) -> NamespaceSelectionResult {
    let mut out = NamespaceSelectionResult::default();
    for ns in namespaces {
        if !namespace_usable(ns) {
            continue;
        }
        let name = ns.name_any();
        match namespace_verdict(selection, allowed, &name, ns.labels()) {
            NamespaceVerdict::Selected => {
                out.selected.insert(name);
            }
            NamespaceVerdict::NotAllowed => {
                out.not_allowed.insert(name);
            }
            NamespaceVerdict::NotSelected => {}
        }
    }
    out
}

/// Whether a ServiceAccount (by name and labels) is selected.
pub fn service_account_selected(
    selection: &ServiceAccountSelection,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    picks(
        selection.names.as_deref(),
        selection.all,
        selection.selector.as_ref(),
        name,
        labels,
    )
}

/// The "exactly one of names / all / selector" choice both selections share. Validation
/// guarantees exactly one is set; with none set, nothing is picked.
fn picks(
    names: Option<&[String]>,
    all: Option<bool>,
    selector: Option<&LabelSelector>,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    if let Some(names) = names {
        names.iter().any(|n| n == name)
    } else if all == Some(true) {
        true
    } else if let Some(selector) = selector {
        selector_matches(selector, labels)
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ns(name: &str, l: &[(&str, &str)]) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.to_owned());
        n.metadata.labels = Some(labels(l));
        n
    }

    fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(pairs)),
            match_expressions: None,
        }
    }

    #[test]
    fn names_all_and_selector_minus_exclude() {
        let all = [
            ns("a", &[("team", "x")]),
            ns("b", &[]),
            ns("kube-system", &[]),
        ];
        let by_names = NamespaceSelection {
            names: Some(vec!["a".into(), "missing".into()]),
            ..Default::default()
        };
        assert_eq!(
            select_namespaces(&by_names, None, &all).selected,
            BTreeSet::from(["a".to_owned()])
        );
        let everything = NamespaceSelection {
            all: Some(true),
            exclude: Some(vec!["kube-system".into()]),
            ..Default::default()
        };
        assert_eq!(
            select_namespaces(&everything, None, &all).selected,
            BTreeSet::from(["a".to_owned(), "b".to_owned()])
        );
        let by_label = NamespaceSelection {
            selector: Some(sel(&[("team", "x")])),
            ..Default::default()
        };
        assert_eq!(
            select_namespaces(&by_label, None, &all).selected,
            BTreeSet::from(["a".to_owned()])
        );
    }

    #[test]
    fn allowed_namespaces_split_out_not_allowed() {
        let all = [ns("a", &[("acr", "yes")]), ns("b", &[])];
        let everything = NamespaceSelection {
            all: Some(true),
            ..Default::default()
        };
        let r = select_namespaces(&everything, Some(&sel(&[("acr", "yes")])), &all);
        assert_eq!(r.selected, BTreeSet::from(["a".to_owned()]));
        assert_eq!(r.not_allowed, BTreeSet::from(["b".to_owned()]));
    }

    #[test]
    fn terminating_namespaces_are_skipped() {
        let mut gone = ns("gone", &[]);
        gone.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
            phase: Some("Terminating".into()),
            ..Default::default()
        });
        let everything = NamespaceSelection {
            all: Some(true),
            ..Default::default()
        };
        assert!(
            select_namespaces(&everything, None, &[gone])
                .selected
                .is_empty()
        );
    }

    #[test]
    fn service_accounts_by_names_star_all_and_selector() {
        let none = BTreeMap::new();
        let names = ServiceAccountSelection {
            names: Some(vec!["default".into()]),
            ..Default::default()
        };
        assert!(service_account_selected(&names, "default", &none));
        assert!(!service_account_selected(&names, "builder", &none));
        let all = ServiceAccountSelection {
            all: Some(true),
            ..Default::default()
        };
        assert!(service_account_selected(&all, "x", &none));
        let by_label = ServiceAccountSelection {
            selector: Some(sel(&[("pull", "acr")])),
            ..Default::default()
        };
        assert!(service_account_selected(
            &by_label,
            "x",
            &labels(&[("pull", "acr")])
        ));
        assert!(!service_account_selected(&by_label, "x", &none));
    }
}
