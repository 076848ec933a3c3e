//! The shipped Prometheus alerts (`deploy/prometheus/alerts.yaml`) are valid PromQL and use only
//! metrics the controller exports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use promql_parser::parser::{self, Expr};

/// Every metric name the controller's `/metrics` serves (counters with their `_total`).
const EXPORTED: &[&str] = &[
    "acr_credential_controller_binding_token_expiration_timestamp_seconds",
    "acr_credential_controller_binding_token_renewal_timestamp_seconds",
    "acr_credential_controller_binding_condition",
    "acr_credential_controller_binding_namespaces_selected",
    "acr_credential_controller_binding_namespaces_synced",
    "acr_credential_controller_cloud_requests_total",
    "acr_credential_controller_cloud_request_duration_seconds",
    "acr_credential_controller_reconciles_total",
    "acr_credential_controller_reconcile_duration_seconds",
    "acr_credential_controller_api_writes_total",
    "acr_credential_controller_leader",
];

fn metric_names(expr: &Expr, out: &mut BTreeSet<String>) {
    match expr {
        Expr::VectorSelector(v) => {
            if let Some(name) = &v.name {
                out.insert(name.clone());
            }
        }
        Expr::MatrixSelector(m) => {
            if let Some(name) = &m.vs.name {
                out.insert(name.clone());
            }
        }
        Expr::Aggregate(a) => metric_names(&a.expr, out),
        Expr::Unary(u) => metric_names(&u.expr, out),
        Expr::Binary(b) => {
            metric_names(&b.lhs, out);
            metric_names(&b.rhs, out);
        }
        Expr::Paren(p) => metric_names(&p.expr, out),
        Expr::Subquery(s) => metric_names(&s.expr, out),
        Expr::Call(c) => {
            for arg in &c.args.args {
                metric_names(arg, out);
            }
        }
        _ => {}
    }
}

#[test]
fn alert_expressions_parse_and_use_exported_metrics() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut alerts = BTreeSet::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name").to_owned();
            let expr = rule["expr"].as_str().expect("expr");
            let parsed = parser::parse(expr)
                .unwrap_or_else(|e| panic!("alert {name}: invalid PromQL: {e}\n{expr}"));
            let mut used = BTreeSet::new();
            metric_names(&parsed, &mut used);
            assert!(!used.is_empty(), "alert {name} uses no metric");
            for metric in &used {
                assert!(
                    EXPORTED.contains(&metric.as_str()),
                    "alert {name} uses {metric}, which the controller does not export"
                );
            }
            assert!(rule["for"].as_str().is_some(), "alert {name} has no `for`");
            alerts.insert(name);
        }
    }
    assert_eq!(
        alerts.len(),
        3,
        "expiry, not-ready and no-leader alerts: {alerts:?}"
    );
}

#[test]
fn an_invalid_expression_is_refused() {
    // The check above can fail: the parser rejects broken PromQL.
    assert!(parser::parse("max by (binding) (foo{a=\"b\"} ").is_err());
}
