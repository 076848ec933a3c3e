#![allow(clippy::unwrap_used)]
use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use serde_json::json;

const MANAGER: &str = "acr-credential-controller-legacy";
const LABEL: &str = "kube-system.acr-configuration";

fn entry(manager: &str, subresource: Option<&str>, fields: Value) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some("Apply".into()),
        subresource: subresource.map(Into::into),
        fields_v1: Some(FieldsV1(fields)),
        ..ManagedFieldsEntry::default()
    }
}

fn meta(name: &str, label: Option<&str>, managed: Vec<ManagedFieldsEntry>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        labels: label.map(|l| [(TRANSLATED_LABEL.to_owned(), l.to_owned())].into()),
        managed_fields: Some(managed),
        ..ObjectMeta::default()
    }
}

fn ours() -> ManagedFieldsEntry {
    entry(
        MANAGER,
        None,
        json!({"f:metadata": {"f:labels": {}}, "f:spec": {"f:registry": {}}}),
    )
}

#[test]
fn only_the_translator_and_status_writers_leave_an_object_ours() {
    let status = entry(
        "acr-credential-controller",
        Some("status"),
        json!({"f:status": {}}),
    );
    let finalizer = entry(
        "acr-credential-controller",
        None,
        json!({"f:metadata": {"f:finalizers": {}}}),
    );
    let m = meta("b", Some(LABEL), vec![ours(), status, finalizer]);
    assert_eq!(taken_over_by(&m, MANAGER), None);

    // `kubectl apply --server-side` of the migrate output: another manager owns spec fields.
    let m = meta(
        "b",
        Some(LABEL),
        vec![
            ours(),
            entry("kubectl", None, json!({"f:spec": {"f:registry": {}}})),
        ],
    );
    assert_eq!(
        taken_over_by(&m, MANAGER).as_deref(),
        Some("field manager \"kubectl\"")
    );

    // Client-side `kubectl apply` with identical values owns nothing under spec, but leaves
    // its annotation.
    let mut m = meta("b", Some(LABEL), vec![ours()]);
    m.annotations = Some([(LAST_APPLIED.to_owned(), "{}".to_owned())].into());
    assert!(
        taken_over_by(&m, MANAGER)
            .unwrap()
            .contains("kubectl apply")
    );
}

fn existing(name: &str, label: Option<&str>, by: Option<&str>, spec: Value) -> Existing {
    let mut managed = vec![ours()];
    if let Some(by) = by {
        managed.push(entry(by, None, json!({"f:spec": {}})));
    }
    Existing::new(&meta(name, label, managed), spec, MANAGER)
}

#[test]
fn applies_what_is_missing_or_different_and_prunes_what_is_gone() {
    let desired: BTreeMap<String, Value> = [
        ("new".to_owned(), json!({"a": 1})),
        ("same".to_owned(), json!({"a": 2})),
        ("changed".to_owned(), json!({"a": 3})),
    ]
    .into();
    let cluster = vec![
        existing("same", Some(LABEL), None, json!({"a": 2})),
        existing("changed", Some(LABEL), None, json!({"a": 0})),
        existing("gone", Some(LABEL), None, json!({})),
        existing("unrelated", None, None, json!({})),
        existing("other-configmap", Some("x.y"), None, json!({})),
    ];
    let p = plan("AcrRegistryBinding", &desired, &cluster, LABEL);
    assert_eq!(p.apply, vec!["changed".to_owned(), "new".to_owned()]);
    assert_eq!(
        p.delete,
        vec![("gone".to_owned(), Some("uid-gone".to_owned()))]
    );
    assert!(p.notices.is_empty(), "{:?}", p.notices);
}

#[test]
fn clashes_and_taken_over_objects_are_left_alone() {
    let desired: BTreeMap<String, Value> = [
        ("clash".to_owned(), json!({"a": 1})),
        ("handed-over".to_owned(), json!({"a": 2})),
    ]
    .into();
    let cluster = vec![
        existing("clash", None, Some("kubectl"), json!({"a": 9})),
        existing("handed-over", Some(LABEL), Some("argocd"), json!({"a": 0})),
        existing("handed-over-gone", Some(LABEL), Some("kubectl"), json!({})),
    ];
    let p = plan("AcrRegistryBinding", &desired, &cluster, LABEL);
    assert!(p.apply.is_empty() && p.delete.is_empty(), "{p:?}");
    let reasons: Vec<(&str, String)> = p
        .notices
        .iter()
        .map(|n| (n.reason(), n.message()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons[0].0, "NameClash");
    assert!(reasons[0].1.contains("AcrRegistryBinding clash exists"));
    assert_eq!(reasons[1].0, "TakenOver");
    assert!(reasons[1].1.contains("\"argocd\""));
    assert!(reasons[2].1.contains("handed-over-gone"));
}

#[test]
fn a_deleted_configmap_prunes_everything_still_ours() {
    let cluster = vec![
        existing("a", Some(LABEL), None, json!({})),
        existing("b", Some(LABEL), Some("kubectl"), json!({})),
    ];
    let p = plan("AcrCredentialPolicy", &BTreeMap::new(), &cluster, LABEL);
    assert_eq!(p.delete, vec![("a".to_owned(), Some("uid-a".to_owned()))]);
    assert_eq!(p.notices.len(), 1);
}

#[test]
fn a_secret_is_ours_while_labelled_for_this_configmap_and_its_data_unclaimed() {
    let data = |manager: &str| entry(manager, None, json!({"f:data": {"f:AccessKeyId": {}}}));
    let ours = meta("s", Some(LABEL), vec![data(MANAGER)]);
    assert!(secret_is_ours(&ours, LABEL, MANAGER));
    // Not labelled, or labelled for another ConfigMap: someone else's Secret of that name.
    assert!(!secret_is_ours(
        &meta("s", None, vec![data(MANAGER)]),
        LABEL,
        MANAGER
    ));
    assert!(!secret_is_ours(
        &meta("s", Some("other.acr-configuration"), vec![data(MANAGER)]),
        LABEL,
        MANAGER
    ));
    // Edited by hand (another manager owns a key of its data), or applied with kubectl.
    let edited = meta("s", Some(LABEL), vec![data(MANAGER), data("kubectl-edit")]);
    assert!(!secret_is_ours(&edited, LABEL, MANAGER));
    let string_data = entry("kubectl", None, json!({"f:stringData": {}}));
    assert!(!secret_is_ours(
        &meta("s", Some(LABEL), vec![data(MANAGER), string_data]),
        LABEL,
        MANAGER
    ));
    let mut applied = ours.clone();
    applied.annotations = Some([(LAST_APPLIED.to_owned(), "{}".to_owned())].into());
    assert!(!secret_is_ours(&applied, LABEL, MANAGER));
    // Someone else adding a label or annotation does not take it over.
    let labels = entry(
        "kubectl-label",
        None,
        json!({"f:metadata": {"f:labels": {}}}),
    );
    assert!(secret_is_ours(
        &meta("s", Some(LABEL), vec![data(MANAGER), labels]),
        LABEL,
        MANAGER
    ));
}

#[test]
fn access_key_secrets_go_once_neither_wanted_nor_read_and_only_where_the_translation_writes() {
    let r = |ns: &str, name: &str| (ns.to_owned(), name.to_owned());
    let set = |items: &[SecretRef]| items.iter().cloned().collect::<BTreeSet<_>>();
    let candidates = set(&[
        r("kube-system", "wanted"),
        r("kube-system", "read"),
        r("kube-system", "dropped"),
        r("ops", "elsewhere"),
    ]);
    let wanted = set(&[r("kube-system", "wanted")]);
    let read = set(&[r("kube-system", "read"), r("ops", "unrelated")]);
    assert_eq!(
        access_key_secrets_to_prune(&candidates, &wanted, &read, "kube-system"),
        vec![r("kube-system", "dropped")]
    );
    assert!(
        access_key_secrets_to_prune(&wanted, &wanted, &BTreeSet::new(), "kube-system").is_empty()
    );
}
