#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::api::AcrRegistryBinding;
use crate::model::secret::{binding_owners, managed, owner_reference};

fn secret(value: serde_json::Value) -> Secret {
    serde_json::from_value(value).unwrap()
}

#[test]
fn the_binding_owner_constants_are_the_bindings_own() {
    assert_eq!(BINDING_API_VERSION, AcrRegistryBinding::api_version(&()));
    assert_eq!(BINDING_KIND, AcrRegistryBinding::kind(&()));
    let owner = Owner::from(owner_reference("b", "u"));
    assert!(owner.is_binding());
    assert!(matches!(owner.api_version, Text::Known(_)));
    assert!(matches!(owner.kind, Text::Known(_)));
    assert!(matches!(Text::from("other".to_owned()), Text::Owned(_)));
}

#[test]
fn every_field_comes_back_as_it_was() {
    let secrets = [
        json!({"metadata": {"name": "acr-credentials", "namespace": "n", "uid": "u",
            "resourceVersion": "9", "creationTimestamp": "2026-01-01T00:00:00Z",
            "finalizers": ["example.com/keep"], "generateName": "acr-",
            "labels": {(MANAGED_LABEL): "true", (MANAGED_BY_LABEL): MANAGED_BY, "team": "a"},
            "annotations": {(EXPIRES_ANNOTATION): "2026-01-01T01:00:00.5Z", "theirs": "kept"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "x",
                    "controller": true, "blockOwnerDeletion": true},
                {"apiVersion": BINDING_API_VERSION, "kind": BINDING_KIND, "name": "b",
                    "uid": "ub", "controller": false}]},
            "type": DOCKER_CONFIG_JSON, "immutable": false,
            "data": {(DOCKER_CONFIG_KEY): "e30=", "other": ""}}),
        json!({"metadata": {"name": "acr-credentials", "namespace": "n",
            "labels": {}, "annotations": {}, "ownerReferences": []},
            "data": {}, "stringData": {"k": "v"}}),
        json!({"metadata": {"name": "bare", "deletionTimestamp": "2026-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 0}}),
    ];
    for value in secrets {
        let whole = secret(value);
        let cached = CachedSecret::from(whole.clone());
        assert_eq!(cached.to_secret(), whole);
        assert_eq!(cached.is_ours(), managed(&whole.metadata));
        assert_eq!(cached.owner_bindings(), binding_owners(&whole.metadata));
        for b in ["b", "c", "none"] {
            assert_eq!(
                cached.owned_by_binding(b),
                binding_owners(&whole.metadata).contains(b)
            );
        }
        // The Store indexes by the ObjectMeta; the maps live only in the compact fields.
        assert_eq!(cached.meta().name, whole.metadata.name);
        assert_eq!(
            cached.meta().resource_version,
            whole.metadata.resource_version
        );
        assert!(cached.meta().labels.is_none() && cached.meta().owner_references.is_none());
    }
}

#[test]
fn lookups_read_the_compact_fields() {
    let cached = CachedSecret::from(secret(json!({
        "metadata": {"name": "s", "namespace": "n",
            "labels": {(MANAGED_LABEL): "true"}, "annotations": {"a": "1"}},
        "data": {(DOCKER_CONFIG_KEY): "e30="},
    })));
    assert_eq!(cached.label(MANAGED_LABEL), Some("true"));
    assert_eq!(cached.label("a"), None);
    assert_eq!(cached.annotation("a"), Some("1"));
    assert_eq!(cached.data(DOCKER_CONFIG_KEY), Some(&b"{}"[..]));
    assert_eq!(cached.data("missing"), None);
    assert_eq!(cached.labels().len(), 1);
    assert!(cached.owner_references().is_empty());
    let read: CachedSecret = serde_json::from_value(json!({
        "metadata": {"name": "s", "namespace": "n",
            "labels": {(MANAGED_LABEL): "true"}, "annotations": {"a": "1"}},
        "data": {(DOCKER_CONFIG_KEY): "e30="},
    }))
    .unwrap();
    assert_eq!(read, cached);
}

#[test]
fn debug_names_data_keys_and_never_their_values() {
    let cached = CachedSecret::from(secret(json!({
        "metadata": {"name": "s", "namespace": "n"},
        "data": {(DOCKER_CONFIG_KEY): "c2VjcmV0LXRva2Vu"},
    })));
    let printed = format!("{cached:?}");
    assert!(printed.contains(DOCKER_CONFIG_KEY), "{printed}");
    assert!(
        !printed.contains("secret-token") && !printed.contains("c2VjcmV0"),
        "{printed}"
    );
}
