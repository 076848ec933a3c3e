//! The shipped Prometheus alerts (`deploy/prometheus/alerts.yaml`) are valid PromQL and use only
//! what the controller binary exports: its metrics, their labels and label values, read from a
//! real scrape of `acr-credential-controller run` after it did one of everything (local control
//! plane, fake cloud). Renaming a metric or a label in the code fails this test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod operate_common;
mod support;

use std::collections::BTreeSet;

use controller_common::Harness;
use operate_common::exports::busy_scrape;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alert_expressions_use_what_the_binary_exports() {
    let path = support::repo_root().join("deploy/prometheus/alerts.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();

    // Short tokens, so the workload sees a renewal.
    let h = Harness::new("op-alerts", 30, "20s").await;
    let busy = busy_scrape(&h).await;

    let mut alerts = BTreeSet::new();
    let mut problems = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name").to_owned();
            let expr = rule["expr"].as_str().expect("expr");
            if let Err(e) = busy.scrape.check(expr) {
                problems.push(format!("alert {name}: {e}\n  {}", expr.trim()));
            }
            assert!(rule["for"].as_str().is_some(), "alert {name} has no `for`");
            alerts.insert(name);
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nthe scrape:\n{}",
        problems.join("\n"),
        busy.scrape.text
    );
    assert_eq!(
        alerts.len(),
        3,
        "expiry, not-ready and no-leader alerts: {alerts:?}"
    );
}
