//! The webhook under an unauthenticated flood, on the local control plane: the controller
//! runs in-process with its webhook on a loopback port (as `run` starts it), and this test
//! opens hundreds of real TLS connections that send a request head and part of a body, then
//! stall, while the API server keeps creating ServiceAccounts through the webhook.
//!
//! It checks what the server's bounds promise: memory stays bounded (the test process's RSS,
//! which holds both the server and the attacking clients, so an upper bound of the server's),
//! every stalled connection is closed by the request deadline, connections past the cap are
//! closed at once, and a normal review is answered well within the API server's webhook
//! timeout meanwhile. It prints the figures.
//!
//! One test in its own binary, so no other test's memory mixes into the figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use acr_credential_controller::runtime::ControllerConfig;
use acr_credential_controller::webhook::certs::{self, CertTimings, ServingNames};
use acr_credential_controller::webhook::server::{
    MAX_BODY_BYTES, MAX_CONNECTIONS, REQUEST_DEADLINE,
};
use acr_credential_controller::webhook::{CertSource, Managed, PATH, Settings, WebhookConfig};
use controller_common::{Harness, INSTANCE, SECRET_NAME, pull_secret_names};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SELECT_LABEL: &str = "acrcredentials.io/test-webhook";
const CERT_SECRET: &str = "acr-credential-controller-webhook-tls";
/// The API server's default webhook timeout (the chart sets 5 s).
const API_SERVER_TIMEOUT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident and peak resident memory of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn setup(h: &Harness, port: u16) -> (String, String) {
    let configuration = format!("acr-webhook-{}", h.id);
    let url = format!("https://127.0.0.1:{port}{PATH}");
    h.env
        .apply(&format!(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: {configuration}}}\nwebhooks:\n  - name: namespaces.{id}.acrcredentials.io\n    namespaceSelector: {{matchLabels: {{{SELECT_LABEL}: {id}}}}}\n    clientConfig: {{url: \"{url}\"}}\n    rules: [{{apiGroups: [\"\"], apiVersions: [v1], operations: [CREATE], resources: [serviceaccounts], scope: Namespaced}}]\n    failurePolicy: Ignore\n    sideEffects: None\n    timeoutSeconds: 5\n    admissionReviewVersions: [v1]\n",
            id = h.id,
        ))
        .await;
    h.binding(
        &format!("{}-inject", h.id),
        &format!(
            "  registry: {{instanceId: {INSTANCE}}}\n  policyRef: {{name: {}}}\n  namespaces: {{selector: {{matchLabels: {{{SELECT_LABEL}: {}}}}}}}\n  serviceAccounts: {{all: true}}\n  injectOnCreate: true\n",
            h.policy, h.id
        ),
    )
    .await;
    let ns = support::unique_name("wh-limits");
    let object: Namespace = serde_json::from_value(json!({"metadata": {"name": ns,
        "labels": {SELECT_LABEL: h.id, support::TEST_LABEL: "true"}}}))
    .unwrap();
    Api::<Namespace>::all(h.client())
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    h.env.track_cluster_object::<Namespace>(&ns);
    (configuration, ns)
}

fn config(h: &Harness, port: u16, configuration: &str) -> ControllerConfig {
    ControllerConfig {
        webhook: Some(WebhookConfig {
            address: format!("127.0.0.1:{port}").parse().unwrap(),
            settings: Settings::new(SECRET_NAME, h.env.namespace()),
            certs: CertSource::Managed(Managed {
                namespace: h.env.namespace().to_owned(),
                certificate_secret_name: CERT_SECRET.to_owned(),
                configuration_name: configuration.to_owned(),
                serving_names: ServingNames {
                    dns_names: vec![],
                    ip_addresses: vec!["127.0.0.1".parse().unwrap()],
                },
                timings: CertTimings {
                    validity: Duration::from_secs(3600),
                    renew_before: Duration::from_secs(600),
                    overlap: Duration::from_secs(2),
                },
            }),
        }),
        ..h.config()
    }
}

/// Creates a ServiceAccount through the API server; whether the webhook added the reference.
async fn create_sa(h: &Harness, ns: &str, name: &str) -> bool {
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let sa = h
        .service_accounts(ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    pull_secret_names(&sa).iter().any(|n| n == SECRET_NAME)
}

async fn ca_bundle(h: &Harness) -> String {
    let s: Secret = Api::namespaced(h.client(), h.env.namespace())
        .get(CERT_SECRET)
        .await
        .unwrap();
    String::from_utf8(s.data.unwrap()[certs::key::BUNDLE].0.clone()).unwrap()
}

fn tls_connector(bundle: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for pem in certs::split_pem(bundle) {
        use rustls_pki_types::pem::PemObject;
        roots
            .add(rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A large but realistic ServiceAccount CREATE review: 100 labels, 100 annotations, a
/// `kubectl apply` last-applied-configuration, 50 pull Secrets, and a user with 30 groups.
fn big_review(ns: &str) -> String {
    let labels: serde_json::Map<String, Value> = (0..100)
        .map(|i| {
            (
                format!("team.example.com/label-{i:03}"),
                json!(format!("value-{i:03}")),
            )
        })
        .collect();
    let mut annotations: serde_json::Map<String, Value> = (0..100)
        .map(|i| {
            (
                format!("team.example.com/annotation-{i:03}"),
                json!(format!("an annotation value of some length, number {i:03}")),
            )
        })
        .collect();
    let pull: Vec<Value> = (0..50)
        .map(|i| json!({"name": format!("registry-credentials-{i:02}")}))
        .collect();
    let mut object = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "big", "namespace": ns, "labels": labels, "annotations": annotations.clone()},
        "imagePullSecrets": pull,
    });
    annotations.insert(
        "kubectl.kubernetes.io/last-applied-configuration".into(),
        json!(object.to_string()),
    );
    object["metadata"]["annotations"] = Value::Object(annotations);
    let groups: Vec<String> = (0..30).map(|i| format!("oidc:team-group-{i:02}")).collect();
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "0f0e1d2c-3b4a-5968-7766-554433221100",
            "kind": {"group": "", "version": "v1", "kind": "ServiceAccount"},
            "resource": {"group": "", "version": "v1", "resource": "serviceaccounts"},
            "requestKind": {"group": "", "version": "v1", "kind": "ServiceAccount"},
            "requestResource": {"group": "", "version": "v1", "resource": "serviceaccounts"},
            "name": "big", "namespace": ns, "operation": "CREATE",
            "userInfo": {"username": "oidc:someone@example.com", "uid": "3f1c",
                         "groups": groups, "extra": {"authentication.kubernetes.io/credential-id": ["JTI=0f0e1d2c"]}},
            "object": object, "oldObject": null, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "fieldManager": "kubectl-client-side-apply"},
        }
    })
    .to_string()
}

/// How one attacking connection ended.
#[derive(Debug)]
struct Ended {
    /// From the end of the TLS handshake to the close by the server.
    after: Duration,
    /// The status line the server sent, if any.
    status: Option<String>,
}

/// Connects over TLS, sends a request head announcing `length` bytes and then `send` of them,
/// and waits for the server to close the connection.
async fn stall(
    port: u16,
    connector: tokio_rustls::TlsConnector,
    length: usize,
    send: usize,
) -> Ended {
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = match connector.connect(name, tcp).await {
        Ok(t) => t,
        Err(_) => {
            return Ended {
                after: started.elapsed(),
                status: None,
            };
        }
    };
    // The deadline counts from the accept; measured from here, after the handshake, the
    // close is due within the deadline whatever the handshakes of 200 connections took.
    let started = Instant::now();
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n["
    );
    let body = vec![b'0'; 16 * 1024];
    let mut sent = 1;
    let mut ok = tls.write_all(head.as_bytes()).await.is_ok();
    while ok && sent < send {
        let n = (send - sent).min(body.len());
        // The server may stop reading: a write that blocks ends the sending.
        ok = matches!(
            tokio::time::timeout(Duration::from_secs(2), tls.write_all(&body[..n])).await,
            Ok(Ok(()))
        );
        sent += n;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), tls.flush()).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            // Reported as lasting past the deadline; the test fails on it.
            Err(_) => {
                return Ended {
                    after: started.elapsed(),
                    status: Some("(still open after 30 s)".into()),
                };
            }
        }
    }
    let status = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .map(str::to_owned);
    Ended {
        after: started.elapsed(),
        status,
    }
}

fn summary(label: &str, ended: &[Ended]) -> Duration {
    let longest = ended.iter().map(|e| e.after).max().unwrap_or_default();
    let mut statuses: std::collections::BTreeMap<String, usize> = Default::default();
    for e in ended {
        *statuses
            .entry(
                e.status
                    .clone()
                    .unwrap_or_else(|| "(closed without an answer)".into()),
            )
            .or_default() += 1;
    }
    eprintln!(
        "{label}: {} connections, the last closed after {longest:.2?}; answers {statuses:?}",
        ended.len()
    );
    longest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_bounded_and_reviews_still_answered() {
    let h = Harness::new("webhook-limits", 3600, "15m").await;
    let port = free_port();
    let (configuration, ns) = setup(&h, port).await;
    let running = h.start_with(config(&h, port, &configuration));
    support::wait_until(Duration::from_secs(60), "the webhook to mutate", || async {
        let name = support::unique_name("probe");
        if create_sa(&h, &ns, &name).await {
            Ok(())
        } else {
            Err("not mutated")
        }
    })
    .await;
    let connector = tls_connector(&ca_bundle(&h).await);
    let reviewer = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(ca_bundle(&h).await.as_bytes()).unwrap(),
        )
        .timeout(API_SERVER_TIMEOUT)
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}{PATH}");

    // The body limit leaves room for a large realistic review.
    let big = big_review(&ns);
    eprintln!(
        "a large realistic ServiceAccount review: {} bytes (limit {MAX_BODY_BYTES})",
        big.len()
    );
    assert!(big.len() * 2 < MAX_BODY_BYTES, "{}", big.len());
    let answer: Value = reviewer
        .post(&url)
        .body(big)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["response"]["auditAnnotations"]["decision"], "Patched",
        "{answer}"
    );

    // 200 TLS connections: half announce 2,000,000 bytes and try to send all but one, half
    // announce exactly the limit and send all but one; then they stall.
    let (rss_before, hwm_before) = rss_kib();
    let sampling = Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let peak = sampling.clone();
    let sampler = tokio::spawn(async move {
        loop {
            peak.fetch_max(rss_kib().0, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let attack_started = Instant::now();
    let mut big_bodies = Vec::new();
    let mut at_limit = Vec::new();
    for _ in 0..100 {
        big_bodies.push(tokio::spawn(stall(
            port,
            connector.clone(),
            2_000_000,
            1_999_999,
        )));
        at_limit.push(tokio::spawn(stall(
            port,
            connector.clone(),
            MAX_BODY_BYTES,
            MAX_BODY_BYTES - 1,
        )));
    }
    // Meanwhile: a review posted directly and a ServiceAccount created through the API server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "1a2b", "kind": {"group": "", "version": "v1", "kind": "ServiceAccount"},
                    "resource": {"group": "", "version": "v1", "resource": "serviceaccounts"},
                    "namespace": ns, "name": "direct", "operation": "CREATE",
                    "object": {"metadata": {"name": "direct"}}}
    })
    .to_string();
    let started = Instant::now();
    let answer: Value = reviewer
        .post(&url)
        .body(review)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let direct = started.elapsed();
    assert_eq!(
        answer["response"]["auditAnnotations"]["decision"], "Patched",
        "{answer}"
    );
    let started = Instant::now();
    let mutated = create_sa(&h, &ns, "under-attack").await;
    let through_api_server = started.elapsed();
    eprintln!(
        "under attack ({:.1?} in): a review posted directly answered in {direct:.2?}; a ServiceAccount created through the API server in {through_api_server:.2?}, mutated: {mutated}",
        attack_started.elapsed()
    );
    assert!(
        mutated,
        "the ServiceAccount created under attack was not mutated"
    );
    assert!(direct < API_SERVER_TIMEOUT / 2, "{direct:?}");
    assert!(
        through_api_server < API_SERVER_TIMEOUT / 2,
        "{through_api_server:?}"
    );

    let mut ended_big = Vec::new();
    for t in big_bodies {
        ended_big.push(t.await.unwrap());
    }
    let mut ended_limit = Vec::new();
    for t in at_limit {
        ended_limit.push(t.await.unwrap());
    }
    let longest_big = summary("Content-Length 2,000,000", &ended_big);
    let longest_limit = summary(&format!("Content-Length {MAX_BODY_BYTES}"), &ended_limit);
    let peak_kib = sampling.load(std::sync::atomic::Ordering::Relaxed);
    let (rss_after, hwm_after) = rss_kib();
    eprintln!(
        "RSS of the test process (server and clients): {:.1} MiB before, peak {:.1} MiB during ({:+.1} MiB), {:.1} MiB after; VmHWM {:.1} → {:.1} MiB",
        mib(rss_before),
        mib(peak_kib),
        mib(peak_kib.saturating_sub(rss_before)),
        mib(rss_after),
        mib(hwm_before),
        mib(hwm_after)
    );
    // Every connection closed by the deadline (plus scheduling slack).
    let slack = Duration::from_secs(3);
    assert!(longest_big < REQUEST_DEADLINE + slack, "{longest_big:?}");
    assert!(
        longest_limit < REQUEST_DEADLINE + slack,
        "{longest_limit:?}"
    );
    // Bodies over the limit are refused, not buffered.
    assert!(
        ended_big
            .iter()
            .all(|e| e.status.as_deref().is_none_or(|s| s.contains(" 413 "))),
        "{ended_big:?}"
    );
    // Memory: 200 connections hold at most a TLS session and 64 KiB each, on both sides.
    assert!(
        peak_kib.saturating_sub(rss_before) < 64 * 1024,
        "RSS grew by {:.1} MiB",
        mib(peak_kib.saturating_sub(rss_before))
    );

    // Past the connection cap: the excess is closed at once.
    let excess = 50;
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS + excess {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let mut waits = Vec::new();
    for mut tcp in idle {
        waits.push(tokio::spawn(async move {
            let mut b = [0u8; 1];
            let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut b)).await;
            started.elapsed()
        }));
    }
    let mut closed = Vec::new();
    for w in waits {
        closed.push(w.await.unwrap());
    }
    closed.sort();
    let closed_at_once = closed
        .iter()
        .filter(|c| **c < Duration::from_secs(1))
        .count();
    let last = closed.last().copied().unwrap_or_default();
    eprintln!(
        "{} plain TCP connections (cap {MAX_CONNECTIONS}): {closed_at_once} closed within 1 s, the last after {last:.2?}",
        MAX_CONNECTIONS + excess
    );
    assert!(closed_at_once >= excess, "{closed_at_once}");
    assert!(last < REQUEST_DEADLINE + slack, "{last:?}");

    // And serving again.
    assert!(create_sa(&h, &ns, "after").await);
    sampler.abort();
    running.stop().await;
}
