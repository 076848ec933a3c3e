//! The pull Secret: a pure builder of the `kubernetes.io/dockerconfigjson` Secret a namespace
//! should hold, and the decision whether the Secret it holds must be written.
//!
//! One Secret per namespace, with a fixed name, holds `auths` for every domain of every binding
//! contributing to that namespace. It is labelled as ours and carries an owner reference to each
//! contributing binding. A Secret is never built without a valid auth: no contributions, no
//! Secret.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::api::AcrRegistryBinding;
use crate::sensitive::Sensitive;

/// Label on every Secret the controller manages; a same-named Secret without it is not ours.
pub const MANAGED_LABEL: &str = "acrcredentials.io/managed";
/// Standard managed-by label.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "acr-credential-controller";
/// Annotation: when the earliest token in the Secret expires (RFC 3339).
pub const EXPIRES_ANNOTATION: &str = "acrcredentials.io/expires-at";
/// The Secret type.
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// The data key of a dockerconfigjson Secret.
pub const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";

/// One binding's part of a namespace's Secret.
#[derive(Clone, Debug)]
pub struct Contribution {
    pub binding: String,
    pub binding_uid: String,
    pub domains: Vec<String>,
    pub username: String,
    pub password: Sensitive<String>,
    pub expires_at: Timestamp,
}

/// The owner reference a binding puts on the Secrets it contributes to.
pub fn owner_reference(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: AcrRegistryBinding::api_version(&()).into_owned(),
        kind: AcrRegistryBinding::kind(&()).into_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(false),
        block_owner_deletion: None,
    }
}

/// The `.dockerconfigjson` document: `{"auths": {domain: {username, password, auth}}}`, keys
/// sorted so equal inputs give equal bytes. When two bindings list one domain, the binding
/// whose name sorts first wins.
pub fn docker_config_json(contributions: &[Contribution]) -> Vec<u8> {
    let mut sorted: Vec<&Contribution> = contributions.iter().collect();
    sorted.sort_by(|a, b| a.binding.cmp(&b.binding));
    let mut auths: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
    for c in sorted {
        let password = c.password.expose();
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.username, password));
        for domain in &c.domains {
            auths.entry(domain.as_str()).or_insert_with(
                || serde_json::json!({"username": c.username, "password": password, "auth": auth}),
            );
        }
    }
    // A map of strings to JSON values always serialises.
    serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap_or_default()
}

/// The Secret `name` in `namespace` should be, or `None` when nothing valid contributes.
pub fn desired_secret(
    name: &str,
    namespace: &str,
    contributions: &[Contribution],
) -> Option<Secret> {
    let usable: Vec<Contribution> = contributions
        .iter()
        .filter(|c| !c.domains.is_empty() && !c.password.expose().is_empty())
        .cloned()
        .collect();
    if usable.is_empty() {
        return None;
    }
    let mut owners: Vec<OwnerReference> = usable
        .iter()
        .map(|c| owner_reference(&c.binding, &c.binding_uid))
        .collect();
    owners.sort_by(|a, b| a.name.cmp(&b.name));
    owners.dedup_by(|a, b| a.uid == b.uid);
    let expires = usable.iter().map(|c| c.expires_at).min();
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_LABEL.to_owned(), "true".to_owned()),
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
            ])),
            annotations: expires
                .map(|e| BTreeMap::from([(EXPIRES_ANNOTATION.to_owned(), e.to_string())])),
            owner_references: Some(owners),
            ..ObjectMeta::default()
        },
        type_: Some(DOCKER_CONFIG_JSON.to_owned()),
        data: Some(BTreeMap::from([(
            DOCKER_CONFIG_KEY.to_owned(),
            ByteString(docker_config_json(&usable)),
        )])),
        ..Secret::default()
    })
}

/// `existing` updated to `desired` in everything we manage (type, data, our labels, the expiry
/// annotation, the binding owner references), keeping what others added (other labels,
/// annotations and owner references) and the identity (UID, resourceVersion) of `existing`.
pub fn merge_into(existing: &Secret, desired: &Secret) -> Secret {
    let mut out = existing.clone();
    let kind = AcrRegistryBinding::kind(&());
    out.type_ = desired.type_.clone();
    out.data = desired.data.clone();
    out.string_data = None;
    let labels = out.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(desired.metadata.labels.clone().unwrap_or_default());
    let annotations = out.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.remove(EXPIRES_ANNOTATION);
    annotations.extend(desired.metadata.annotations.clone().unwrap_or_default());
    let mut owners: Vec<OwnerReference> = out
        .metadata
        .owner_references
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.kind != kind)
        .collect();
    owners.extend(
        desired
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default(),
    );
    out.metadata.owner_references = Some(owners);
    out.metadata.managed_fields = None;
    out
}

/// Whether a Secret is managed by this controller (carries our label).
pub fn is_ours(secret: &Secret) -> bool {
    managed(&secret.metadata)
}

/// Whether a Secret's metadata carries our label: the one ownership check, over metadata only
/// so that `kubectl acr explain` makes it without reading any Secret's data.
pub fn managed(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_LABEL))
        .is_some_and(|v| v == "true")
}

/// Names of the bindings a Secret names as owners.
pub fn owner_bindings(secret: &Secret) -> BTreeSet<String> {
    binding_owners(&secret.metadata)
}

/// Names of the bindings a Secret's metadata names as owners (those whose auths it holds).
pub fn binding_owners(meta: &ObjectMeta) -> BTreeSet<String> {
    let kind = AcrRegistryBinding::kind(&());
    meta.owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == kind)
        .map(|o| o.name.clone())
        .collect()
}

/// The domains a Secret's dockerconfigjson covers (empty when unparsable).
pub fn domains_in(secret: &Secret) -> BTreeSet<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(DOCKER_CONFIG_KEY))
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.0).ok())
        .and_then(|v| v.get("auths").and_then(|a| a.as_object()).cloned())
        .map(|auths| auths.keys().cloned().collect())
        .unwrap_or_default()
}

/// Whether `existing` differs from `desired` in anything we manage: type, data, our labels,
/// the expiry annotation, or the set of binding owner references.
pub fn needs_update(existing: &Secret, desired: &Secret) -> bool {
    let label = |s: &Secret, k: &str| s.metadata.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let annotation = |s: &Secret| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(EXPIRES_ANNOTATION))
            .cloned()
    };
    let owner_uids = |s: &Secret| -> BTreeSet<String> {
        let kind = AcrRegistryBinding::kind(&());
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|o| o.kind == kind)
            .map(|o| o.uid.clone())
            .collect()
    };
    existing.type_ != desired.type_
        || existing
            .data
            .as_ref()
            .and_then(|d| d.get(DOCKER_CONFIG_KEY))
            != desired.data.as_ref().and_then(|d| d.get(DOCKER_CONFIG_KEY))
        || label(existing, MANAGED_LABEL) != label(desired, MANAGED_LABEL)
        || label(existing, MANAGED_BY_LABEL) != label(desired, MANAGED_BY_LABEL)
        || annotation(existing) != annotation(desired)
        || owner_uids(existing) != owner_uids(desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contribution(binding: &str, domains: &[&str], pw: &str) -> Contribution {
        Contribution {
            binding: binding.into(),
            binding_uid: format!("uid-{binding}"),
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            username: "cr_temp_user".into(),
            password: Sensitive::new(pw.into()),
            expires_at: "2024-01-01T01:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn builds_a_valid_dockerconfigjson_for_every_domain() {
        let s = desired_secret(
            "acr-credentials",
            "team-a",
            &[
                contribution("b", &["b.example.com"], "pw-b"),
                contribution("a", &["a.example.com", "a-vpc.example.com"], "pw-a"),
            ],
        )
        .unwrap();
        assert_eq!(s.type_.as_deref(), Some(DOCKER_CONFIG_JSON));
        assert!(is_ours(&s));
        assert_eq!(owner_bindings(&s), BTreeSet::from(["a".into(), "b".into()]));
        let doc: serde_json::Value =
            serde_json::from_slice(&s.data.as_ref().unwrap()[DOCKER_CONFIG_KEY].0).unwrap();
        let auth = &doc["auths"]["a-vpc.example.com"];
        assert_eq!(auth["username"], "cr_temp_user");
        assert_eq!(auth["password"], "pw-a");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth["auth"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, b"cr_temp_user:pw-a");
        assert_eq!(doc["auths"]["b.example.com"]["password"], "pw-b");
        assert_eq!(
            domains_in(&s),
            BTreeSet::from([
                "a.example.com".into(),
                "a-vpc.example.com".into(),
                "b.example.com".into()
            ])
        );
    }

    #[test]
    fn nothing_valid_means_no_secret() {
        assert!(desired_secret("x", "ns", &[]).is_none());
        assert!(desired_secret("x", "ns", &[contribution("a", &[], "pw")]).is_none());
        assert!(desired_secret("x", "ns", &[contribution("a", &["d"], "")]).is_none());
    }

    #[test]
    fn same_input_same_bytes_and_no_update() {
        let c = [contribution("a", &["a.example.com"], "pw")];
        let one = desired_secret("x", "ns", &c).unwrap();
        let mut existing = desired_secret("x", "ns", &c).unwrap();
        existing.metadata.uid = Some("u".into());
        existing.metadata.resource_version = Some("7".into());
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("someone".into(), "else".into());
        assert!(!needs_update(&existing, &one));
        let renewed =
            desired_secret("x", "ns", &[contribution("a", &["a.example.com"], "pw2")]).unwrap();
        assert!(needs_update(&existing, &renewed));
    }

    #[test]
    fn merge_keeps_what_others_added_and_replaces_our_owners() {
        let old = desired_secret(
            "x",
            "ns",
            &[
                contribution("a", &["a.example.com"], "pw"),
                contribution("b", &["b.example.com"], "pw"),
            ],
        )
        .unwrap();
        let mut existing = old.clone();
        existing.metadata.uid = Some("u1".into());
        existing.metadata.resource_version = Some("9".into());
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "x".into());
        existing
            .metadata
            .owner_references
            .as_mut()
            .unwrap()
            .push(OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "keep".into(),
                uid: "cm".into(),
                ..OwnerReference::default()
            });
        let desired =
            desired_secret("x", "ns", &[contribution("b", &["b.example.com"], "pw")]).unwrap();
        let merged = merge_into(&existing, &desired);
        assert_eq!(merged.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(merged.metadata.resource_version.as_deref(), Some("9"));
        assert_eq!(merged.metadata.labels.as_ref().unwrap()["team"], "x");
        let owners: Vec<&str> = merged
            .metadata
            .owner_references
            .iter()
            .flatten()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(owners, ["keep", "b"]);
        assert_eq!(owner_bindings(&merged), BTreeSet::from(["b".into()]));
        assert!(!needs_update(&merged, &desired));
    }

    #[test]
    fn shared_domain_goes_to_the_first_binding_by_name() {
        let bytes = docker_config_json(&[
            contribution("z", &["d.example.com"], "pw-z"),
            contribution("a", &["d.example.com"], "pw-a"),
        ]);
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["auths"]["d.example.com"]["password"], "pw-a");
    }
}
