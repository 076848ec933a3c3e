use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;
use crate::api::{NamespaceSelection, ServiceAccountSelection};
use crate::cloud::credentials::{ProviderConfig, SourceConfig};
use crate::cloud::registry::Registry;
use crate::cluster::Error;
use crate::model::plan::ServiceAccountOutcome;
use crate::model::token::TokenRequest;

/// What converging yields, per namespace.
type Results = Vec<(String, Result<NamespaceOutcome, Error>)>;

fn resolved(sa_names: &[&str]) -> Resolved {
    Resolved {
        name: "b".into(),
        uid: "uid-b".into(),
        request: TokenRequest {
            registry: Registry::Personal {
                region: "cn-hangzhou".into(),
            },
            provider: ProviderConfig {
                source: SourceConfig::WorkerRole { role_name: None },
                assume_role: None,
            },
            discover_domains: false,
            renew_before: Duration::from_secs(900),
        },
        domains: None,
        namespaces: NamespaceSelection::default(),
        allowed: None,
        service_accounts: ServiceAccountSelection {
            names: Some(sa_names.iter().map(|s| (*s).to_owned()).collect()),
            ..ServiceAccountSelection::default()
        },
        renew_before: Duration::from_secs(900),
        previous_domains: Vec::new(),
        previous_token: None,
        inject_on_create: false,
        created_at: None,
    }
}

fn sa(name: &str, bound: bool) -> ServiceAccountOutcome {
    ServiceAccountOutcome {
        name: name.into(),
        labels: BTreeMap::new(),
        bound,
    }
}

fn outcome(
    secret: SecretState,
    contributors: &[&str],
    sas: Vec<ServiceAccountOutcome>,
) -> NamespaceOutcome {
    NamespaceOutcome {
        secret,
        contributors: contributors.iter().map(|s| (*s).to_owned()).collect(),
        service_accounts: sas,
        service_account_errors: Vec::new(),
    }
}

fn selection(selected: &[&str], not_allowed: &[&str]) -> NamespaceSelectionResult {
    let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    NamespaceSelectionResult {
        selected: set(selected),
        not_allowed: set(not_allowed),
    }
}

#[test]
fn counts_synced_namespaces_and_selected_bound_service_accounts() {
    let results: Results = vec![
        (
            "a".to_owned(),
            Ok(outcome(
                SecretState::Current,
                &["b"],
                vec![sa("default", true), sa("builder", false), sa("other", true)],
            )),
        ),
        // Current, but without this binding's auths yet (no valid token): not synced.
        (
            "c".to_owned(),
            Ok(outcome(
                SecretState::Current,
                &["x"],
                vec![sa("default", false)],
            )),
        ),
    ];
    let t = tally(
        &resolved(&["default", "builder"]),
        "p",
        "acr-credentials",
        &selection(&["a", "c"], &[]),
        &results,
    );
    assert_eq!(t.synced, 1);
    assert_eq!(
        t.service_accounts_selected, 3,
        "default and builder in a, default in c"
    );
    assert_eq!(t.service_accounts_bound, 1);
    assert!(t.failures.is_empty());
    assert!(!t.retry_soon);
}

#[test]
fn not_allowed_foreign_secret_and_failures_are_reported_per_namespace() {
    let results = vec![
        (
            "foreign".to_owned(),
            Ok(outcome(
                SecretState::OwnedByOthers,
                &[],
                vec![sa("default", true)],
            )),
        ),
        (
            "broken".to_owned(),
            Err(Error::MissingField("metadata.name")),
        ),
    ];
    let t = tally(
        &resolved(&["default"]),
        "team-policy",
        "acr-credentials",
        &selection(&["foreign", "broken"], &["denied"]),
        &results,
    );
    let reasons: Vec<(&str, &str)> = t
        .failures
        .iter()
        .map(|f| (f.name.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("denied", reasons::NAMESPACE_NOT_ALLOWED),
            ("foreign", reasons::SECRET_OWNED_BY_OTHERS),
            ("broken", reasons::SECRET_SYNC_FAILED),
        ]
    );
    assert!(t.failures[0].message.contains("team-policy"));
    assert!(t.failures[1].message.contains("acr-credentials"));
    // A ServiceAccount listing a Secret we do not own is not bound by us.
    assert_eq!(
        (t.service_accounts_selected, t.service_accounts_bound),
        (1, 0)
    );
    assert!(t.retry_soon, "a failed namespace is retried soon");
}

#[test]
fn a_namespace_left_behind_only_matters_when_its_cleanup_failed() {
    let ok: Results = vec![(
        "left".to_owned(),
        Ok(outcome(
            SecretState::Absent,
            &[],
            vec![sa("default", false)],
        )),
    )];
    let t = tally(&resolved(&["default"]), "p", "s", &selection(&[], &[]), &ok);
    assert_eq!(t, Tally::default());
    let failed = vec![("left".to_owned(), Err(Error::MissingField("x")))];
    let t = tally(
        &resolved(&["default"]),
        "p",
        "s",
        &selection(&[], &[]),
        &failed,
    );
    assert!(t.retry_soon);
    assert!(
        t.failures.is_empty(),
        "not this binding's namespace any more"
    );
}

#[test]
fn service_account_patch_errors_are_collected_and_retried_soon() {
    let mut o = outcome(SecretState::Current, &["b"], vec![sa("default", false)]);
    o.service_account_errors = vec!["ServiceAccount a/default changed 8 times".into()];
    let t = tally(
        &resolved(&["default"]),
        "p",
        "s",
        &selection(&["a"], &[]),
        &[("a".to_owned(), Ok::<_, Error>(o))],
    );
    assert_eq!(t.service_account_errors.len(), 1);
    assert!(t.retry_soon);
}
