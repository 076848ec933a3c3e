//! Rotation on demand end to end: `acr-credential-controller kubectl renew --wait` (the
//! `kubectl acr renew` plugin) sets `acrcredentials.io/rotation-requested-at` on a binding or a
//! policy, the controller obtains one fresh token from the fake cloud, every pull Secret of the
//! affected bindings holds it, `status.rotation` records the request, and the same value again
//! rotates nothing. With two replicas of the real binary, one rotation happens, and the standby
//! that takes over does not rotate again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod operate_common;
mod support;

use std::time::Duration;

use acr_credential_controller::api::AcrRegistryBinding;
use acr_credential_controller::api::rotation::{ROTATION_REQUESTED_AT, requested_rotation};
use controller_common::{DOMAINS, Harness, auths, wait_secret};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use operate_common::Replica;

const GAT: &str = "cr:GetAuthorizationToken";
const WAIT: Duration = Duration::from_secs(60);

/// `acr-credential-controller kubectl <args>` (the plugin's commands) against the test cluster:
/// its exit code and its stdout and stderr.
async fn plugin(args: &[&str]) -> (i32, String, String) {
    let kubeconfig = support::cluster().kubeconfig.clone().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_acr-credential-controller"))
        .arg("kubectl")
        .args(args)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn password(secret: &Secret) -> String {
    auths(secret)[DOMAINS[0]].1.clone()
}

async fn secret_in(h: &Harness, ns: &str) -> Secret {
    wait_secret(&h.secrets(ns), "pull Secret", |_| true).await
}

/// The notes of the `reason` Events about binding `name`.
async fn notes(h: &Harness, name: &str, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(h.client(), "default");
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.note.unwrap_or_default())
        .collect()
}

/// `status.rotation` of binding `name`: (lastHandledRequest, lastHandledPolicyRequest).
async fn handled(h: &Harness, name: &str) -> (Option<String>, Option<String>) {
    let b = h.bindings().get(name).await.unwrap();
    let r = b.status.and_then(|s| s.rotation).unwrap_or_default();
    (r.last_handled_request, r.last_handled_policy_request)
}

/// Changes the binding's spec without changing what it selects (the names in another order)
/// and waits until a pass has reported the new generation: proof that the controller looked
/// at the binding again.
async fn touch_and_wait_for_a_pass(h: &Harness, name: &str, names: &[&str]) -> AcrRegistryBinding {
    let patch = serde_json::json!({"spec": {"namespaces": {"names": names}}});
    let b = h
        .bindings()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let generation = b.metadata.generation;
    let api = h.bindings();
    support::wait_until(WAIT, "a pass over the new generation", || {
        let api = api.clone();
        let name = name.to_owned();
        async move {
            let b = api.get(&name).await.map_err(|e| e.to_string())?;
            let s = b.status.clone().unwrap_or_default();
            let ready = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (s.observed_generation == generation && ready && b.metadata.generation == generation)
                .then_some(b)
                .ok_or(format!("{s:?}"))
        }
    })
    .await
}

#[tokio::test]
async fn renew_rotates_every_secret_of_the_binding_once_per_request() {
    let h = Harness::new("ctrl-rotate", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let other = h.env.extra_namespace("ctrl-rotate-b").await;
    h.with_controller(async |h| {
        let name = h.named("web");
        h.bind(&name, &h.test_binding().names(&[&ns, &other])).await;
        h.wait_ready(&name, "True", WAIT).await;
        let before = [secret_in(h, &ns).await, secret_in(h, &other).await];
        let old = password(&before[0]);
        assert_eq!(password(&before[1]), old);
        let calls = h.handle().count(GAT);
        assert_eq!(handled(h, &name).await, (None, None));

        // renew --wait returns once status records the request.
        let (code, out, err) = plugin(&["renew", &name, "--wait", "--timeout", "60s"]).await;
        println!("$ kubectl acr renew {name} --wait\n{out}{err}");
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains(&format!(
                "AcrRegistryBinding {name} rotated, token valid until "
            )),
            "{out}"
        );
        let binding = h.bindings().get(&name).await.unwrap();
        let value = requested_rotation(&binding.metadata).unwrap().to_owned();
        let status = binding.status.unwrap();
        let rotation = status.rotation.clone().unwrap();
        assert_eq!(
            rotation.last_handled_request.as_deref(),
            Some(value.as_str())
        );
        assert_eq!(
            rotation.last_rotated_at,
            status.token.as_ref().unwrap().issued_at
        );
        // One cloud call; both Secrets, updated in place, hold the new token, which the cloud
        // accepts; the status's expiry is the new token's.
        assert_eq!(h.handle().count(GAT), calls + 1);
        for (ns, was) in [(&ns, &before[0]), (&other, &before[1])] {
            let s = wait_secret(&h.secrets(ns), "rotated Secret", |s| password(s) != old).await;
            assert_eq!(s.metadata.uid, was.metadata.uid, "Secret recreated in {ns}");
            assert!(h.handle().registry_token_valid(&password(&s)));
            // Status times are whole seconds.
            assert_eq!(
                h.handle()
                    .registry_token_expiry(&password(&s))
                    .map(|t| t.as_second()),
                status
                    .token
                    .as_ref()
                    .unwrap()
                    .expires_at
                    .as_ref()
                    .map(|t| t.0.as_second())
            );
        }
        let rotated = notes(h, &name, "TokenRotated").await;
        assert!(
            rotated
                .iter()
                .any(|n| n.contains(&value) && n.contains("valid until")),
            "{rotated:?}"
        );
        let new = password(&secret_in(h, &ns).await);

        // The same value again (with another annotation changing, and a new generation so that
        // a pass surely runs): nothing rotates, nothing is written to the Secrets.
        let patch = serde_json::json!({"metadata": {"annotations": {
            ROTATION_REQUESTED_AT: value, "example.com/touched": "yes"}}});
        h.bindings()
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let versions = [
            secret_in(h, &ns).await.metadata.resource_version,
            secret_in(h, &other).await.metadata.resource_version,
        ];
        touch_and_wait_for_a_pass(h, &name, &[&other, &ns]).await;
        assert_eq!(
            h.handle().count(GAT),
            calls + 1,
            "the same value rotated again"
        );
        assert_eq!(password(&secret_in(h, &ns).await), new);
        assert_eq!(
            [
                secret_in(h, &ns).await.metadata.resource_version,
                secret_in(h, &other).await.metadata.resource_version,
            ],
            versions
        );
        assert_eq!(handled(h, &name).await.0.as_deref(), Some(value.as_str()));

        // A new value: one more rotation.
        let (code, out, err) = plugin(&["renew", &name, "--wait", "--timeout", "60s"]).await;
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(h.handle().count(GAT), calls + 2);
        wait_secret(&h.secrets(&other), "second rotation", |s| {
            password(s) != new
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_policy_request_rotates_each_of_its_bindings_with_one_cloud_call() {
    let h = Harness::new("ctrl-rotate-policy", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let other = h.env.extra_namespace("ctrl-rotate-p").await;
    h.with_controller(async |h| {
        // Two bindings of the policy on one registry: they share one token.
        let (a, b) = (h.named("a"), h.named("b"));
        h.bind(&a, &h.test_binding().names(&[&ns])).await;
        h.bind(&b, &h.test_binding().names(&[&other])).await;
        h.wait_ready(&a, "True", WAIT).await;
        h.wait_ready(&b, "True", WAIT).await;
        let old = [
            password(&secret_in(h, &ns).await),
            password(&secret_in(h, &other).await),
        ];
        let calls = h.handle().count(GAT);

        let (code, out, err) =
            plugin(&["renew", "--policy", &h.policy, "--wait", "--timeout", "60s"]).await;
        println!(
            "$ kubectl acr renew --policy {} --wait\n{out}{err}",
            h.policy
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains(&format!("AcrRegistryBinding {a} rotated")),
            "{out}"
        );
        assert!(
            out.contains(&format!("AcrRegistryBinding {b} rotated")),
            "{out}"
        );
        let policy = h.policies().get(&h.policy).await.unwrap();
        let value = requested_rotation(&policy.metadata).unwrap().to_owned();
        for name in [&a, &b] {
            assert_eq!(handled(h, name).await, (None, Some(value.clone())));
            let rotated = notes(h, name, "TokenRotated").await;
            assert!(
                rotated
                    .iter()
                    .any(|n| n.contains(&value) && n.contains(&h.policy)),
                "{rotated:?}"
            );
        }
        // One cloud call for the two bindings that share the token; both Secrets hold it.
        assert_eq!(h.handle().count(GAT), calls + 1);
        let new_a = wait_secret(&h.secrets(&ns), "rotated", |s| password(s) != old[0]).await;
        let new_b = wait_secret(&h.secrets(&other), "rotated", |s| password(s) != old[1]).await;
        assert_eq!(password(&new_a), password(&new_b));
        assert_eq!(h.handle().count(GAT), calls + 1);
    })
    .await;
}

#[tokio::test]
async fn with_two_replicas_one_rotation_happens_and_the_next_leader_does_not_repeat_it() {
    let h = Harness::new("ctrl-rotate-ha", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let lease = "acc-rotate";
    let first = Replica::start(&h, lease, "rotate-one").await;
    let second = Replica::start(&h, lease, "rotate-two").await;
    let name = h.named("ha");
    h.bind(&name, &h.test_binding().names(&[&ns])).await;
    h.wait_ready(&name, "True", WAIT).await;
    let old = password(&secret_in(&h, &ns).await);
    let calls = h.handle().count(GAT);

    let (code, out, err) = plugin(&["renew", &name, "--wait", "--timeout", "60s"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let rotated = wait_secret(&h.secrets(&ns), "rotated", |s| password(s) != old).await;
    assert_eq!(
        h.handle().count(GAT),
        calls + 1,
        "two replicas, one rotation"
    );

    // The leader goes; the standby takes over with the request recorded as handled. A new
    // generation proves it made a pass: no cloud call (it adopts the token from the Secret),
    // no rewrite.
    let leader = support::wait_until(WAIT, "a leader", || async {
        let lease: k8s_openapi::api::coordination::v1::Lease =
            Api::namespaced(h.client(), h.env.namespace())
                .get(lease)
                .await
                .map_err(|e| e.to_string())?;
        lease
            .spec
            .and_then(|s| s.holder_identity)
            .ok_or("no holder".to_owned())
    })
    .await;
    let (mut gone, mut stays) = match leader.as_str() {
        "rotate-one" => (first, second),
        _ => (second, first),
    };
    gone.kill();
    gone.wait_exit(WAIT).await;
    let more = h.env.extra_namespace("ctrl-rotate-h").await;
    touch_and_wait_for_a_pass(&h, &name, &[&ns, &more]).await;
    assert!(stays.running());
    assert_eq!(
        h.handle().count(GAT),
        calls + 1,
        "the next leader rotated again"
    );
    let now = secret_in(&h, &ns).await;
    assert_eq!(password(&now), password(&rotated));
    assert_eq!(
        now.metadata.resource_version,
        rotated.metadata.resource_version
    );
}
