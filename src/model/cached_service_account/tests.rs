#![allow(clippy::unwrap_used)]

use kube::ResourceExt;
use serde_json::json;

use super::*;
use crate::model::service_accounts::{entry, is_bound, plan, recorded};

fn account(value: serde_json::Value) -> ServiceAccount {
    serde_json::from_value(value).unwrap()
}

fn accounts() -> Vec<ServiceAccount> {
    [
        json!({"metadata": {"name": "default", "namespace": "n", "uid": "u",
            "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "secrets": [{"name": "default-token-abcde"}], "automountServiceAccountToken": false}),
        json!({"metadata": {"name": "bound", "namespace": "n", "resourceVersion": "3",
            "labels": {"app": "web"},
            "annotations": {(ADDED_ANNOTATION): "acr-credentials", "other": "v"}},
            "imagePullSecrets": [{"name": "theirs"}, {"name": "acr-credentials"}]}),
        json!({"metadata": {"name": "empty", "namespace": "n", "resourceVersion": "4",
            "annotations": {}}, "imagePullSecrets": []}),
        json!({"metadata": {"name": "going", "namespace": "n", "resourceVersion": "6",
            "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "imagePullSecrets": [{"name": "acr-credentials"}, {"name": "acr-credentials"}]}),
    ]
    .into_iter()
    .map(account)
    .collect()
}

#[test]
fn every_field_comes_back_as_it_was() {
    for whole in accounts() {
        let cached = CachedServiceAccount::from(whole.clone());
        let name = whole.name_any();
        assert_eq!(cached.to_service_account(), whole, "{name}");
        assert_eq!(cached.name_any(), name);
        assert_eq!(cached.namespace(), whole.namespace(), "{name}");
        assert_eq!(cached.labels(), whole.labels(), "{name}");
        assert_eq!(
            cached.meta().deletion_timestamp,
            whole.metadata.deletion_timestamp
        );
        assert!(cached.meta().annotations.is_none(), "{name}");
        assert_eq!(
            cached.annotations().len(),
            whole.annotations().len(),
            "{name}"
        );
    }
}

#[test]
fn the_patch_is_planned_from_the_compact_form_as_from_the_whole() {
    let mut patches = 0;
    for whole in accounts() {
        let cached = CachedServiceAccount::from(whole.clone());
        let name = whole.name_any();
        assert_eq!(recorded(&cached), recorded(&whole), "{name}");
        for secret in ["acr-credentials", "theirs", "new"] {
            assert_eq!(
                is_bound(&cached, secret),
                is_bound(&whole, secret),
                "{name}"
            );
            assert_eq!(entry(&cached, secret), entry(&whole, secret), "{name}");
            for want in [true, false] {
                let expected = plan(&whole, secret, want);
                assert_eq!(
                    serde_json::to_value(plan(&cached, secret, want)).unwrap(),
                    serde_json::to_value(&expected).unwrap(),
                    "{name}, {secret}, want {want}"
                );
                patches += usize::from(expected.is_some());
            }
        }
    }
    assert!(patches >= 8, "{patches}");
}

#[test]
fn our_annotation_key_is_held_once_for_all() {
    let cached = CachedServiceAccount::from(accounts().remove(1));
    let (key, _) = &cached.annotations()[0];
    assert!(matches!(key, Text::Known(_)));
    assert_eq!(cached.annotation(ADDED_ANNOTATION), Some("acr-credentials"));
    assert_eq!(cached.annotation("missing"), None);
}
