//! The shipped Grafana dashboard (`deploy/grafana/acr-credential-controller.json`) queries only
//! what the controller binary exports: every panel query and template variable query, with the
//! dashboard's variables interpolated as Grafana does, parses as PromQL and names metrics,
//! labels and label values found in a real scrape of `acr-credential-controller run` after it
//! did one of everything (local control plane, fake cloud); every legend names a label the
//! query's series carry; every exported family has a panel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod operate_common;
mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use controller_common::Harness;
use operate_common::exports::{Scrape, busy_scrape};

const DASHBOARD: &str = "deploy/grafana/acr-credential-controller.json";

/// Grafana's own interval variables, as Grafana would fill them in.
const BUILTIN: &[(&str, &str)] = &[
    ("__rate_interval", "4m"),
    ("__interval", "1m"),
    ("__range", "6h"),
];

/// `text` with `$name` and `${name}` replaced from `values`; an unknown variable is an error.
fn interpolate(text: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').ok_or("an unclosed ${")?;
                (&braced[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = values
            .get(name)
            .ok_or_else(|| format!("${name} is not a variable of the dashboard"))?;
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `{{label}}` names of a legend format.
fn legend_labels(format: &str) -> Vec<String> {
    format
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}"))
        .map(|(l, _)| l.trim().to_owned())
        .collect()
}

/// Every panel, rows' nested ones included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        all.push(p);
        if let Some(nested) = p["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

/// Checks a template variable's query: `label_values(<selector>, <label>)` (Grafana's, not
/// PromQL) is checked as its selector plus the label; anything else as PromQL.
fn check_variable_query(scrape: &Scrape, query: &str) -> Result<(), String> {
    let Some(inner) = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
    else {
        return scrape.check(query).map(|_| ());
    };
    let (selector, label) = inner
        .rsplit_once(',')
        .ok_or("label_values without a label")?;
    let uses = scrape.check(selector)?;
    let label = label.trim();
    if uses.labels.contains(label) {
        Ok(())
    } else {
        Err(format!("no series of {selector} carries the label {label}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_queries_use_what_the_binary_exports() {
    let text = std::fs::read_to_string(support::repo_root().join(DASHBOARD)).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();

    // Short tokens, so the workload sees a renewal.
    let h = Harness::new("op-dashboard", 30, "20s").await;
    let busy = busy_scrape(&h).await;
    let scrape = &busy.scrape;

    // The variables: a Prometheus data source and label filters.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in BUILTIN {
        values.insert((*name).to_owned(), (*value).to_owned());
    }
    for v in variables {
        let name = v["name"].as_str().expect("a variable name").to_owned();
        // A label filter: "All" matches every value (and the label's absence).
        values.insert(name, ".*".to_owned());
    }
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(datasource["query"], "prometheus");
    let datasource = format!("${{{}}}", datasource["name"].as_str().unwrap());

    let mut problems = Vec::new();
    for v in variables.iter().filter(|v| v["type"] == "query") {
        let name = &v["name"];
        assert_eq!(
            v["datasource"]["uid"],
            datasource.as_str(),
            "variable {name}"
        );
        let query = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .expect("a variable query");
        let result = interpolate(query, &values).and_then(|q| check_variable_query(scrape, &q));
        if let Err(e) = result {
            problems.push(format!("variable {name}: {e}\n  {query}"));
        }
    }

    let mut used = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("a panel title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("a panel id")),
            "{title}: duplicate id"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"],
            datasource.as_str(),
            "panel {title}"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            queries += 1;
            let checked = interpolate(expr, &values).and_then(|q| scrape.check(&q));
            match checked {
                Err(e) => problems.push(format!("panel {title:?}: {e}\n  {expr}")),
                Ok(uses) => {
                    let legend = t["legendFormat"].as_str().unwrap_or_default();
                    for label in legend_labels(legend) {
                        if !uses.labels.contains(&label) {
                            problems.push(format!(
                                "panel {title:?}: the legend names {label}, which its series do \
                                 not carry ({:?})",
                                uses.labels
                            ));
                        }
                    }
                    used.extend(uses.metrics);
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nthe scrape:\n{}",
        problems.join("\n"),
        scrape.text
    );

    // Every family the binary exports has a panel: a new metric needs one.
    let families: BTreeSet<String> = scrape
        .families()
        .into_iter()
        .filter(|family| !scrape.names_of(family).iter().any(|n| used.contains(n)))
        .collect();
    assert!(
        families.is_empty(),
        "families without a panel: {families:?}"
    );
    eprintln!(
        "{queries} dashboard queries checked against {} exported names",
        scrape.exported().len()
    );
}
