//! Operating the controller: two replicas of the real binary with leader election against the
//! local control plane and the fake cloud. Exactly one leads and the other writes nothing (the
//! API server's audit log by user agent, the fake's request log); `kill -9` of the leader in
//! the middle of a fan-out to 200 namespaces and the standby converges everything; SIGTERM
//! hands over at once; a leader whose Lease is taken or whose Lease RBAC is revoked stops
//! writing and exits; `/metrics` parsed by Python's prometheus-client; `/readyz` and `/livez`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod operate_common;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use acr_credential_controller::cluster::Readiness;
use acr_credential_controller::runtime::leader::{self, LeaseConfig, LeaseTimings};
use acr_credential_controller::runtime::probes::{self, Health};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};

use controller_common::{Harness, INSTANCE, SECRET_NAME, auths, pull_secret_names};
use operate_common::{LEASE, RETRY, Replica, sample_sum, writes_by};

const NAMESPACES: usize = 200;

async fn lease_holder(h: &Harness, lease: &str) -> Option<String> {
    Api::<Lease>::namespaced(h.client(), h.env.namespace())
        .get_opt(lease)
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// Creates `n` namespaces labelled `acr-ha=<label>` (deleted with the env).
async fn labelled_namespaces(h: &Harness, label: &str, n: usize) -> Vec<String> {
    let api: Api<Namespace> = Api::all(h.client());
    let names: Vec<String> = (0..n).map(|i| format!("{}-{i:03}", h.id)).collect();
    futures::stream::iter(names.clone())
        .for_each_concurrent(16, |name| {
            let api = api.clone();
            let label = label.to_owned();
            async move {
                let ns: Namespace = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "labels": {support::TEST_LABEL: "true", "acr-ha": label}},
                }))
                .unwrap();
                api.create(&PostParams::default(), &ns).await.unwrap();
            }
        })
        .await;
    for name in &names {
        h.env.track_cluster_object::<Namespace>(name);
    }
    names
}

/// Namespaces among `names` holding our pull Secret.
async fn secrets_in(h: &Harness, names: &[String]) -> usize {
    let all: Api<Secret> = Api::all(h.client());
    let list = all
        .list(&ListParams::default().fields(&format!("metadata.name={SECRET_NAME}")))
        .await
        .unwrap();
    list.items
        .iter()
        .filter(|s| names.contains(&s.namespace().unwrap_or_default()))
        .count()
}

fn binding_spec(h: &Harness, label: &str) -> String {
    format!(
        "  registry: {{instanceId: {INSTANCE}}}\n  policyRef: {{name: {}}}\n  namespaces: {{selector: {{matchLabels: {{acr-ha: {label}}}}}}}\n",
        h.policy
    )
}

/// Cloud requests by API from the fake's own request log.
fn fake_counts(h: &Harness) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for entry in h.handle().log() {
        *counts.entry(entry.api).or_default() += 1;
    }
    counts
}

/// Cloud requests by API as a replica's `/metrics` counts them.
fn metric_counts(text: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("acr_credential_controller_cloud_requests_total{") else {
            continue;
        };
        let api = rest
            .split("api=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let value: f64 = l.rsplit_once(' ').unwrap().1.parse().unwrap();
        *counts.entry(api.to_owned()).or_default() += value as usize;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_two_replicas_leads_and_the_standby_takes_over() {
    let h = Harness::new("op-ha", 3600, "15m").await;
    let label = format!("ha-{}", h.id);
    let lease = format!("{}-lease", h.id);
    let names = labelled_namespaces(&h, &label, NAMESPACES).await;
    // Every namespace has its default ServiceAccount before the fan-out starts.
    support::wait_until(Duration::from_secs(120), "default ServiceAccounts", || {
        let h = &h;
        let names = &names;
        async move {
            let sas: Api<ServiceAccount> = Api::all(h.client());
            let list = sas
                .list(&ListParams::default().fields("metadata.name=default"))
                .await
                .map_err(|e| e.to_string())?;
            let n = list
                .items
                .iter()
                .filter(|s| names.contains(&s.namespace().unwrap_or_default()))
                .count();
            if n == names.len() {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        }
    })
    .await;

    let mut a = Replica::start(&h, &lease, &format!("{}-a", h.id)).await;
    let mut b = Replica::start(&h, &lease, &format!("{}-b", h.id)).await;
    // Whichever won the Lease is `a`, the leader; `b` stands by.
    let holder = support::wait_until(Duration::from_secs(30), "a Lease holder", || {
        let h = &h;
        let lease = &lease;
        async move { lease_holder(h, lease).await }
    })
    .await;
    if holder == b.identity {
        std::mem::swap(&mut a, &mut b);
    }
    a.wait_log("became the leader", Duration::from_secs(30))
        .await;
    b.wait_log(
        "another replica leads; standing by",
        Duration::from_secs(30),
    )
    .await;
    assert!(b.logged("became the leader").is_empty(), "both led");
    assert_eq!(
        lease_holder(&h, &lease).await.as_deref(),
        Some(a.identity.as_str())
    );
    assert_eq!(
        sample_sum(&a.metrics().await, "acr_credential_controller_leader", &[]),
        1.0
    );
    assert_eq!(
        sample_sum(&b.metrics().await, "acr_credential_controller_leader", &[]),
        0.0
    );

    // The fan-out: kill -9 the leader in the middle of it.
    let name = format!("{}-ha", h.id);
    h.binding(&name, &binding_spec(&h, &label)).await;
    let started = Instant::now();
    let mut before_kill = 0;
    while started.elapsed() < Duration::from_secs(60) {
        before_kill = secrets_in(&h, &names).await;
        if before_kill >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Quiet for cloud calls now (one token serves every namespace): compare both replicas'
    // counters with the fake's log, then kill.
    let (a_metrics, b_metrics) = (a.metrics().await, b.metrics().await);
    let fake_before_kill = fake_counts(&h);
    a.kill();
    let killed = Instant::now();
    let killed_at = jiff::Timestamp::now();
    println!("killed the leader with {before_kill}/{NAMESPACES} namespaces written");
    assert!(
        before_kill > 0 && before_kill < NAMESPACES,
        "not in the middle: {before_kill}"
    );
    assert!(!fake_before_kill.is_empty(), "the leader fetched a token");
    assert_eq!(
        metric_counts(&a_metrics),
        fake_before_kill,
        "leader's cloud counters = fake's log"
    );
    assert!(
        metric_counts(&b_metrics).is_empty(),
        "the standby called the cloud:\n{b_metrics}"
    );

    // The standby takes over: time from the kill to its first write (its own counter; the
    // audit log below confirms the writes are its).
    let first_write = loop {
        let m = b.metrics().await;
        if sample_sum(&m, "acr_credential_controller_api_writes_total", &[]) > 0.0 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "the standby never wrote:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "kill -9 to the standby's first write: {} ms (lease duration {} ms)",
        first_write.as_millis(),
        (LEASE * 1000.0) as u64
    );
    assert!(
        first_write < Duration::from_secs_f64(LEASE + 2.0 * RETRY),
        "takeover took {first_write:?}"
    );

    // Everything converges, each default ServiceAccount with exactly one entry.
    h.wait_ready(&name, "True", Duration::from_secs(120)).await;
    support::wait_until(
        Duration::from_secs(120),
        "every namespace converged",
        || {
            let h = &h;
            let names = &names;
            async move {
                let n = secrets_in(h, names).await;
                if n == NAMESPACES {
                    Ok(())
                } else {
                    Err(format!("{n}/{NAMESPACES}"))
                }
            }
        },
    )
    .await;
    let sas: Api<ServiceAccount> = Api::all(h.client());
    let list = sas
        .list(&ListParams::default().fields("metadata.name=default"))
        .await
        .unwrap();
    let ours: Vec<_> = list
        .items
        .iter()
        .filter(|s| names.contains(&s.namespace().unwrap_or_default()))
        .collect();
    assert_eq!(ours.len(), NAMESPACES);
    for sa in ours {
        let entries = pull_secret_names(sa);
        assert_eq!(
            entries.iter().filter(|n| *n == SECRET_NAME).count(),
            1,
            "{:?}: {entries:?}",
            sa.namespace()
        );
    }

    // The audit log: the killed leader wrote, the standby wrote nothing before the kill.
    let a_writes = writes_by(&a.identity);
    let b_writes = writes_by(&b.identity);
    assert!(
        !a_writes.is_empty(),
        "the leader's writes are in the audit log"
    );
    let early: Vec<_> = b_writes.iter().filter(|w| w.at < killed_at).collect();
    assert!(
        early.is_empty(),
        "the standby wrote before the kill: {early:?}"
    );
    assert!(
        !b_writes.is_empty(),
        "the new leader's writes are in the audit log"
    );
    println!(
        "audit: {} writes by the first leader, {} by the standby, none of them before the kill",
        a_writes.len(),
        b_writes.len()
    );

    // SIGTERM of the (new) leader: a fresh standby leads within 2 s.
    let mut c = Replica::start(&h, &lease, &format!("{}-c", h.id)).await;
    c.wait_log(
        "another replica leads; standing by",
        Duration::from_secs(30),
    )
    .await;
    b.signal("TERM");
    let termed = Instant::now();
    let handover = loop {
        if lease_holder(&h, &lease).await.as_deref() == Some(c.identity.as_str()) {
            break termed.elapsed();
        }
        assert!(
            termed.elapsed() < Duration::from_secs(20),
            "no handover:\n{}",
            c.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "SIGTERM to the standby holding the Lease: {} ms",
        handover.as_millis()
    );
    assert!(
        handover < Duration::from_secs(2),
        "handover took {handover:?}"
    );
    assert_eq!(
        b.wait_exit(Duration::from_secs(20)).await,
        Some(0),
        "{}",
        b.log_text()
    );
    assert_eq!(b.logged("released the Lease").len(), 1, "{}", b.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_lease_is_taken_stops_writing_and_exits() {
    let h = Harness::new("op-taken", 3600, "15m").await;
    let label = format!("tk-{}", h.id);
    let lease = format!("{}-lease", h.id);
    let first = labelled_namespaces(&h, &label, 1).await;
    let mut a = Replica::start(&h, &lease, &format!("{}-a", h.id)).await;
    a.wait_log("became the leader", Duration::from_secs(30))
        .await;
    let name = format!("{}-tk", h.id);
    h.binding(&name, &binding_spec(&h, &label)).await;
    h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    assert_eq!(secrets_in(&h, &first).await, 1);
    assert!(
        !writes_by(&a.identity).is_empty(),
        "the leader's writes are audited"
    );

    // Take the Lease by hand, then give the old leader something to write.
    let api: Api<Lease> = Api::namespaced(h.client(), h.env.namespace());
    let mut l = api.get(&lease).await.unwrap();
    let spec = l.spec.as_mut().unwrap();
    spec.holder_identity = Some("someone-else".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        jiff::Timestamp::now(),
    ));
    spec.lease_duration_seconds = Some(3600);
    api.replace(&lease, &PostParams::default(), &l)
        .await
        .unwrap();
    let taken = Instant::now();
    let taken_at = jiff::Timestamp::now();
    // Keep giving it work: a namespace joins the binding every 250 ms.
    let churn = {
        let client = h.client();
        let id = h.id.clone();
        let label = label.clone();
        tokio::spawn(async move {
            let api: Api<Namespace> = Api::all(client);
            let mut created = Vec::new();
            for i in 0..((operate_common::RENEW + 2.0) * 4.0) as usize {
                let ns = format!("{id}-late-{i:02}");
                let obj: Namespace = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": ns, "labels": {support::TEST_LABEL: "true", "acr-ha": label}},
                }))
                .unwrap();
                api.create(&PostParams::default(), &obj).await.unwrap();
                created.push((ns, jiff::Timestamp::now()));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            created
        })
    };

    let code = a
        .wait_exit(Duration::from_secs_f64(operate_common::RENEW + 2.0))
        .await;
    println!(
        "Lease taken to exit: {} ms (code {code:?})",
        taken.elapsed().as_millis()
    );
    assert_eq!(
        code,
        Some(i32::from(acr_credential_controller::cli::EXIT_FAILURE)),
        "{}",
        a.log_text()
    );
    let lost = a.logged("lost the leadership; stopped writing");
    assert_eq!(lost.len(), 1, "{}", a.log_text());
    let lost_at: jiff::Timestamp = lost[0]["timestamp"].as_str().unwrap().parse().unwrap();
    let within = lost_at.duration_since(taken_at);
    println!("Lease taken to writes stopped: {} ms", within.as_millis());
    assert!(
        within < jiff::SignedDuration::from_secs_f64(operate_common::RENEW),
        "stopped writing {within:?} after the takeover"
    );
    let created = churn.await.unwrap();
    for (ns, _) in &created {
        h.env.track_cluster_object::<Namespace>(ns);
    }
    // Give a stray write time to land, then check: nothing from it after it stopped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late: Vec<_> = writes_by(&a.identity)
        .into_iter()
        .filter(|w| w.at > lost_at)
        .collect();
    assert!(
        late.is_empty(),
        "writes after leadership was lost: {late:?}"
    );
    let mut after = 0;
    for (ns, at) in created.iter().filter(|(_, at)| *at > lost_at) {
        after += 1;
        let secret = h.secrets(ns).get_opt(SECRET_NAME).await.unwrap();
        assert!(
            secret.is_none(),
            "a Secret was written in {ns} (created {at}) without the Lease"
        );
    }
    assert!(after > 0, "namespaces kept coming after the loss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_parse_and_carry_no_secret() {
    let h = Harness::new("op-metrics", 3600, "15m").await;
    let label = format!("mt-{}", h.id);
    let lease = format!("{}-lease", h.id);
    let names = labelled_namespaces(&h, &label, 2).await;
    let mut a = Replica::start(&h, &lease, &format!("{}-a", h.id)).await;
    a.wait_log("became the leader", Duration::from_secs(30))
        .await;
    let name = format!("{}-mt", h.id);
    h.binding(&name, &binding_spec(&h, &label)).await;
    let binding = h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    let secret =
        controller_common::wait_secret(&h.secrets(&names[0]), "pull Secret", |_| true).await;
    let token = auths(&secret).into_values().next().unwrap().1;
    let expires = binding.status.as_ref().unwrap().token.as_ref().unwrap();
    let expires_at = expires.expires_at.as_ref().unwrap().0.as_second() as f64;

    // The per-binding gauges are read from the cache: wait for it to hold the status.
    let text = support::wait_until(Duration::from_secs(30), "expiry gauge", || {
        let a = &a;
        let name = &name;
        async move {
            let text = a.metrics().await;
            let v = sample_sum(
                &text,
                "acr_credential_controller_binding_token_expiration_timestamp_seconds",
                &[("binding", name)],
            );
            if v > 0.0 {
                Ok(text)
            } else {
                Err("no expiry gauge yet".to_owned())
            }
        }
    })
    .await;

    // A real parser of the exposition format.
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.setdefault(s.name, []).append({"labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus-client could not parse /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let one = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        let list = samples[metric]
            .as_array()
            .unwrap_or_else(|| panic!("no {metric}:\n{text}"));
        let hits: Vec<f64> = list
            .iter()
            .filter(|s| labels.iter().all(|(k, v)| s["labels"][k] == *v))
            .map(|s| s["value"].as_f64().unwrap())
            .collect();
        assert_eq!(hits.len(), 1, "{metric}{labels:?}: {hits:?}");
        hits[0]
    };
    assert_eq!(
        one(
            "acr_credential_controller_binding_token_expiration_timestamp_seconds",
            &[("binding", &name)]
        ),
        expires_at,
        "expiry gauge = status.token.expiresAt"
    );
    let renew_at = expires.renew_at.as_ref().unwrap().0.as_second() as f64;
    assert_eq!(
        one(
            "acr_credential_controller_binding_token_renewal_timestamp_seconds",
            &[("binding", &name)]
        ),
        renew_at
    );
    assert_eq!(
        one(
            "acr_credential_controller_binding_condition",
            &[("binding", &name), ("type", "Ready"), ("status", "True")]
        ),
        1.0
    );
    assert_eq!(
        one(
            "acr_credential_controller_binding_condition",
            &[("binding", &name), ("type", "Ready"), ("status", "False")]
        ),
        0.0
    );
    assert_eq!(
        one(
            "acr_credential_controller_binding_namespaces_selected",
            &[("binding", &name)]
        ),
        2.0
    );
    assert_eq!(
        one(
            "acr_credential_controller_binding_namespaces_synced",
            &[("binding", &name)]
        ),
        2.0
    );
    assert_eq!(one("acr_credential_controller_leader", &[]), 1.0);
    assert!(
        one(
            "acr_credential_controller_api_writes_total",
            &[("kind", "Secret"), ("verb", "create")]
        ) >= 2.0
    );
    assert!(
        one(
            "acr_credential_controller_reconciles_total",
            &[("controller", "binding"), ("result", "ok")]
        ) >= 1.0
    );
    // Cloud calls: the parser's counters equal the fake's own request log, API by API.
    let mut parsed = BTreeMap::new();
    for s in samples["acr_credential_controller_cloud_requests_total"]
        .as_array()
        .unwrap()
    {
        *parsed
            .entry(s["labels"]["api"].as_str().unwrap().to_owned())
            .or_insert(0usize) += s["value"].as_f64().unwrap() as usize;
    }
    assert_eq!(
        parsed,
        fake_counts(&h),
        "cloud counters = the fake's request log"
    );
    assert!(samples["acr_credential_controller_cloud_request_duration_seconds_count"].is_array());
    // Every metric the alerts may use is served.
    for family in [
        "binding_token_expiration_timestamp_seconds",
        "leader",
        "binding_condition",
    ] {
        assert!(text.contains(&format!("acr_credential_controller_{family}")));
    }
    // No secret in the output: the registry token (a canary from the fake), the AccessKey
    // secret, not even the token's random tail.
    for secret in [
        token.as_str(),
        "ctrlsecret",
        token.rsplit(':').next().unwrap(),
    ] {
        assert!(!text.contains(secret), "/metrics leaks a secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_caches_and_livez_the_lease_loop() {
    let h = Harness::new("op-probes", 3600, "15m").await;
    let readiness = Readiness::new(["bindings", "namespaces"]);
    let handle = leader::start(
        h.client(),
        LeaseConfig {
            namespace: h.env.namespace().to_owned(),
            name: format!("{}-lease", h.id),
            holder: format!("{}-probe", h.id),
            timings: LeaseTimings {
                lease_duration: Duration::from_secs(6),
                renew_deadline: Duration::from_secs(4),
                retry_period: Duration::from_secs(1),
            },
        },
    );
    let health = Health {
        readiness: readiness.clone(),
        leadership: handle.leadership.clone(),
        loop_max_age: Duration::from_secs(3),
        running: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        webhook: None,
    };
    let (bindings, _writer) =
        kube::runtime::reflector::store::<acr_credential_controller::api::AcrRegistryBinding>();
    let addr = probes::serve(
        "127.0.0.1:0".parse().unwrap(),
        health,
        probes::registry(bindings),
    )
    .await
    .unwrap();
    let get = |path: &'static str| async move {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("bindings") && body.contains("namespaces"),
        "{body}"
    );
    readiness.mark_listed("bindings");
    assert_eq!(get("/readyz").await.0, 503, "one cache still lists");
    readiness.mark_listed("namespaces");
    assert_eq!(get("/readyz").await, (200, "ok\n".to_owned()));

    handle.leadership.acquired().await;
    assert_eq!(get("/livez").await.0, 200);
    handle.abort();
    let stopped = Instant::now();
    let body = support::wait_until(Duration::from_secs(10), "/livez fails", || async {
        match get("/livez").await {
            (503, body) => Ok(body),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(body.contains("leader-election loop"), "{body}");
    println!(
        "/livez failed {} ms after the loop stopped",
        stopped.elapsed().as_millis()
    );
    // Readiness is about caches, not leadership or the loop.
    assert_eq!(get("/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_lease_rbac_is_revoked_stops_writing_and_exits() {
    let h = Harness::new("op-rbac", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let label = format!("rb-{}", h.id);
    let lease = format!("{}-lease", h.id);
    let sa = "controller";
    // Everything the controller needs but Leases, cluster-wide; Leases only through a Role.
    h.env
        .apply(&format!(
            r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: {sa}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {id}-rest}}
rules:
  - {{apiGroups: [""], resources: [namespaces, serviceaccounts, secrets, events], verbs: ["*"]}}
  - {{apiGroups: [acrcredentials.io], resources: ["*"], verbs: ["*"]}}
  - {{apiGroups: [events.k8s.io], resources: [events], verbs: ["*"]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {id}-rest}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {id}-rest}}
subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: leases}}
rules:
  - {{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: leases}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: leases}}
subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {ns}}}]
"#,
            id = h.id
        ))
        .await;
    let kubeconfig = h.service_account_kubeconfig(&ns, sa).await;
    let first = labelled_namespaces(&h, &label, 1).await;
    let mut a = Replica::start_as(&h, &lease, &format!("{}-a", h.id), &kubeconfig).await;
    a.wait_log("became the leader", Duration::from_secs(30))
        .await;
    let name = format!("{}-rb", h.id);
    h.binding(&name, &binding_spec(&h, &label)).await;
    h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    assert_eq!(secrets_in(&h, &first).await, 1);

    // Revoke the Lease RBAC: renewals fail from now on.
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(h.client(), &ns);
    bindings
        .delete("leases", &Default::default())
        .await
        .unwrap();
    let revoked_at = jiff::Timestamp::now();
    let code = a
        .wait_exit(Duration::from_secs_f64(operate_common::RENEW + 3.0 * RETRY))
        .await;
    let _ = std::fs::remove_file(&kubeconfig);
    assert_eq!(
        code,
        Some(i32::from(acr_credential_controller::cli::EXIT_FAILURE)),
        "{}",
        a.log_text()
    );
    let lost = a.logged("lost the leadership; stopped writing");
    assert_eq!(lost.len(), 1, "{}", a.log_text());
    let lost_at: jiff::Timestamp = lost[0]["timestamp"].as_str().unwrap().parse().unwrap();
    let after = lost_at.duration_since(revoked_at);
    println!(
        "Lease RBAC revoked to writes stopped: {} ms",
        after.as_millis()
    );
    // It leads until the renew deadline since its last good renewal, not longer.
    assert!(
        after <= jiff::SignedDuration::from_secs_f64(operate_common::RENEW + RETRY),
        "stopped writing {after:?} after the revocation"
    );
    let late: Vec<_> = writes_by(&a.identity)
        .into_iter()
        .filter(|w| w.at > lost_at)
        .collect();
    assert!(
        late.is_empty(),
        "writes after leadership was lost: {late:?}"
    );
}
