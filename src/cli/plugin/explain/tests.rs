#![allow(clippy::unwrap_used, clippy::panic)]

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;

use super::document::{Explanation, Inputs, StepResult, step, verdicts};
use super::steps;
use super::*;

fn binding(name: &str, spec: &str, status: &str) -> AcrRegistryBinding {
    serde_yaml::from_str(&format!(
        "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrRegistryBinding\nmetadata: {{name: {name}, generation: 2}}\nspec:\n  registry: {{instanceId: cri-abc}}\n  policyRef: {{name: p}}\n{spec}\nstatus: {status}\n"
    ))
    .unwrap()
}

fn policies(allowed: Option<&str>) -> Store<AcrCredentialPolicy> {
    let allowed = allowed
        .map(|a| format!("\n  allowedNamespaces: {a}"))
        .unwrap_or_default();
    let p: AcrCredentialPolicy = serde_yaml::from_str(&format!(
        "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialPolicy\nmetadata: {{name: p}}\nspec:\n  source: {{workerRole: {{}}}}{allowed}\n"
    ))
    .unwrap();
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Apply(p));
    store
}

fn namespace(labels: &str) -> Namespace {
    serde_yaml::from_str(&format!("metadata: {{name: team-a, labels: {labels}}}")).unwrap()
}

fn sa(yaml: &str) -> ServiceAccount {
    serde_yaml::from_str(yaml).unwrap()
}

fn ours(owners: &[&str]) -> ObjectMeta {
    let refs: Vec<String> = owners
        .iter()
        .map(|o| {
            format!("{{apiVersion: acrcredentials.io/v1alpha1, kind: AcrRegistryBinding, name: {o}, uid: u-{o}}}")
        })
        .collect();
    serde_yaml::from_str(&format!(
        "name: acr-credentials\nlabels: {{acrcredentials.io/managed: \"true\"}}\nannotations: {{acrcredentials.io/expires-at: \"2026-03-01T13:00:00Z\"}}\nownerReferences: [{}]",
        refs.join(", ")
    ))
    .unwrap()
}

const READY: &str = "{observedGeneration: 2, conditions: [{type: Ready, status: \"True\", reason: Reconciled, message: ok, lastTransitionTime: \"2026-03-01T12:00:00Z\"}]}";

struct World {
    ns: Option<Namespace>,
    sa: Option<ServiceAccount>,
    secret: Option<ObjectMeta>,
    bindings: Vec<AcrRegistryBinding>,
    policies: Store<AcrCredentialPolicy>,
}

impl World {
    fn new(b: AcrRegistryBinding) -> World {
        World {
            ns: Some(namespace("{team: web}")),
            sa: Some(sa(
                "metadata: {name: default, namespace: team-a, annotations: {acrcredentials.io/added-image-pull-secrets: acr-credentials}}\nimagePullSecrets: [{name: acr-credentials}]",
            )),
            secret: Some(ours(&["web"])),
            bindings: vec![b],
            policies: policies(None),
        }
    }

    fn explain(&self, sa: Option<&str>) -> Explanation {
        let settings = Settings::new("acr-credentials", "acr-system");
        let resolve = ResolveConfig::default();
        let every: Vec<ServiceAccount> = self.sa.iter().cloned().collect();
        steps::explain(&Inputs {
            namespace: "team-a",
            namespace_object: self.ns.as_ref(),
            service_account: sa.map(|_| self.sa.as_ref()),
            service_account_name: sa,
            service_accounts: &every,
            secret: self.secret.as_ref(),
            secret_name: "acr-credentials",
            bindings: &self.bindings,
            policies: &self.policies,
            resolve: &resolve,
            webhook: &settings,
        })
    }
}

fn web(spec: &str) -> AcrRegistryBinding {
    binding("web", spec, READY)
}

fn result_of(e: &Explanation, name: &str) -> (StepResult, String) {
    let s = e.bindings[0]
        .steps
        .iter()
        .find(|s| s.step == name)
        .unwrap_or_else(|| panic!("no step {name}"));
    (s.result, s.reason.clone())
}

#[test]
fn a_bound_service_account_passes_every_step() {
    let e = World::new(web("  namespaces: {names: [team-a]}")).explain(Some("default"));
    let b = &e.bindings[0];
    assert_eq!(b.verdict, verdicts::BOUND, "{b:#?}");
    let names: Vec<&str> = b.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        names,
        [
            step::BINDING,
            step::NAMESPACE,
            step::ALLOWED_NAMESPACES,
            step::SERVICE_ACCOUNT,
            step::INJECT_ON_CREATE,
            step::SECRET,
            step::ENTRY,
            step::RECONCILED,
            step::LAST_ERROR
        ]
    );
    assert_eq!(
        result_of(&e, step::ENTRY),
        (StepResult::Pass, verdicts::ADDED_BY_CONTROLLER.into())
    );
    assert_eq!(result_of(&e, step::INJECT_ON_CREATE).1, verdicts::OFF);
    assert_eq!(e.secret.bindings, ["web"]);
    assert_eq!(e.secret.expires_at.as_deref(), Some("2026-03-01T13:00:00Z"));
}

#[test]
fn the_first_step_decided_against_the_binding_is_the_verdict() {
    // Not selected by names; the policy would not allow it either (both are said).
    let mut w = World::new(web("  namespaces: {names: [team-b]}"));
    w.policies = policies(Some("{matchLabels: {acr: allowed}}"));
    let e = w.explain(Some("default"));
    assert_eq!(e.bindings[0].verdict, verdicts::NAMESPACE_NOT_SELECTED);
    assert_eq!(
        result_of(&e, step::ALLOWED_NAMESPACES),
        (StepResult::Fail, "NamespaceNotAllowed".into())
    );
    // Selected, not allowed.
    let mut w = World::new(web("  namespaces: {all: true}"));
    w.policies = policies(Some("{matchLabels: {acr: allowed}}"));
    let e = w.explain(Some("default"));
    assert_eq!(e.bindings[0].verdict, "NamespaceNotAllowed");
    // Allowed by label.
    w.ns = Some(namespace("{acr: allowed}"));
    assert_eq!(w.explain(Some("default")).bindings[0].verdict, "Bound");
    // ServiceAccount not selected, even though it lists the Secret (another binding's).
    let e = World::new(web(
        "  namespaces: {all: true}\n  serviceAccounts: {names: [builder]}",
    ))
    .explain(Some("default"));
    assert_eq!(
        e.bindings[0].verdict,
        verdicts::SERVICE_ACCOUNT_NOT_SELECTED
    );
    // A missing policy stops the binding, and the policy's step is skipped.
    let mut w = World::new(web("  namespaces: {all: true}"));
    w.policies = reflector::store().0;
    let e = w.explain(Some("default"));
    assert_eq!(e.bindings[0].verdict, "PolicyNotFound");
    assert_eq!(result_of(&e, step::ALLOWED_NAMESPACES).0, StepResult::Skip);
    // A namespace that does not exist.
    let mut w = World::new(web("  namespaces: {all: true}"));
    w.ns = None;
    assert_eq!(
        w.explain(None).bindings[0].verdict,
        verdicts::NAMESPACE_NOT_FOUND
    );
}

#[test]
fn a_secret_that_is_not_ours_is_named_with_whoever_wrote_it() {
    let mut w = World::new(web("  namespaces: {all: true}"));
    w.secret = Some(
        serde_yaml::from_str(
            "name: acr-credentials\nmanagedFields: [{manager: kubectl-create, operation: Update, apiVersion: v1}]",
        )
        .unwrap(),
    );
    let e = w.explain(Some("default"));
    assert_eq!(e.bindings[0].verdict, "SecretOwnedByOthers");
    assert!(e.bindings[0].message.contains("kubectl-create"), "{e:#?}");
    assert_eq!(e.secret.managed, Some(false));
    assert!(table(&e).contains(
        "Secret acr-credentials: not managed by this controller (written by kubectl-create)"
    ));
}

#[test]
fn without_status_the_binding_is_progressing_and_an_error_in_status_wins() {
    let spec = "  namespaces: {all: true}";
    let mut w = World::new(binding("web", spec, "{}"));
    w.secret = None;
    w.sa = Some(sa("metadata: {name: default}"));
    let e = w.explain(Some("default"));
    assert_eq!(e.bindings[0].verdict, "Progressing");
    assert_eq!(result_of(&e, step::SECRET).0, StepResult::Wait);
    assert_eq!(result_of(&e, step::ENTRY).0, StepResult::Wait);
    // A status behind the generation is progressing too.
    w.bindings = vec![binding(
        "web",
        spec,
        "{observedGeneration: 1, conditions: [{type: Ready, status: \"True\", reason: Reconciled, message: ok, lastTransitionTime: \"2026-03-01T12:00:00Z\"}]}",
    )];
    let e = w.explain(Some("default"));
    assert_eq!(e.bindings[0].verdict, "Progressing");
    assert!(e.bindings[0].message.contains("generation 1"), "{e:#?}");
    // Ready False with the cloud's refusal: the verdict is the status' reason.
    w.bindings = vec![binding(
        "web",
        spec,
        "{observedGeneration: 2, conditions: [{type: Ready, status: \"False\", reason: TokenRequestFailed, message: denied, lastTransitionTime: \"2026-03-01T12:00:00Z\"}]}",
    )];
    let e = w.explain(Some("default"));
    assert_eq!(e.bindings[0].verdict, "TokenRequestFailed");
    assert_eq!(e.bindings[0].message, "denied");
}

#[test]
fn inject_on_create_is_the_webhooks_own_decision() {
    let spec = "  namespaces: {all: true}\n  injectOnCreate: true";
    let e = World::new(web(spec)).explain(Some("default"));
    assert_eq!(result_of(&e, step::INJECT_ON_CREATE).1, "Patched");
    let mut w = World::new(web(spec));
    w.sa = Some(sa(
        "metadata: {name: default, labels: {acrcredentials.io/inject-on-create: \"false\"}}",
    ));
    assert_eq!(
        result_of(&w.explain(Some("default")), step::INJECT_ON_CREATE).1,
        "OptedOut"
    );
}

#[test]
fn a_namespace_alone_lists_its_service_accounts() {
    let e = World::new(web("  namespaces: {all: true}")).explain(None);
    assert_eq!(e.service_account, None);
    assert_eq!(e.bindings[0].verdict, verdicts::SYNCED);
    let (_, reason) = result_of(&e, step::SERVICE_ACCOUNT);
    assert_eq!(reason, "Selected");
    let entry = &e.bindings[0].steps[6];
    assert_eq!(
        entry.message,
        "ServiceAccounts listing acr-credentials: default (added by the controller)"
    );
}

#[test]
fn targets_are_a_namespace_or_a_service_account() {
    assert_eq!(
        parse_target("team-a").unwrap(),
        Target {
            namespace: "team-a".into(),
            service_account: None
        }
    );
    assert_eq!(
        parse_target("team-a/builder").unwrap().service_account,
        Some("builder".into())
    );
    for bad in ["", "/x", "a/", "a/b/c"] {
        assert!(parse_target(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_table_shows_the_verdict_and_an_indented_step_table() {
    let e = World::new(web("  namespaces: {names: [team-a]}")).explain(Some("default"));
    let text = table(&e);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "ServiceAccount team-a/default");
    assert_eq!(
        lines[1],
        "Secret acr-credentials: the controller's, auths of web, expires 2026-03-01T13:00:00Z"
    );
    assert_eq!(lines[2], "");
    assert_eq!(lines[3], "AcrRegistryBinding web (policy p): Bound");
    assert!(lines[4].starts_with("  lists acr-credentials, added by the controller"));
    assert_eq!(
        lines[5],
        "  STEP                RESULT   REASON              DETAIL"
    );
    assert_eq!(
        lines[6],
        "  binding             Pass     Resolved            resolves against AcrCredentialPolicy p"
    );
    assert_eq!(
        lines[7],
        "  namespace           Pass     Selected            selected by namespaces {names: team-a}"
    );
    assert_eq!(lines.len(), 5 + 1 + 9, "{text}");
}

#[test]
fn the_json_document_keeps_its_field_names() {
    let e = World::new(web("  namespaces: {names: [team-a]}")).explain(Some("default"));
    let v = serde_json::to_value(&e).unwrap();
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(
        keys(&v),
        ["bindings", "namespace", "secret", "serviceAccount"]
    );
    assert_eq!(
        keys(&v["secret"]),
        [
            "bindings",
            "expiresAt",
            "managed",
            "name",
            "present",
            "writtenBy"
        ]
    );
    assert_eq!(
        keys(&v["bindings"][0]),
        ["message", "name", "policy", "steps", "verdict"]
    );
    assert_eq!(
        v["bindings"][0]["steps"][0],
        serde_json::json!({"step": "binding", "result": "Pass", "reason": "Resolved",
            "message": "resolves against AcrCredentialPolicy p"})
    );
}
