#![allow(clippy::unwrap_used, clippy::panic)]

use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::json;

use super::*;
use crate::webhook::review::{Review, parse, tests::request};

pub(crate) fn policy(name: &str, allowed: Option<&str>) -> AcrCredentialPolicy {
    let allowed = allowed
        .map(|l| format!("  allowedNamespaces: {{matchLabels: {{{l}}}}}\n"))
        .unwrap_or_default();
    serde_yaml::from_str(&format!(
        "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialPolicy\nmetadata: {{name: {name}}}\nspec:\n  source: {{workerRole: {{}}}}\n{allowed}"
    ))
    .unwrap()
}

/// A binding `name` using policy `p` with the given namespace and ServiceAccount selections.
pub(crate) fn binding(name: &str, inject: bool, namespaces: &str, sas: &str) -> AcrRegistryBinding {
    serde_yaml::from_str(&format!(
        "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrRegistryBinding\nmetadata: {{name: {name}}}\nspec:\n  registry: {{region: cn-hangzhou}}\n  policyRef: {{name: p}}\n  namespaces: {namespaces}\n  serviceAccounts: {sas}\n  injectOnCreate: {inject}\n"
    ))
    .unwrap()
}

pub(crate) fn policies(items: Vec<AcrCredentialPolicy>) -> Store<AcrCredentialPolicy> {
    let (store, mut writer) = reflector::store();
    for p in items {
        writer.apply_watcher_event(&watcher::Event::Apply(p));
    }
    store
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn settings() -> Settings {
    Settings::new("acr-credentials", "acr-system")
}

fn create(ns: &str, object: Value) -> ServiceAccountCreate {
    match parse(request(ns, object).to_string().as_bytes()).unwrap() {
        Review::Create(c) => c,
        other => panic!("{other:?}"),
    }
}

/// Decides on `object` in `ns` (labels `ns_labels`) over `bindings` with policy `p`.
fn run(
    bindings: &[AcrRegistryBinding],
    allowed: Option<&str>,
    ns: &str,
    ns_labels: &[(&str, &str)],
    object: Value,
) -> Outcome {
    let store = policies(vec![policy("p", allowed)]);
    let l = labels(ns_labels);
    let sa = create(ns, object);
    let sa_labels = labels_of(&sa.object).unwrap_or_default();
    let c = candidates(
        bindings,
        &store,
        &crate::model::ResolveConfig::default(),
        ns,
        &l,
        (&sa.name, &sa_labels),
    );
    decide(&sa, Some(&l), &c, &settings())
}

fn apply(object: &Value, outcome: &Outcome) -> Value {
    let Outcome::Patch { patch, .. } = outcome else {
        panic!("no patch: {outcome:?}");
    };
    let mut doc = object.clone();
    let patch: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    doc
}

fn names(object: &Value) -> Vec<&str> {
    object["imagePullSecrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap_or(""))
        .collect()
}

#[test]
fn adds_the_list_and_records_it_when_there_is_none() {
    let b = [binding(
        "b",
        true,
        "{names: [team-a]}",
        "{names: [default]}",
    )];
    let sa = json!({"metadata": {"name": "default"}});
    let out = run(&b, None, "team-a", &[], sa.clone());
    assert!(matches!(&out, Outcome::Patch { binding, .. } if binding == "b"));
    let after = apply(&sa, &out);
    assert_eq!(names(&after), ["acr-credentials"]);
    assert_eq!(
        after["metadata"]["annotations"][ADDED_ANNOTATION],
        "acr-credentials"
    );
}

#[test]
fn appends_after_entries_others_put_there_and_keeps_their_annotations() {
    let b = [binding("b", true, "{all: true}", "{all: true}")];
    let sa = json!({"metadata": {"name": "x", "annotations": {"team": "a", ADDED_ANNOTATION: "other"}},
        "imagePullSecrets": [{"name": "theirs"}, {}, {"name": "theirs"}]});
    let after = apply(&sa, &run(&b, None, "ns", &[], sa.clone()));
    assert_eq!(names(&after), ["theirs", "", "theirs", "acr-credentials"]);
    assert_eq!(after["metadata"]["annotations"]["team"], "a");
    assert_eq!(
        after["metadata"]["annotations"][ADDED_ANNOTATION],
        "acr-credentials,other"
    );
}

#[test]
fn never_duplicates_an_entry() {
    let b = [binding("b", true, "{all: true}", "{all: true}")];
    let sa = json!({"metadata": {"name": "x"}, "imagePullSecrets": [{"name": "acr-credentials"}]});
    assert_eq!(
        run(&b, None, "ns", &[], sa),
        Outcome::Skip(decision::ALREADY_LISTED)
    );
}

#[test]
fn odd_shapes_are_skipped_not_patched_wrongly() {
    let b = [binding("b", true, "{all: true}", "{all: true}")];
    for sa in [
        json!({"metadata": {"name": "x"}, "imagePullSecrets": "acr-credentials"}),
        json!({"metadata": {"name": "x"}, "imagePullSecrets": {"name": "acr-credentials"}}),
        json!({"metadata": {"name": "x", "labels": ["a"]}}),
        json!({"metadata": {"name": "x", "labels": {"a": 1}}}),
        json!({"metadata": {"name": "x", "annotations": "a"}}),
        json!({"metadata": {"name": "x", "annotations": {ADDED_ANNOTATION: 3}}}),
        json!({"metadata": "x"}),
    ] {
        assert_eq!(
            run(&b, None, "ns", &[], sa.clone()),
            Outcome::Skip(decision::UNEXPECTED_SHAPE),
            "{sa}"
        );
    }
    // A null list is no list: it is added whole.
    let sa = json!({"metadata": {"name": "x"}, "imagePullSecrets": null});
    assert_eq!(
        names(&apply(&sa, &run(&b, None, "ns", &[], sa.clone()))),
        ["acr-credentials"]
    );
}

#[test]
fn selection_is_the_reconcilers() {
    let by_label = [binding(
        "b",
        true,
        "{selector: {matchLabels: {acr: 'on'}}}",
        "{selector: {matchLabels: {pull: acr}}}",
    )];
    let puller = json!({"metadata": {"name": "x", "labels": {"pull": "acr"}}});
    let other = json!({"metadata": {"name": "x"}});
    assert!(matches!(
        run(&by_label, None, "a", &[("acr", "on")], puller.clone()),
        Outcome::Patch { .. }
    ));
    assert_eq!(
        run(&by_label, None, "a", &[("acr", "on")], other).decision(),
        decision::NOT_SELECTED
    );
    assert_eq!(
        run(&by_label, None, "a", &[], puller.clone()).decision(),
        decision::NOT_SELECTED
    );
    // The policy's allowedNamespaces applies, as in the reconciler.
    assert_eq!(
        run(
            &by_label,
            Some("team: pay"),
            "a",
            &[("acr", "on")],
            puller.clone()
        )
        .decision(),
        decision::NOT_SELECTED
    );
    assert!(matches!(
        run(
            &by_label,
            Some("team: pay"),
            "a",
            &[("acr", "on"), ("team", "pay")],
            puller
        ),
        Outcome::Patch { .. }
    ));
    // exclude wins over all.
    let all = [binding(
        "b",
        true,
        "{all: true, exclude: [a]}",
        "{all: true}",
    )];
    let sa = json!({"metadata": {"name": "x"}});
    assert_eq!(
        run(&all, None, "a", &[], sa.clone()).decision(),
        decision::NOT_SELECTED
    );
    // generateName: no name yet, so `names` cannot match but `all` can.
    let generated = json!({"metadata": {"generateName": "job-"}});
    assert!(matches!(
        run(&all, None, "b", &[], generated.clone()),
        Outcome::Patch { .. }
    ));
    let named = [binding("b", true, "{all: true}", "{names: [default]}")];
    assert_eq!(
        run(&named, None, "b", &[], generated).decision(),
        decision::NOT_SELECTED
    );
}

#[test]
fn only_bindings_asking_for_it_that_resolve_and_live() {
    let sa = json!({"metadata": {"name": "default"}});
    let off = [binding("b", false, "{all: true}", "{names: [default]}")];
    assert_eq!(
        run(&off, None, "a", &[], sa.clone()).decision(),
        decision::NOT_SELECTED
    );
    // A binding whose policy is missing does not resolve: the reconciler would not act on it.
    let mut orphan = binding("b", true, "{all: true}", "{names: [default]}");
    orphan.spec.policy_ref = Some(crate::api::PolicyReference {
        name: "missing".into(),
    });
    assert_eq!(
        run(&[orphan], None, "a", &[], sa.clone()).decision(),
        decision::NOT_SELECTED
    );
    let mut deleting = binding("b", true, "{all: true}", "{names: [default]}");
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
    );
    assert_eq!(
        run(&[deleting], None, "a", &[], sa.clone()).decision(),
        decision::NOT_SELECTED
    );
    // Several: the first by name that selects it is named.
    let several = [
        binding("z", true, "{all: true}", "{all: true}"),
        binding("m", false, "{all: true}", "{all: true}"),
        binding("c", true, "{names: [a]}", "{all: true}"),
    ];
    assert!(
        matches!(run(&several, None, "a", &[], sa), Outcome::Patch { binding, .. } if binding == "c")
    );
}

#[test]
fn excluded_namespaces_and_the_opt_out_label_win() {
    let all = [binding("b", true, "{all: true}", "{all: true}")];
    let sa = json!({"metadata": {"name": "default"}});
    for ns in ["kube-system", "kube-node-lease", "acr-system"] {
        assert_eq!(
            run(&all, None, ns, &[], sa.clone()).decision(),
            decision::EXCLUDED_NAMESPACE,
            "{ns}"
        );
    }
    let opted_out = json!({"metadata": {"name": "default", "labels": {OPT_OUT_LABEL: "false"}}});
    assert_eq!(
        run(&all, None, "a", &[], opted_out).decision(),
        decision::OPTED_OUT
    );
    let opted_in = json!({"metadata": {"name": "default", "labels": {OPT_OUT_LABEL: "true"}}});
    assert!(matches!(
        run(&all, None, "a", &[], opted_in),
        Outcome::Patch { .. }
    ));
}

#[test]
fn an_unknown_namespace_is_skipped() {
    let store = policies(vec![policy("p", None)]);
    let b = [binding("b", true, "{all: true}", "{all: true}")];
    let none = BTreeMap::new();
    let c = candidates(
        &b,
        &store,
        &crate::model::ResolveConfig::default(),
        "a",
        &none,
        ("x", &none),
    );
    assert_eq!(c.len(), 1, "the binding would select it");
    let sa = create("a", json!({"metadata": {"name": "x"}}));
    assert_eq!(
        decide(&sa, None, &c, &settings()).decision(),
        decision::NAMESPACE_UNKNOWN
    );
}

#[test]
fn the_annotation_key_is_escaped_in_the_pointer() {
    let sa = json!({"metadata": {"name": "x", "annotations": {}}});
    let patch = patch_for(sa.as_object().unwrap(), "s").unwrap().unwrap();
    assert_eq!(
        patch[1]["path"],
        "/metadata/annotations/acrcredentials.io~1added-image-pull-secrets"
    );
}
