#![allow(clippy::unwrap_used)]
use super::*;

const NOW: &str = "2026-03-01T12:00:00Z";

fn binding(yaml: &str) -> AcrRegistryBinding {
    serde_yaml::from_str(yaml).unwrap()
}

fn healthy() -> AcrRegistryBinding {
    binding(
        r#"
apiVersion: acrcredentials.io/v1alpha1
kind: AcrRegistryBinding
metadata: {name: web, generation: 2}
spec:
  registry: {instanceId: cri-abc}
  policyRef: {name: prod}
  namespaces: {all: true}
status:
  observedGeneration: 2
  registry: cri-abc
  conditions:
    - {type: Ready, status: "True", reason: Reconciled, message: all good, lastTransitionTime: "2026-03-01T10:00:00Z"}
  token: {issuedAt: "2026-03-01T11:47:00Z", expiresAt: "2026-03-01T12:47:00Z", renewAt: "2026-03-01T12:32:00Z"}
  namespaces: {selected: 3, synced: 3, summary: 3/3, failed: []}
  rotation: {lastHandledRequest: "2026-03-01T11:46:59.000000000Z", lastRotatedAt: "2026-03-01T11:47:00Z"}
"#,
    )
}

fn failing() -> AcrRegistryBinding {
    binding(
        r#"
apiVersion: acrcredentials.io/v1alpha1
kind: AcrRegistryBinding
metadata: {name: api, generation: 5}
spec:
  registry: {}
  namespaces: {all: true}
status:
  observedGeneration: 4
  registry: personal (cn-hangzhou)
  conditions:
    - {type: Ready, status: "False", reason: SecretSyncFailed, message: 3 namespaces failed, lastTransitionTime: "2026-03-01T10:00:00Z"}
  token: {expiresAt: "2026-03-01T11:57:00Z"}
  namespaces:
    selected: 10
    synced: 7
    failed:
      - {name: billing, reason: SecretOwnedByOthers, message: "Secret billing/acr-credentials is not ours"}
      - {name: cart, reason: NamespaceNotAllowed, message: outside allowedNamespaces}
"#,
    )
}

fn fresh() -> AcrRegistryBinding {
    binding(
        "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrRegistryBinding\nmetadata: {name: new}\nspec: {registry: {}, namespaces: {names: [a]}}\n",
    )
}

#[test]
fn a_row_carries_what_the_status_says() {
    let r = row(&failing());
    assert_eq!(r.name, "api");
    assert_eq!(r.policy, "default");
    assert_eq!(r.ready.status, "False");
    assert_eq!(r.ready.reason.as_deref(), Some("SecretSyncFailed"));
    assert_eq!(r.registry.as_deref(), Some("personal (cn-hangzhou)"));
    assert_eq!(
        r.namespaces,
        Some(Namespaces {
            synced: 7,
            selected: 10
        })
    );
    let f = r.first_failure.unwrap();
    assert_eq!(
        (f.namespace.as_str(), f.reason.as_str(), f.others),
        ("billing", "SecretOwnedByOthers", 2)
    );
    assert_eq!(r.renew_at, None);
    assert_eq!((r.generation, r.observed_generation), (Some(5), Some(4)));
}

#[test]
fn the_table_has_one_line_per_binding_by_name_with_relative_times() {
    let now: Timestamp = NOW.parse().unwrap();
    let text = table(&rows(&[healthy(), fresh(), failing()]), now);
    assert_eq!(
        text,
        "\
NAME   READY                      REGISTRY                 NAMESPACES   EXPIRES   RENEWS   FIRST FAILURE
api    False (SecretSyncFailed)   personal (cn-hangzhou)   7/10         3m ago    <none>   billing: SecretOwnedByOthers (+2 more)
new    Unknown                    <none>                   <none>       <none>    <none>   <none>
web    True                       cri-abc                  3/3          47m       32m      <none>
"
    );
}

#[test]
fn json_has_every_field_always_with_absolute_times() {
    let json = serde_json::to_value(rows(&[healthy(), fresh()])).unwrap();
    assert_eq!(
        json[1],
        serde_json::json!({
            "name": "web",
            "policy": "prod",
            "ready": {"status": "True", "reason": "Reconciled", "message": "all good"},
            "registry": "cri-abc",
            "namespaces": {"synced": 3, "selected": 3},
            "expiresAt": "2026-03-01T12:47:00Z",
            "renewAt": "2026-03-01T12:32:00Z",
            "firstFailure": null,
            "generation": 2,
            "observedGeneration": 2,
            "rotation": {
                "lastHandledRequest": "2026-03-01T11:46:59.000000000Z",
                "lastHandledPolicyRequest": null,
                "lastRotatedAt": "2026-03-01T11:47:00Z",
            },
        })
    );
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    // A binding the controller has not seen yet has the same fields, null.
    assert_eq!(keys(&json[0]), keys(&json[1]));
    assert_eq!(
        json[0]["ready"],
        serde_json::json!({"status": "Unknown", "reason": null, "message": null})
    );
}

#[test]
fn a_degraded_ready_binding_says_why() {
    let mut b = healthy();
    let status = b.status.as_mut().unwrap();
    status.conditions[0].reason = "RenewalFailing".into();
    assert_eq!(ready_cell(&row(&b).ready), "True (RenewalFailing)");
}
