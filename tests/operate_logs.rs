//! What the real binary logs with `--log-format json` at debug level, read line by line from its
//! stdout and stderr while it reconciles a binding into two namespaces on the local control
//! plane, with the Lease, the webhook and the live translation on:
//! - every line is one JSON object;
//! - a line logged while a namespace is converged (the requests on its Secret and
//!   ServiceAccounts, "pull Secret written") carries the binding's `reconcile` span (name,
//!   generation), or the namespace pass's `touched` span, and, inside it, that namespace's
//!   `namespace` span;
//! - a line of a long-lived task carries its task's span: each watch (`watch`, by cache), the
//!   Lease loop (`lease`), the webhook (`webhook`, its certificate loop `certificates`), the
//!   translator (`translator`), the probe server (`probes`);
//! - the spans of the controller carry names, generations and namespaces only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod operate_common;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use controller_common::Harness;
use operate_common::Replica;
use operate_common::exports::CertDir;
use serde_json::Value;

/// The spans of the controller and the fields each may carry: names, generations, namespaces,
/// addresses, never anything read from a Secret or the cloud.
const OUR_SPANS: &[(&str, &[&str])] = &[
    ("controller", &["controller"]),
    ("reconcile", &["binding", "policy", "generation"]),
    ("namespace", &["namespace"]),
    ("touched", &[]),
    ("wave", &["due"]),
    ("reconcile failed", &["kind", "name"]),
    ("watch", &["cache"]),
    ("lease", &["lease", "replica"]),
    ("leadership", &["task"]),
    ("webhook", &["address"]),
    ("certificates", &[]),
    ("translator", &["configmap"]),
    ("probes", &[]),
];

/// The caches the controller watches.
const CACHES: [&str; 5] = [
    "acrregistrybindings",
    "acrcredentialpolicies",
    "namespaces",
    "serviceaccounts",
    "secrets",
];

/// The spans of a line, outermost first.
fn spans(line: &Value) -> Vec<&serde_json::Map<String, Value>> {
    line["spans"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default()
}

/// The first span of `line` named `name` whose field `field` is `value` (any value for `None`).
fn span_with<'a>(
    line: &'a Value,
    name: &str,
    field: Option<(&str, &str)>,
) -> Option<(usize, &'a serde_json::Map<String, Value>)> {
    spans(line).into_iter().enumerate().find(|(_, s)| {
        s.get("name").and_then(Value::as_str) == Some(name)
            && field.is_none_or(|(k, v)| s.get(k).and_then(Value::as_str) == Some(v))
    })
}

/// The path of the request a line was logged in (kube's `HTTP` span), without the query.
fn request_path(line: &Value) -> Option<String> {
    let url = span_with(line, "HTTP", None)?.1.get("http.url")?.as_str()?;
    let url = url.split('?').next().unwrap_or(url);
    // An absolute URL: from the first `/` after the host.
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => url,
    };
    Some(path.to_owned())
}

/// The lines of one task (`selects`), and the span each must be in: `span`, with `field` when
/// given.
struct Task<'a> {
    what: &'static str,
    selects: Box<dyn Fn(&Value) -> bool + 'a>,
    span: &'static str,
    field: Option<(&'static str, &'a str)>,
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn every_line_is_json_and_names_its_task_binding_and_namespace() {
    let h = Harness::new("op-logs", 3600, "15m").await;
    let ns_a = h.env.extra_namespace("op-logs-a").await;
    let ns_b = h.env.extra_namespace("op-logs-b").await;
    let (certs, _ca) = CertDir::new(&h.id);
    let kubeconfig = support::cluster()
        .kubeconfig
        .clone()
        .expect("the operate tests need the local control plane");
    // The translator watches a ConfigMap that does not exist: it translates nothing, and runs.
    let legacy = format!("{}/acr-configuration", h.env.namespace());
    let extra = [
        "--webhook-address".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--webhook-cert-dir".to_owned(),
        certs.0.display().to_string(),
        "--legacy-configmap".to_owned(),
        legacy.clone(),
    ];
    let lease = format!("{}-lease", h.id);
    let mut replica = Replica::start_logging(
        &h,
        &lease,
        &format!("{}-a", h.id),
        &kubeconfig,
        &extra,
        "debug",
    )
    .await;
    replica
        .wait_log("became the leader", Duration::from_secs(30))
        .await;
    replica
        .wait_log(
            "live translation of the legacy ConfigMap started",
            Duration::from_secs(30),
        )
        .await;
    replica
        .wait_log(
            "webhook certificate loaded from files",
            Duration::from_secs(30),
        )
        .await;

    let name = format!("{}-logs", h.id);
    h.bind(
        &name,
        &h.test_binding().names(&[ns_a.as_str(), ns_b.as_str()]),
    )
    .await;
    h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    support::wait_until(
        Duration::from_secs(30),
        "a pull Secret written line per namespace",
        || {
            let written: BTreeSet<String> = replica
                .logged("pull Secret written")
                .iter()
                .filter_map(|l| l["fields"]["namespace"].as_str().map(str::to_owned))
                .collect();
            let want = [ns_a.clone(), ns_b.clone()];
            async move {
                if want.iter().all(|ns| written.contains(ns)) {
                    Ok(())
                } else {
                    Err(format!("{written:?}"))
                }
            }
        },
    )
    .await;
    // A clean stop, so every line is flushed.
    replica.signal("TERM");
    replica.wait_exit(Duration::from_secs(30)).await;
    let raw = replica.raw_lines();
    drop(certs);

    // Every line is one JSON object.
    let mut problems = Vec::new();
    let mut lines = Vec::new();
    for (stream, text) in &raw {
        match serde_json::from_str::<Value>(text) {
            Ok(v) if v.is_object() => lines.push(v),
            _ => problems.push(format!("{stream}: not a JSON object: {text}")),
        }
    }
    assert!(lines.len() > 100, "{} lines", lines.len());

    // Our spans carry only the fields they may.
    for line in &lines {
        for span in spans(line) {
            let span_name = span.get("name").and_then(Value::as_str).unwrap_or_default();
            let Some((_, allowed)) = OUR_SPANS.iter().find(|(n, _)| *n == span_name) else {
                continue;
            };
            for field in span.keys().filter(|k| *k != "name") {
                if !allowed.contains(&field.as_str()) {
                    problems.push(format!("span {span_name} carries {field}: {line}"));
                }
            }
        }
    }

    // Converging a namespace: inside the binding's reconcile, in that namespace's span.
    let generation = h.bindings().get(&name).await.unwrap().metadata.generation;
    for ns in [&ns_a, &ns_b] {
        let prefix = format!("/api/v1/namespaces/{ns}/");
        let converging: Vec<&Value> = lines
            .iter()
            .filter(|l| {
                request_path(l).is_some_and(|p| {
                    p.starts_with(&prefix)
                        && (p.contains("/secrets") || p.contains("/serviceaccounts"))
                }) || (message(l) == "pull Secret written"
                    && l["fields"]["namespace"].as_str() == Some(ns.as_str()))
            })
            .collect();
        if !converging.iter().any(|l| request_path(l).is_some())
            || !converging.iter().any(|l| request_path(l).is_none())
        {
            problems.push(format!(
                "{ns}: expected its requests and its \"pull Secret written\" line, got {converging:#?}"
            ));
        }
        for line in converging {
            let reconcile = span_with(line, "reconcile", Some(("binding", &name)));
            let touched = span_with(line, "touched", None);
            let namespace = span_with(line, "namespace", Some(("namespace", ns)));
            match (reconcile, touched, namespace) {
                (Some((outer, r)), None, Some((inner, _))) if outer < inner => {
                    if r.get("generation").and_then(Value::as_i64) != generation {
                        problems.push(format!("{ns}: generation not {generation:?}: {line}"));
                    }
                }
                (None, Some((outer, _)), Some((inner, _))) if outer < inner => {}
                _ => problems.push(format!(
                    "{ns}: converging without reconcile{{binding={name}}} or touched, > namespace{{namespace={ns}}}: {line}"
                )),
            }
        }
    }

    // The watches: every list and watch of a cached kind, in that cache's `watch` span.
    let mut watched = BTreeSet::new();
    for line in &lines {
        let Some(path) = request_path(line) else {
            continue;
        };
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let kind = match segments.as_slice() {
            ["api", _, kind] | ["apis", _, _, kind] => *kind,
            _ => continue,
        };
        let Some(kind) = CACHES.iter().copied().find(|c| *c == kind) else {
            continue;
        };
        // The translator lists the policies and bindings it owns on each pass.
        if span_with(line, "translator", None).is_some() {
            continue;
        }
        match span_with(line, "watch", Some(("cache", kind))) {
            Some(_) => {
                watched.insert(kind);
            }
            None => problems.push(format!(
                "a request on {path} outside watch{{cache={kind}}}: {line}"
            )),
        }
    }
    if watched.len() != CACHES.len() {
        problems.push(format!(
            "watch spans seen: {watched:?}, expected {CACHES:?}"
        ));
    }

    // The Lease loop, the translator, the webhook, the probes: their requests and lines.
    let lease_ref = format!("{}/{lease}", h.env.namespace());
    let configmap_label = legacy.replace('/', ".");
    let tasks = [
        Task {
            what: "the Lease loop",
            selects: Box::new(|l| {
                request_path(l).is_some_and(|p| p.contains("/leases/"))
                    || message(l) == "became the leader"
            }),
            span: "lease",
            field: Some(("lease", &lease_ref)),
        },
        Task {
            what: "the translator",
            selects: Box::new(|l| {
                request_path(l).is_some_and(|p| p.contains("/configmaps"))
                    || message(l).starts_with("live translation")
            }),
            span: "translator",
            field: Some(("configmap", &configmap_label)),
        },
        Task {
            what: "the webhook server",
            selects: Box::new(|l| message(l) == "webhook server listening"),
            span: "webhook",
            field: None,
        },
        Task {
            what: "the webhook's certificate loop",
            selects: Box::new(|l| message(l).starts_with("webhook certificate")),
            span: "certificates",
            field: None,
        },
        Task {
            what: "the probe server",
            selects: Box::new(|l| message(l) == "probe and metrics server listening"),
            span: "probes",
            field: None,
        },
        Task {
            what: "the binding controller",
            selects: Box::new(|l| span_with(l, "reconcile", Some(("binding", &name))).is_some()),
            span: "controller",
            field: Some(("controller", "binding")),
        },
    ];
    for task in &tasks {
        let mine: Vec<&Value> = lines.iter().filter(|l| (task.selects)(l)).collect();
        if mine.is_empty() {
            problems.push(format!("no line of {}", task.what));
        }
        for line in mine {
            if span_with(line, task.span, task.field).is_none() {
                problems.push(format!(
                    "{}: a line outside its {} span ({:?}): {line}",
                    task.what, task.span, task.field
                ));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "{} problems in {} lines:\n{}",
        problems.len(),
        raw.len(),
        problems.join("\n")
    );
}
