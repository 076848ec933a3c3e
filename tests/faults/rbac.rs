//! RBAC revoked: the controller runs as a ServiceAccount with the chart's RBAC (rendered from
//! `charts/`, names made unique); its right to create, update and patch Secrets is taken away
//! for 60 s while a user deletes its pull Secret. No crash; the status and an Event say
//! Forbidden and name the resource; once the right returns the Secret is back.
//!
//! Also the chart's RBAC matrix on the real authorizer (SubjectAccessReview): exactly the verbs
//! the controller uses, with and without the legacy ConfigMap's live translation.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::ApiResource;

use crate::common::{Controller, Row, Start, binding_spec, scale};
use crate::controller_common::{Harness, SECRET_NAME, wait_secret};
use crate::support;

const CHART_NAME: &str = "acr-acr-credential-controller";
const CHART_NAMESPACE: &str = "acr-system";

/// The chart's ServiceAccount and RBAC objects, renamed `<prefix>…` and moved to `ns`.
fn chart_rbac(ns: &str, prefix: &str) -> Vec<serde_yaml::Value> {
    chart_rbac_with(ns, prefix, false)
}

/// [`chart_rbac`], with the legacy ConfigMap's live translation on or off.
fn chart_rbac_with(ns: &str, prefix: &str, legacy: bool) -> Vec<serde_yaml::Value> {
    let values = serde_json::json!({
        "accessKeySecrets": [{"namespace": ns, "name": "alibaba-ak"}],
        "legacyConfigMap": {"enabled": legacy},
    });
    let out = std::process::Command::new("python3")
        .arg(support::repo_root().join("tests/chart/chartlib.py"))
        .args(["render", "--values", &values.to_string()])
        .output()
        .expect("running tests/chart/chartlib.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let kinds = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let rename = |text: String| {
        text.replace(CHART_NAME, prefix)
            .replace(CHART_NAMESPACE, ns)
    };
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| serde_yaml::Value::deserialize(d).ok())
        .filter(|d| d["kind"].as_str().is_some_and(|k| kinds.contains(&k)))
        .map(|d| serde_yaml::from_str(&rename(serde_yaml::to_string(&d).unwrap())).unwrap())
        .collect()
}
use serde::Deserialize as _;

fn forbidden(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("forbidden") && lower.contains("secrets")
}

#[tokio::test]
#[ignore = "runs for over a minute: run by scripts/faults.sh"]
async fn rbac_revoked_then_restored() {
    let revoked_for = Duration::from_secs(scale(20, 60));
    let h = Harness::new("faults-rbac", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let prefix = format!("{}-ctl", h.id);
    let objects = chart_rbac(&ns, &prefix);
    for o in &objects {
        h.env.apply(&serde_yaml::to_string(o).unwrap()).await;
        if o["metadata"]["namespace"].as_str() == Some("default") {
            let name = o["metadata"]["name"].as_str().unwrap();
            let resource = match o["kind"].as_str() {
                Some("Role") => ApiResource::erase::<Role>(&()),
                _ => ApiResource::erase::<RoleBinding>(&()),
            };
            h.env.track(resource, Some("default"), name);
        }
    }
    let role: serde_yaml::Value = objects
        .iter()
        .find(|o| o["kind"] == "ClusterRole")
        .cloned()
        .expect("the chart's ClusterRole");
    let kubeconfig = h.service_account_kubeconfig(&ns, &prefix).await;
    let mut controller = Controller::start(
        &h,
        Start {
            kubeconfig: Some(&kubeconfig),
            ..Start::default()
        },
    )
    .await;
    let name = format!("{}-rbac", h.id);
    h.binding(&name, &binding_spec(&h, &format!("{{names: [{ns}]}}")))
        .await;
    h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    let secrets: Api<Secret> = h.secrets(&ns);
    let before = wait_secret(&secrets, "the pull Secret", |_| true)
        .await
        .data;

    // Revoke create/update/patch on Secrets, then a user deletes the pull Secret.
    let roles: Api<ClusterRole> = Api::all(h.client());
    let mut revoked: serde_json::Value = serde_json::to_value(&role).unwrap();
    for rule in revoked["rules"].as_array_mut().unwrap() {
        if rule["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "secrets"))
        {
            rule["verbs"] = serde_json::json!(["get", "list", "watch", "delete"]);
        }
    }
    let pp = PatchParams::default();
    let rules = serde_json::json!({"rules": revoked["rules"]});
    roles
        .patch(&prefix, &pp, &Patch::Merge(&rules))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t0 = Instant::now();
    secrets
        .delete(SECRET_NAME, &DeleteParams::default())
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(h.client(), "default");
    let (mut in_status, mut in_event, mut status_text, mut event_text) =
        (None, None, String::new(), String::new());
    let mut alive = true;
    while t0.elapsed() < revoked_for {
        alive &= controller.running();
        if in_status.is_none()
            && let Ok(b) = h.bindings().get(&name).await
        {
            let text = serde_json::to_string(&b.status).unwrap();
            if let Some(c) = b
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .find(|c| forbidden(&c.message))
            {
                in_status = Some(t0.elapsed());
                status_text = format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message);
            } else if forbidden(&text) {
                in_status = Some(t0.elapsed());
                status_text = text;
            }
        }
        if in_event.is_none()
            && let Ok(list) = events.list(&ListParams::default()).await
            && let Some(e) = list.items.iter().find(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
                    && e.note.as_deref().is_some_and(forbidden)
            })
        {
            in_event = Some(t0.elapsed());
            event_text = e.note.clone().unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The right returns.
    let original = serde_json::json!({"rules": serde_json::to_value(&role).unwrap()["rules"]});
    roles
        .patch(&prefix, &pp, &Patch::Merge(&original))
        .await
        .unwrap();
    let back = Instant::now();
    let mut restored = None;
    while back.elapsed() < Duration::from_secs(120) {
        let secret_ok = secrets
            .get_opt(SECRET_NAME)
            .await
            .ok()
            .flatten()
            .is_some_and(|s| s.data == before);
        let ready = crate::common::ready_of(&h, &name).await;
        if secret_ok
            && ready
                .as_ref()
                .is_some_and(|r| r.0 == "True" && r.1 == "Reconciled")
        {
            restored = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut row = Row::new(
        8,
        "RBAC revoked",
        format!(
            "create/update/patch on Secrets removed from the chart's ClusterRole for {} s; the pull Secret deleted",
            revoked_for.as_secs()
        ),
    );
    let secs =
        |d: Option<Duration>| d.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64()));
    let excerpt = |t: &str| t.chars().take(220).collect::<String>();
    row.figure = format!(
        "Forbidden in status after {}, in an Event after {}; restored {} after the right returned; controller ran throughout: {}; status: \"{}\"",
        secs(in_status),
        secs(in_event),
        secs(restored),
        alive && controller.running(),
        excerpt(&status_text)
    );
    row.check(alive && controller.running(), || {
        "the controller exited".into()
    });
    row.check(in_status.is_some(), || {
        "no status said Forbidden with the resource".into()
    });
    row.check(in_event.is_some(), || {
        "no Event said Forbidden with the resource".into()
    });
    let final_ready = crate::common::ready_of(&h, &name).await;
    let final_secret = secrets
        .get_opt(SECRET_NAME)
        .await
        .ok()
        .flatten()
        .map(|s| s.data == before);
    row.check(restored.is_some(), || {
        let warnings = controller.lines_at("WARN");
        let last: Vec<&String> = warnings.iter().rev().take(3).collect();
        format!(
            "not restored within 2 minutes of the right returning: Ready {final_ready:?}, Secret (same data) {final_secret:?}, last warnings {last:?}"
        )
    });
    let _ = event_text;
    row.finish();
}

/// One question to the authorizer: may the chart's ServiceAccount `verb` the resource?
struct Ask {
    what: &'static str,
    expected: bool,
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    subresource: Option<&'static str>,
    namespace: Option<String>,
    name: Option<&'static str>,
}

#[allow(clippy::too_many_arguments)]
fn ask(
    what: &'static str,
    expected: bool,
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    namespace: Option<&str>,
    name: Option<&'static str>,
) -> Ask {
    Ask {
        what,
        expected,
        verb,
        group,
        resource,
        subresource: None,
        namespace: namespace.map(str::to_owned),
        name,
    }
}

async fn allowed(client: &kube::Client, user: &str, a: &Ask) -> bool {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(a.verb.into()),
                group: Some(a.group.into()),
                resource: Some(a.resource.into()),
                subresource: a.subresource.map(str::to_owned),
                namespace: a.namespace.clone(),
                name: a.name.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    Api::<k8s_openapi::api::authorization::v1::SubjectAccessReview>::all(client.clone())
        .create(&kube::api::PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .is_some_and(|s| s.allowed)
}

/// Applies the chart's RBAC for `prefix` and checks `rows` against the real authorizer, waiting
/// for the authorizer's cache to see the new roles. Returns the rows that differ.
async fn matrix(env: &support::TestEnv, prefix: &str, legacy: bool, rows: &[Ask]) -> Vec<String> {
    let ns = env.namespace().to_owned();
    for o in chart_rbac_with(&ns, prefix, legacy) {
        env.apply(&serde_yaml::to_string(&o).unwrap()).await;
        if let Some(other) = o["metadata"]["namespace"].as_str().filter(|n| *n != ns) {
            let name = o["metadata"]["name"].as_str().unwrap();
            let resource = match o["kind"].as_str() {
                Some("Role") => ApiResource::erase::<Role>(&()),
                _ => ApiResource::erase::<RoleBinding>(&()),
            };
            env.track(resource, Some(other), name);
        }
    }
    let user = format!("system:serviceaccount:{ns}:{prefix}");
    let client = env.client();
    let started = Instant::now();
    loop {
        let mut wrong = Vec::new();
        let mut table = String::new();
        for a in rows {
            let got = allowed(&client, &user, a).await;
            table.push_str(&format!(
                "  {:<62} {:<8} {}\n",
                a.what,
                if got { "allowed" } else { "denied" },
                if got == a.expected { "ok" } else { "WRONG" }
            ));
            if got != a.expected {
                wrong.push(format!("{} (expected {})", a.what, a.expected));
            }
        }
        if wrong.is_empty() || started.elapsed() > Duration::from_secs(20) {
            println!(
                "RBAC matrix, legacy translation {}:\n{table}",
                if legacy { "on" } else { "off" }
            );
            return wrong;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn chart_rbac_grants_exactly_what_the_controller_uses() {
    let env = support::TestEnv::new("faults-rbac-matrix").await;
    let ns = env.namespace().to_owned();
    let other_ns = Some("default");
    let here = Some(ns.as_str());
    const LEASE: &str = "acr-credential-controller";
    const COORD: &str = "coordination.k8s.io";
    const ACR: &str = "acrcredentials.io";
    let mut common = vec![
        // The Lease: read, then replaced with its resourceVersion; created once.
        ask(
            "get the Lease by name",
            true,
            "get",
            COORD,
            "leases",
            here,
            Some(LEASE),
        ),
        ask(
            "update the Lease by name",
            true,
            "update",
            COORD,
            "leases",
            here,
            Some(LEASE),
        ),
        ask(
            "create a Lease in its namespace",
            true,
            "create",
            COORD,
            "leases",
            here,
            None,
        ),
        ask(
            "patch the Lease",
            false,
            "patch",
            COORD,
            "leases",
            here,
            Some(LEASE),
        ),
        ask(
            "delete the Lease",
            false,
            "delete",
            COORD,
            "leases",
            here,
            Some(LEASE),
        ),
        ask(
            "update another Lease",
            false,
            "update",
            COORD,
            "leases",
            here,
            Some("other"),
        ),
        // The pull Secret, by name, anywhere; no other Secret.
        ask(
            "get the pull Secret",
            true,
            "get",
            "",
            "secrets",
            other_ns,
            Some(SECRET_NAME),
        ),
        ask(
            "update the pull Secret",
            true,
            "update",
            "",
            "secrets",
            other_ns,
            Some(SECRET_NAME),
        ),
        ask(
            "delete the pull Secret",
            true,
            "delete",
            "",
            "secrets",
            other_ns,
            Some(SECRET_NAME),
        ),
        ask(
            "get another Secret",
            false,
            "get",
            "",
            "secrets",
            other_ns,
            Some("other"),
        ),
        ask(
            "update another Secret",
            false,
            "update",
            "",
            "secrets",
            other_ns,
            Some("other"),
        ),
        ask(
            "patch another Secret",
            false,
            "patch",
            "",
            "secrets",
            other_ns,
            Some("other"),
        ),
        ask(
            "delete another Secret",
            false,
            "delete",
            "",
            "secrets",
            other_ns,
            Some("other"),
        ),
        ask(
            "delete Secrets by collection",
            false,
            "deletecollection",
            "",
            "secrets",
            other_ns,
            None,
        ),
        // ServiceAccounts: patched, never created, replaced, deleted, or asked for tokens.
        ask(
            "patch ServiceAccounts",
            true,
            "patch",
            "",
            "serviceaccounts",
            other_ns,
            Some("default"),
        ),
        ask(
            "update ServiceAccounts",
            false,
            "update",
            "",
            "serviceaccounts",
            other_ns,
            Some("default"),
        ),
        ask(
            "create ServiceAccounts",
            false,
            "create",
            "",
            "serviceaccounts",
            other_ns,
            None,
        ),
        ask(
            "delete ServiceAccounts",
            false,
            "delete",
            "",
            "serviceaccounts",
            other_ns,
            Some("default"),
        ),
        // Bindings and policies: patched (finalizers) and their status.
        ask(
            "patch bindings",
            true,
            "patch",
            ACR,
            "acrregistrybindings",
            None,
            Some("b"),
        ),
        ask(
            "update bindings",
            false,
            "update",
            ACR,
            "acrregistrybindings",
            None,
            Some("b"),
        ),
        // Events: events.k8s.io created and patched as a series; core Events (Kubernetes before
        // 1.22) created and patched to count repeats.
        ask(
            "create core Events in default",
            true,
            "create",
            "",
            "events",
            other_ns,
            None,
        ),
        ask(
            "patch core Events in default",
            true,
            "patch",
            "",
            "events",
            other_ns,
            None,
        ),
        ask(
            "create events.k8s.io Events in default",
            true,
            "create",
            "events.k8s.io",
            "events",
            other_ns,
            None,
        ),
        ask(
            "patch events.k8s.io Events in default",
            true,
            "patch",
            "events.k8s.io",
            "events",
            other_ns,
            None,
        ),
        ask(
            "create Events elsewhere",
            false,
            "create",
            "events.k8s.io",
            "events",
            here,
            None,
        ),
        // No way to grant itself more.
        ask(
            "create ClusterRoleBindings",
            false,
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            None,
            None,
        ),
        ask(
            "create Roles",
            false,
            "create",
            "rbac.authorization.k8s.io",
            "roles",
            here,
            None,
        ),
    ];
    let mut token = ask(
        "create ServiceAccount tokens",
        false,
        "create",
        "",
        "serviceaccounts",
        other_ns,
        Some("default"),
    );
    token.subresource = Some("token");
    common.push(token);

    let mut off = Vec::new();
    let mut on = Vec::new();
    for (list, translating) in [(&mut off, false), (&mut on, true)] {
        for (what, verb, resource) in [
            ("create bindings", "create", "acrregistrybindings"),
            ("delete bindings", "delete", "acrregistrybindings"),
            ("create policies", "create", "acrcredentialpolicies"),
            ("delete policies", "delete", "acrcredentialpolicies"),
        ] {
            list.push(ask(what, translating, verb, ACR, resource, None, Some("x")));
        }
        list.push(ask(
            "read the legacy ConfigMap",
            translating,
            "get",
            "",
            "configmaps",
            Some("kube-system"),
            Some("acr-configuration"),
        ));
    }
    // AccessKey Secrets: read by the listed names only, never written or deleted, not even with
    // the live translation on: the translation may write (and later delete) the Secret of an
    // inline pair only where someone granted that apart from the chart; with the chart alone it
    // says which Secret to create instead.
    for list in [&mut off, &mut on] {
        list.push(ask(
            "get a listed AccessKey Secret",
            true,
            "get",
            "",
            "secrets",
            here,
            Some("alibaba-ak"),
        ));
        for (what, verb) in [
            ("patch a listed AccessKey Secret", "patch"),
            ("delete a listed AccessKey Secret", "delete"),
        ] {
            list.push(ask(
                what,
                false,
                verb,
                "",
                "secrets",
                here,
                Some("alibaba-ak"),
            ));
        }
        for (what, verb) in [
            ("get a translated AccessKey Secret", "get"),
            ("patch a translated AccessKey Secret", "patch"),
            ("delete a translated AccessKey Secret", "delete"),
        ] {
            list.push(ask(
                what,
                false,
                verb,
                "",
                "secrets",
                Some("kube-system"),
                Some("acr-legacy-access-key-0a1b2c3d"),
            ));
        }
    }
    on.push(ask(
        "read another ConfigMap in kube-system",
        false,
        "get",
        "",
        "configmaps",
        Some("kube-system"),
        Some("other"),
    ));
    on.push(ask(
        "create the legacy ConfigMap's Events",
        true,
        "create",
        "events.k8s.io",
        "events",
        Some("kube-system"),
        None,
    ));
    on.push(ask(
        "patch Events in kube-system",
        false,
        "patch",
        "events.k8s.io",
        "events",
        Some("kube-system"),
        None,
    ));
    // The create/delete rows are asked without a name too (create never carries one).
    let mut wrong = Vec::new();
    for (suffix, legacy, extra) in [("off", false, off), ("on", true, on)] {
        let mut rows: Vec<Ask> = extra;
        for a in &common {
            rows.push(Ask {
                what: a.what,
                expected: a.expected,
                verb: a.verb,
                group: a.group,
                resource: a.resource,
                subresource: a.subresource,
                namespace: a.namespace.clone(),
                name: a.name,
            });
        }
        let prefix = format!("{}-{suffix}", support::unique_name("ctl"));
        wrong.extend(
            matrix(&env, &prefix, legacy, &rows)
                .await
                .into_iter()
                .map(|w| format!("translation {suffix}: {w}")),
        );
    }
    assert!(
        wrong.is_empty(),
        "the chart's RBAC differs from what the controller uses: {wrong:#?}"
    );
}
