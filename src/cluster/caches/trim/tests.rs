use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::ResourceExt;
use serde_json::json;

use super::*;
use crate::model::cached_secret::CachedSecret;
use crate::model::cached_service_account::CachedServiceAccount;
use crate::model::secret::{
    Contribution, DOCKER_CONFIG_KEY, EXPIRES_ANNOTATION, MANAGED_LABEL, desired_secret, merge_into,
    owner_bindings,
};
use crate::model::selection::namespace_usable;
use crate::model::service_accounts::{is_bound, plan, recorded};
use crate::sensitive::Sensitive;

fn namespace_from(value: serde_json::Value) -> Namespace {
    serde_json::from_value(value).unwrap()
}

fn trimmed<K: Clone>(object: &K, trim: fn(&mut K)) -> K {
    let mut copy = object.clone();
    trim(&mut copy);
    copy
}

#[test]
fn a_trimmed_namespace_is_judged_as_its_whole_copy() {
    let big = "x".repeat(4096);
    let namespaces = [
        json!({"metadata": {"name": "active", "uid": "u1", "resourceVersion": "7",
            "labels": {"team": "a"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": big}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        json!({"metadata": {"name": "terminating", "labels": {"team": "b"}},
            "status": {"phase": "Terminating",
                "conditions": [{"type": "NamespaceDeletionContentFailure", "status": "True"}]}}),
        json!({"metadata": {"name": "deleting", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Active"}}),
        json!({"metadata": {"name": "bare"}}),
    ];
    for value in namespaces {
        let whole = namespace_from(value);
        let small = trimmed(&whole, namespace);
        let name = whole.name_any();
        assert_eq!(small.name_any(), name);
        assert_eq!(small.labels(), whole.labels(), "{name}");
        assert_eq!(namespace_usable(&small), namespace_usable(&whole), "{name}");
        assert_eq!(
            small.metadata.deletion_timestamp, whole.metadata.deletion_timestamp,
            "{name}"
        );
        assert!(small.metadata.annotations.is_none(), "{name}");
        assert!(
            small.metadata.uid.is_none() && small.spec.is_none(),
            "{name}"
        );
        assert!(
            small.status.as_ref().is_none_or(|s| s.conditions.is_none()),
            "{name}"
        );
    }
}

#[test]
fn a_trimmed_service_account_is_patched_exactly_as_its_whole_copy() {
    let ours = ADDED_ANNOTATION;
    let accounts = [
        json!({"metadata": {"name": "default", "namespace": "n", "resourceVersion": "1",
            "uid": "u", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "secrets": [{"name": "default-token-abcde"}]}),
        json!({"metadata": {"name": "app", "namespace": "n", "resourceVersion": "2",
            "labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "imagePullSecrets": [{"name": "theirs"}]}),
        json!({"metadata": {"name": "bound", "namespace": "n", "resourceVersion": "3",
            "annotations": {(ours): "acr-credentials", "other": "v"}},
            "imagePullSecrets": [{"name": "theirs"}, {"name": "acr-credentials"}]}),
        json!({"metadata": {"name": "only-ours", "namespace": "n", "resourceVersion": "4",
            "annotations": {(ours): "acr-credentials"}},
            "imagePullSecrets": [{"name": "acr-credentials"}]}),
        json!({"metadata": {"name": "listed-by-others", "namespace": "n", "resourceVersion": "5",
            "annotations": {"other": "v"}},
            "imagePullSecrets": [{"name": "acr-credentials"}]}),
        json!({"metadata": {"name": "going", "namespace": "n", "resourceVersion": "6",
            "deletionTimestamp": "2026-01-01T00:00:00Z", "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "x"}]}}),
    ];
    let mut patches = 0;
    for value in accounts {
        let whole: ServiceAccount = serde_json::from_value(value).unwrap();
        let small = trimmed(&whole, service_account);
        let name = whole.name_any();
        assert_eq!(small.name_any(), name);
        assert_eq!(small.namespace(), whole.namespace(), "{name}");
        assert_eq!(small.labels(), whole.labels(), "{name}");
        assert_eq!(small.image_pull_secrets, whole.image_pull_secrets, "{name}");
        assert_eq!(
            small.metadata.deletion_timestamp, whole.metadata.deletion_timestamp,
            "{name}"
        );
        assert_eq!(
            small.metadata.creation_timestamp, whole.metadata.creation_timestamp,
            "{name}"
        );
        assert_eq!(recorded(&small), recorded(&whole), "{name}");
        // The cache holds the trimmed copy compacted: it gives the trimmed copy back, and
        // every patch is planned from it as from the whole.
        let cached = CachedServiceAccount::from(small.clone());
        assert_eq!(cached.to_service_account(), small, "{name}");
        assert_eq!(cached.labels(), whole.labels(), "{name}");
        assert_eq!(recorded(&cached), recorded(&whole), "{name}");
        for secret in ["acr-credentials", "theirs", "new"] {
            assert_eq!(is_bound(&small, secret), is_bound(&whole, secret), "{name}");
            assert_eq!(
                is_bound(&cached, secret),
                is_bound(&whole, secret),
                "{name}"
            );
            for want in [true, false] {
                let (a, b) = (plan(&small, secret, want), plan(&whole, secret, want));
                assert_eq!(
                    serde_json::to_value(&a).unwrap(),
                    serde_json::to_value(&b).unwrap(),
                    "{name}, {secret}, want {want}"
                );
                assert_eq!(
                    serde_json::to_value(plan(&cached, secret, want)).unwrap(),
                    serde_json::to_value(&b).unwrap(),
                    "{name}, {secret}, want {want}, cached"
                );
                patches += usize::from(b.is_some());
            }
        }
        assert!(
            small.secrets.is_none() && small.metadata.uid.is_none(),
            "{name}"
        );
        assert!(small.metadata.owner_references.is_none(), "{name}");
        let others = small
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != ours)
            .count();
        assert_eq!(others, 0, "{name}");
    }
    // The cases above plan real patches, of both shapes, not only "nothing to do".
    assert!(patches >= 10, "{patches}");
}

#[test]
fn a_secret_not_ours_keeps_only_its_metadata_and_ours_stays_whole() {
    let with = |labels: serde_json::Value| -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": "acr-credentials", "namespace": "n", "resourceVersion": "9",
                "labels": labels, "annotations": {"theirs": "kept"}},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {(DOCKER_CONFIG_KEY): "e30="},
        }))
        .unwrap()
    };
    let ours = with(json!({(MANAGED_LABEL): "true"}));
    assert_eq!(trimmed(&ours, secret), ours);

    let theirs = with(json!({"app": "other"}));
    let small = trimmed(&theirs, secret);
    assert!(small.data.is_none());
    assert!(!is_ours(&small));
    assert_eq!(small.metadata, theirs.metadata);
}

#[test]
fn a_cached_secret_is_its_trimmed_copy_and_judged_as_its_whole_copy() {
    let binding = |name: &str| {
        json!({"apiVersion": "acrcredentials.io/v1alpha1", "kind": "AcrRegistryBinding",
            "name": name, "uid": format!("uid-{name}"), "controller": false})
    };
    let others_owner = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "d",
        "uid": "x", "controller": true, "blockOwnerDeletion": true});
    let ours_labels = json!({(MANAGED_LABEL): "true",
        "app.kubernetes.io/managed-by": "acr-credential-controller"});
    let meta =
        |labels: serde_json::Value, annotations: serde_json::Value, owners: serde_json::Value| {
            json!({"name": "acr-credentials", "namespace": "n", "uid": "u", "resourceVersion": "9",
            "creationTimestamp": "2026-01-01T00:00:00Z", "labels": labels,
            "annotations": annotations, "ownerReferences": owners,
            "managedFields": [{"manager": "m", "operation": "Update"}]})
        };
    let data = json!({(DOCKER_CONFIG_KEY): "eyJhdXRocyI6e319"});
    let secrets = [
        // Ours as the controller writes it.
        json!({"metadata": meta(ours_labels.clone(),
                json!({"acrcredentials.io/expires-at": "2026-01-01T01:00:00Z"}),
                json!([binding("a")])),
            "type": "kubernetes.io/dockerconfigjson", "data": data}),
        // Ours, shared by two bindings, with others' labels, annotations, owner, finalizer.
        json!({"metadata": {
                "name": "acr-credentials", "namespace": "n", "resourceVersion": "10",
                "finalizers": ["example.com/hold"],
                "labels": {(MANAGED_LABEL): "true", "team": "a"},
                "annotations": {"acrcredentials.io/expires-at": "2026-01-01T01:00:00.25Z",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "ownerReferences": [others_owner, binding("a"), binding("b")]},
            "type": "kubernetes.io/dockerconfigjson", "data": data, "immutable": false}),
        // Ours without data, and ours with empty maps.
        json!({"metadata": meta(ours_labels.clone(), json!(null), json!(null))}),
        json!({"metadata": meta(json!({(MANAGED_LABEL): "true"}), json!({}), json!([])),
            "data": {}}),
        // Labelled, but not "true": not ours.
        json!({"metadata": meta(json!({(MANAGED_LABEL): "false"}), json!({}),
                json!([binding("a")])),
            "data": data}),
        // Someone else's, naming a binding as owner, with data and stringData.
        json!({"metadata": meta(json!({"app": "other"}), json!({"theirs": "kept"}),
                json!([binding("a")])),
            "type": "Opaque", "data": {"password": "c2VjcmV0"}, "stringData": {"k": "v"}}),
        // Bare.
        json!({"metadata": {"name": "acr-credentials", "namespace": "n"}}),
    ];
    let mut ours = 0;
    for value in secrets {
        let mut whole: Secret = serde_json::from_value(value).unwrap();
        // The watch drops managedFields before trimming.
        whole.metadata.managed_fields = None;
        let small = trimmed(&whole, secret);
        let cached = CachedSecret::from(small.clone());
        let name = format!("{:?}", whole.metadata.resource_version);
        assert_eq!(cached.to_secret(), small, "{name}");
        assert_eq!(cached.is_ours(), is_ours(&whole), "{name}");
        assert_eq!(cached.owner_bindings(), owner_bindings(&whole), "{name}");
        for b in ["a", "b", "c"] {
            assert_eq!(
                cached.owned_by_binding(b),
                owner_bindings(&whole).contains(b),
                "{name}, {b}"
            );
        }
        assert_eq!(cached.namespace(), whole.namespace(), "{name}");
        assert_eq!(
            cached.resource_version(),
            whole.resource_version(),
            "{name}"
        );
        if is_ours(&whole) {
            ours += 1;
            assert_eq!(
                cached.data(DOCKER_CONFIG_KEY),
                whole
                    .data
                    .as_ref()
                    .and_then(|d| d.get(DOCKER_CONFIG_KEY))
                    .map(|b| &b.0[..]),
                "{name}"
            );
            assert_eq!(
                cached.annotation(EXPIRES_ANNOTATION),
                whole
                    .annotations()
                    .get(EXPIRES_ANNOTATION)
                    .map(String::as_str),
                "{name}"
            );
            // An update of ours keeps everything of the Secret read: the same from the cache.
            let desired = desired_secret(
                "acr-credentials",
                "n",
                &[Contribution {
                    binding: "c".into(),
                    binding_uid: "uid-c".into(),
                    domains: vec!["d.example.com".into()],
                    username: "u".into(),
                    password: Sensitive::new("p".into()),
                    expires_at: "2026-01-01T02:00:00Z".parse().unwrap(),
                }],
            )
            .unwrap();
            assert_eq!(
                merge_into(&cached.to_secret(), &desired),
                merge_into(&whole, &desired),
                "{name}"
            );
        } else {
            assert!(cached.data(DOCKER_CONFIG_KEY).is_none(), "{name}");
            assert_eq!(cached.to_secret().metadata, whole.metadata, "{name}");
        }
    }
    assert_eq!(ours, 4);
}
