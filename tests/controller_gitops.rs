//! Health for GitOps tools, judged on statuses the real controller writes on the local control
//! plane: the Argo CD Lua health checks in `health/argocd/` run under a real Lua 5.1
//! interpreter (`lua5.1`; Argo CD embeds a Lua 5.1 VM), and kstatus's rules (what Flux's
//! `wait`/`healthChecks` use) are applied to the same objects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acr_credential_controller::api::AcrCredentialPolicy;
use controller_common::{Harness, INSTANCE, OTHER_DOMAIN, OTHER_INSTANCE, OWNER_LABEL, auths};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

const GAT: &str = "cr:GetAuthorizationToken";

/// kstatus (kubernetes-sigs/cli-utils `pkg/kstatus`) as our operations guide states it:
/// terminating or an observedGeneration behind the generation is InProgress; `Reconciling=True`
/// is InProgress; `Stalled=True` is Failed; `Ready=True` is Current; anything else InProgress.
fn kstatus(obj: &Value) -> &'static str {
    if !obj["metadata"]["deletionTimestamp"].is_null() {
        return "InProgress";
    }
    let generation = obj["metadata"]["generation"].as_i64();
    let observed = obj["status"]["observedGeneration"].as_i64();
    if observed.is_none() || observed != generation {
        return "InProgress";
    }
    let condition = |t: &str| {
        obj["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t))
            .and_then(|c| c["status"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    if condition("Reconciling") == "True" {
        "InProgress"
    } else if condition("Stalled") == "True" {
        "Failed"
    } else if condition("Ready") == "True" {
        "Current"
    } else {
        "InProgress"
    }
}

/// A JSON value as a Lua 5.1 table constructor (strings with decimal escapes).
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for b in s.bytes() {
                match b {
                    b'"' | b'\\' => {
                        out.push('\\');
                        out.push(b as char);
                    }
                    0x20..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\{b:03}")),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua(&Value::String(k.clone())), lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs a health script over named objects with `lua5.1`; returns (status, message) per case.
fn argocd(script: &str, cases: &[(String, Value)], dir: &std::path::Path) -> Vec<(String, String)> {
    let body: Vec<String> = cases
        .iter()
        .map(|(name, obj)| format!("{{name = {}, obj = {}}}", lua(&json!(name)), lua(obj)))
        .collect();
    let file = dir.join(format!("{}-cases.lua", script.replace('/', "_")));
    std::fs::write(&file, format!("return {{\n{}\n}}\n", body.join(",\n"))).unwrap();
    let root = support::repo_root();
    let out = std::process::Command::new("lua5.1")
        .arg(root.join("tests/health/argocd.lua"))
        .arg(root.join(script))
        .arg(&file)
        .output()
        .expect("lua5.1 (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let name = parts.next().unwrap();
            let status = parts.next().unwrap().to_owned();
            let message = parts.next().unwrap_or_default().to_owned();
            assert_eq!(name, cases[lines_index(cases, name)].0);
            (status, message)
        })
        .collect();
    assert_eq!(lines.len(), cases.len(), "{text}");
    lines
}

fn lines_index(cases: &[(String, Value)], name: &str) -> usize {
    cases.iter().position(|(n, _)| n == name).unwrap()
}

fn condition<'a>(obj: &'a Value, t: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .unwrap_or(&Value::Null)
}

/// Records every version of this test's bindings (or policies) the API server reports.
fn record<K>(api: Api<K>, label: String) -> Arc<Mutex<Vec<Value>>>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + 'static,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, watcher::Config::default().labels(&label)));
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event {
                out.lock().unwrap().push(serde_json::to_value(&o).unwrap());
            }
        }
    });
    seen
}

async fn get_json<K>(api: &Api<K>, name: &str) -> Value
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    serde_json::to_value(api.get(name).await.unwrap()).unwrap()
}

/// Waits until `check` holds for the object and returns it as JSON.
async fn wait_json<K>(api: &Api<K>, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    support::wait_until(Duration::from_secs(60), what, || async {
        let v = get_json(api, name).await;
        if check(&v) {
            Ok(v)
        } else {
            Err(v["status"].to_string())
        }
    })
    .await
}

fn cond_is(obj: &Value, t: &str, status: &str) -> bool {
    condition(obj, t)["status"] == status
}

/// Ready for the current generation, with the pass over (during a spec change Ready is
/// Unknown next to Reconciling=True until the pass ends).
fn current_ready(obj: &Value) -> bool {
    cond_is(obj, "Ready", "True")
        && !cond_is(obj, "Reconciling", "True")
        && obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
}

#[tokio::test]
async fn argocd_scripts_and_kstatus_on_recorded_statuses() {
    let h = Harness::new("gitops-health", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let bindings = h.bindings();
    let recorded = record(bindings.clone(), format!("{OWNER_LABEL}={}", h.id));
    // A slow registry: the first convergence takes a visible while.
    h.handle().latency(GAT, Duration::from_millis(1500));
    let running = h.start();
    // (name, object, Argo CD health, kstatus)
    let mut cases: Vec<(String, Value, &str, &str)> = Vec::new();

    // A new binding, as `kubectl apply` returns it: no status yet.
    let good = format!("{}-good", h.id);
    let created = h
        .env
        .apply(&format!(
            "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrRegistryBinding\nmetadata:\n  name: {good}\n  labels: {{{OWNER_LABEL}: {id}}}\nspec:\n  registry: {{instanceId: {INSTANCE}, region: cn-hangzhou}}\n  policyRef: {{name: {p}}}\n  namespaces: {{names: [{ns}]}}\n",
            id = h.id,
            p = h.policy
        ))
        .await;
    let created = serde_json::to_value(&created[0]).unwrap();
    assert!(created["status"].is_null(), "{created}");
    cases.push((
        "before-first-reconcile".into(),
        created,
        "Progressing",
        "InProgress",
    ));
    let ready = wait_json(&bindings, &good, "Ready", current_ready).await;
    cases.push(("ready".into(), ready.clone(), "Healthy", "Current"));
    let reconciling = recorded
        .lock()
        .unwrap()
        .iter()
        .find(|o| {
            o["metadata"]["name"] == good.as_str()
                && cond_is(o, "Reconciling", "True")
                && o["status"]["observedGeneration"] == o["metadata"]["generation"]
        })
        .cloned()
        .expect("the controller wrote Reconciling=True during the first convergence");
    cases.push((
        "reconciling".into(),
        reconciling,
        "Progressing",
        "InProgress",
    ));

    // A spec change: right after the apply, the status is a generation behind.
    let patched = bindings
        .patch(
            &good,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceAccounts": {"all": true}}})),
        )
        .await
        .unwrap();
    let patched = serde_json::to_value(&patched).unwrap();
    assert_ne!(
        patched["status"]["observedGeneration"],
        patched["metadata"]["generation"]
    );
    cases.push((
        "right-after-spec-change".into(),
        patched.clone(),
        "Progressing",
        "InProgress",
    ));
    let again = wait_json(&bindings, &good, "Ready after the change", |o| {
        current_ready(o) && o["metadata"]["generation"] == patched["metadata"]["generation"]
    })
    .await;
    cases.push((
        "ready-after-spec-change".into(),
        again,
        "Healthy",
        "Current",
    ));
    h.handle().clear_faults();

    // Terminal problems: Stalled.
    let base = |name: &str| format!("{}-{name}", h.id);
    h.binding(
        &base("invalid"),
        &format!("  registry: {{instanceId: {INSTANCE}, region: cn-hangzhou}}\n  policyRef: {{name: {}}}\n  namespaces: {{names: [{ns}], all: true}}\n", h.policy),
    )
    .await;
    h.binding(
        &base("nopolicy"),
        &format!("  registry: {{instanceId: {INSTANCE}, region: cn-hangzhou}}\n  policyRef: {{name: {}-missing}}\n  namespaces: {{names: [{ns}]}}\n", h.id),
    )
    .await;
    h.binding(
        &base("noinstance"),
        &format!("  registry: {{instanceId: cri-doesnotexist, region: cn-hangzhou}}\n  policyRef: {{name: {}}}\n  namespaces: {{names: [{ns}]}}\n", h.policy),
    )
    .await;
    h.binding(
        &base("nothing"),
        &format!("  registry: {{instanceId: {INSTANCE}, region: cn-hangzhou}}\n  policyRef: {{name: {}}}\n  namespaces: {{selector: {{matchLabels: {{{OWNER_LABEL}: nowhere}}}}}}\n", h.policy),
    )
    .await;
    for (name, reason) in [
        ("invalid", "InvalidSpec"),
        ("nopolicy", "PolicyNotFound"),
        ("noinstance", "NotFound"),
    ] {
        let o = wait_json(&bindings, &base(name), &format!("{name} Stalled"), |o| {
            cond_is(o, "Stalled", "True")
                && o["status"]["observedGeneration"] == o["metadata"]["generation"]
        })
        .await;
        assert_eq!(condition(&o, "Stalled")["reason"], reason, "{o}");
        assert!(!cond_is(&o, "Ready", "True"));
        cases.push((format!("stalled-{name}"), o, "Degraded", "Failed"));
    }
    let nothing = wait_json(
        &bindings,
        &base("nothing"),
        "zero namespaces Ready",
        current_ready,
    )
    .await;
    assert_eq!(
        condition(&nothing, "Ready")["reason"],
        "NoNamespacesSelected"
    );
    cases.push(("zero-namespaces".into(), nothing, "Healthy", "Current"));

    // A failure that is not terminal and persists: Ready=False, neither Stalled nor Reconciling.
    h.handle().fail(GAT, 503, "ServiceUnavailable", None);
    h.binding(
        &base("failing"),
        &format!("  registry: {{instanceId: {OTHER_INSTANCE}, region: cn-hangzhou}}\n  policyRef: {{name: {}}}\n  namespaces: {{names: [{ns}]}}\n", h.policy),
    )
    .await;
    let failing = wait_json(&bindings, &base("failing"), "Ready=False", |o| {
        cond_is(o, "Ready", "False")
            && o["status"]["observedGeneration"] == o["metadata"]["generation"]
            && !cond_is(o, "Reconciling", "True")
    })
    .await;
    assert!(!cond_is(&failing, "Stalled", "True"), "{failing}");
    cases.push((
        "ready-false-persists".into(),
        failing,
        "Degraded",
        "InProgress",
    ));
    h.handle().clear_faults();

    // Policies: valid, and invalid (two sources).
    let policies: Api<AcrCredentialPolicy> = h.policies();
    let bad_policy = format!("{}-bad", h.id);
    h.env
        .apply(&format!(
            "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialPolicy\nmetadata:\n  name: {bad_policy}\n  labels: {{{OWNER_LABEL}: {id}}}\nspec:\n  source: {{workerRole: {{}}, managedRole: {{}}}}\n",
            id = h.id
        ))
        .await;
    let mut policy_cases: Vec<(String, Value, &str, &str)> = Vec::new();
    let p = wait_json(&policies, &h.policy, "policy Ready", current_ready).await;
    policy_cases.push(("policy-ready".into(), p, "Healthy", "Current"));
    let p = wait_json(&policies, &bad_policy, "policy Stalled", |o| {
        cond_is(o, "Stalled", "True")
    })
    .await;
    policy_cases.push(("policy-invalid".into(), p, "Degraded", "Failed"));

    let dir = std::env::temp_dir().join(format!("{}-health", h.id));
    std::fs::create_dir_all(&dir).unwrap();
    for (script, cases) in [
        ("health/argocd/AcrRegistryBinding.lua", &cases),
        ("health/argocd/AcrCredentialPolicy.lua", &policy_cases),
    ] {
        let named: Vec<(String, Value)> = cases
            .iter()
            .map(|(n, o, _, _)| (n.clone(), o.clone()))
            .collect();
        let results = argocd(script, &named, &dir);
        for ((name, obj, health, kstat), (status, message)) in cases.iter().zip(&results) {
            assert_eq!(status, health, "{script} on {name}: {message}\n{obj}");
            assert_eq!(kstatus(obj), *kstat, "kstatus on {name}: {obj}");
            // The message comes from the deciding condition.
            let deciding = match *health {
                "Degraded" if cond_is(obj, "Stalled", "True") => condition(obj, "Stalled"),
                "Healthy" | "Degraded" => condition(obj, "Ready"),
                _ if cond_is(obj, "Reconciling", "True")
                    && obj["status"]["observedGeneration"] == obj["metadata"]["generation"] =>
                {
                    condition(obj, "Reconciling")
                }
                _ => &Value::Null,
            };
            if let Some(m) = deciding["message"].as_str() {
                assert!(message.contains(m), "{name}: {message} lacks {m}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    // At least: first convergence, lag, Ready twice, three Stalled, zero namespaces, failing.
    assert!(cases.len() >= 9, "{}", cases.len());
    running.stop().await;
}

/// `kubectl wait --for=condition=Ready` right after a spec edit returns only once the new spec
/// is converged: the controller reports `Ready=Unknown` (and `Reconciling=True`) at the new
/// generation while the pass runs, never the old generation's `Ready=True` as the new one's.
/// The same for a policy: `Reconciling=True` and `Ready=Unknown` on its new generation, which
/// the Argo CD script and kstatus call Progressing and InProgress.
#[tokio::test]
async fn kubectl_wait_for_ready_returns_once_the_new_spec_is_converged() {
    let h = Harness::new("gitops-wait", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let bindings = h.bindings();
    let label = format!("{OWNER_LABEL}={}", h.id);
    let recorded = record(bindings.clone(), label.clone());
    let recorded_policies = record(h.policies(), label);
    let running = h.start();
    let name = h.named("wait");
    h.bind(&name, &h.test_binding().names(&[&ns])).await;
    wait_json(&bindings, &name, "Ready", current_ready).await;

    // An edit whose convergence takes a while: another registry instance (a new token from a
    // slow registry) and one more namespace.
    h.handle().latency(GAT, Duration::from_secs(3));
    let added = h.env.extra_namespace("gitops-wait-b").await;
    let edited = bindings
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "registry": {"instanceId": OTHER_INSTANCE},
                "namespaces": {"names": [ns, added]},
            }})),
        )
        .await
        .unwrap();
    let generation = edited.metadata.generation.unwrap();
    let started = std::time::Instant::now();
    let kubeconfig = support::cluster().kubeconfig.clone().unwrap();
    let out = tokio::process::Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "wait",
            "--for=condition=Ready",
            "--timeout=60s",
            &format!("acrregistrybindings.acrcredentials.io/{name}"),
        ])
        .output()
        .await
        .unwrap();
    let waited = started.elapsed();
    println!(
        "$ kubectl wait --for=condition=Ready --timeout=60s acrregistrybindings.acrcredentials.io/{name}\n{}{}(returned after {waited:?})",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{out:?}");
    // When it returns, the status describes the new spec, and the new namespace holds the
    // Secret for the new registry.
    let now = get_json(&bindings, &name).await;
    assert_eq!(now["status"]["observedGeneration"], generation, "{now}");
    assert_eq!(
        condition(&now, "Ready")["observedGeneration"],
        generation,
        "{now}"
    );
    assert!(cond_is(&now, "Ready", "True"), "{now}");
    let secret = h
        .secrets(&added)
        .get_opt(controller_common::SECRET_NAME)
        .await
        .unwrap()
        .expect("the new namespace holds the pull Secret when kubectl wait returns");
    assert!(
        auths(&secret).contains_key(OTHER_DOMAIN),
        "{:?}",
        auths(&secret).keys()
    );
    // In between, the controller said so: Ready=Unknown at the new generation, Reconciling.
    let between = recorded
        .lock()
        .unwrap()
        .iter()
        .find(|o| {
            o["metadata"]["name"] == name.as_str()
                && o["metadata"]["generation"] == generation
                && cond_is(o, "Ready", "Unknown")
        })
        .cloned()
        .expect("Ready=Unknown while the new generation was converged");
    let ready = condition(&between, "Ready");
    assert_eq!(ready["reason"], "Progressing", "{between}");
    assert_eq!(ready["observedGeneration"], generation, "{between}");
    assert!(cond_is(&between, "Reconciling", "True"), "{between}");
    h.handle().clear_faults();

    // A policy's new generation: Reconciling=True and Ready=Unknown before its verdict.
    let policies = h.policies();
    let before = get_json(&policies, &h.policy).await;
    h.add_policy(&h.policy, "renewBefore: 20m").await;
    let policy = wait_json(
        &policies,
        &h.policy,
        "policy Ready at its new generation",
        |o| current_ready(o) && o["metadata"]["generation"] != before["metadata"]["generation"],
    )
    .await;
    let policy_generation = policy["metadata"]["generation"].clone();
    let policy_between = support::wait_until(
        Duration::from_secs(10),
        "the policy's Reconciling status recorded",
        || async {
            recorded_policies
                .lock()
                .unwrap()
                .iter()
                .find(|o| {
                    o["metadata"]["generation"] == policy_generation
                        && cond_is(o, "Reconciling", "True")
                        && cond_is(o, "Ready", "Unknown")
                })
                .cloned()
                .ok_or("not yet")
        },
    )
    .await;
    assert_eq!(
        condition(&policy_between, "Ready")["observedGeneration"],
        policy_generation
    );
    assert!(condition(&policy, "Reconciling").is_null(), "{policy}");

    // The Argo CD scripts and kstatus on those in-between statuses.
    let dir = std::env::temp_dir().join(format!("{}-health", h.id));
    std::fs::create_dir_all(&dir).unwrap();
    for (script, obj) in [
        ("health/argocd/AcrRegistryBinding.lua", &between),
        ("health/argocd/AcrCredentialPolicy.lua", &policy_between),
    ] {
        let results = argocd(script, &[("between".to_owned(), obj.clone())], &dir);
        assert_eq!(
            results[0].0, "Progressing",
            "{script}: {:?}\n{obj}",
            results[0]
        );
        assert_eq!(kstatus(obj), "InProgress", "{obj}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    running.stop().await;
}
