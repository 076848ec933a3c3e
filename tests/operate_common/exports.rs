//! What the controller binary exports, read from a real scrape, and the check of shipped PromQL
//! (the alerts, the Grafana dashboard) against it: every expression parses, every metric it
//! names is exported, every label it matches on or groups by is one the metric carries (or one
//! Prometheus adds at scrape time) and every value it selects occurs. [`busy_scrape`] makes a
//! replica do one of everything first, so every family has series whose labels can be checked.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use acr_credential_controller::webhook::PATH;
use acr_credential_controller::webhook::certs::{self, CertTimings, ServingNames};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, VectorSelector};

use super::{Replica, sample_sum};
use crate::controller_common::{Harness, INSTANCE, pull_secret_names};
use crate::support;

/// Labels Prometheus (and the Prometheus Operator's ServiceMonitor) attach to every scraped
/// series: queries may match on and group by them although `/metrics` does not carry them.
pub const TARGET_LABELS: &[&str] = &[
    "namespace",
    "job",
    "pod",
    "instance",
    "service",
    "container",
    "endpoint",
];

/// One `/metrics` text, parsed.
#[derive(Debug)]
pub struct Scrape {
    pub text: String,
    /// Sample name → the label sets of its series.
    series: BTreeMap<String, Vec<BTreeMap<String, String>>>,
    /// Family name → type, from the `# TYPE` lines (printed for registered families even when
    /// they have no series yet).
    types: BTreeMap<String, String>,
}

/// What one expression uses.
#[derive(Debug, Default)]
pub struct Uses {
    pub metrics: BTreeSet<String>,
    /// The labels its selected series carry, with [`TARGET_LABELS`].
    pub labels: BTreeSet<String>,
}

/// Splits `k="v",k2="v2"` (OpenMetrics label syntax, with its escapes).
fn parse_labels(mut rest: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    labels
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut series: BTreeMap<String, Vec<_>> = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (family, kind) = rest.split_once(' ').expect("a TYPE line");
                types.insert(family.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (name, labels) = match line.split_once('{') {
                Some((name, rest)) => {
                    let (labels, _) = rest.rsplit_once('}').expect("a closing brace");
                    (name, parse_labels(labels))
                }
                None => (line.split(' ').next().unwrap(), BTreeMap::new()),
            };
            series.entry(name.to_owned()).or_default().push(labels);
        }
        Scrape {
            text: text.to_owned(),
            series,
            types,
        }
    }

    /// The registered families (from the `# TYPE` lines).
    pub fn families(&self) -> BTreeSet<String> {
        self.types.keys().cloned().collect()
    }

    /// The sample names of `family`: a counter's `_total`, a histogram's `_bucket`, `_sum` and
    /// `_count`, a gauge's own name.
    pub fn names_of(&self, family: &str) -> Vec<String> {
        let suffixes: &[&str] = match self.types.get(family).map(String::as_str) {
            Some("counter") => &["_total"],
            Some("histogram") => &["_bucket", "_sum", "_count"],
            Some("summary") => &["", "_sum", "_count"],
            _ => &[""],
        };
        suffixes.iter().map(|s| format!("{family}{s}")).collect()
    }

    /// Every name a query may select: the sample names of the registered families and of the
    /// series.
    pub fn exported(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.series.keys().cloned().collect();
        for family in self.types.keys() {
            names.extend(self.names_of(family));
        }
        names
    }

    /// The label names the series of sample `name` carry.
    pub fn labels(&self, name: &str) -> BTreeSet<String> {
        self.series
            .get(name)
            .into_iter()
            .flatten()
            .flat_map(|l| l.keys().cloned())
            .collect()
    }

    /// Checks one PromQL expression; the problems, one a line, when it has any.
    pub fn check(&self, promql: &str) -> Result<Uses, String> {
        let expr = parser::parse(promql).map_err(|e| format!("invalid PromQL: {e}"))?;
        let mut uses = Uses::default();
        let mut problems = Vec::new();
        self.walk(&expr, &mut uses, &mut problems);
        if uses.metrics.is_empty() {
            problems.push("it uses no metric".to_owned());
        }
        uses.labels
            .extend(TARGET_LABELS.iter().map(|l| (*l).to_owned()));
        if problems.is_empty() {
            Ok(uses)
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Walks `expr`; returns the label names its selected series carry.
    fn walk(&self, expr: &Expr, uses: &mut Uses, problems: &mut Vec<String>) -> BTreeSet<String> {
        let grouping = |labels: &[String], inner: &BTreeSet<String>, problems: &mut Vec<String>| {
            for l in labels {
                if !inner.contains(l) && !TARGET_LABELS.contains(&l.as_str()) {
                    problems.push(format!(
                        "it groups by {l}, which none of its series carries (they carry {inner:?})"
                    ));
                }
            }
        };
        match expr {
            Expr::VectorSelector(v) => self.selector(v, uses, problems),
            Expr::MatrixSelector(m) => self.selector(&m.vs, uses, problems),
            Expr::Aggregate(a) => {
                let inner = self.walk(&a.expr, uses, problems);
                if let Some(param) = &a.param {
                    self.walk(param, uses, problems);
                }
                if let Some(modifier) = &a.modifier {
                    grouping(&modifier.labels().labels, &inner, problems);
                }
                inner
            }
            Expr::Binary(b) => {
                let mut inner = self.walk(&b.lhs, uses, problems);
                inner.extend(self.walk(&b.rhs, uses, problems));
                if let Some(matching) = b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                    grouping(&matching.labels().labels, &inner, problems);
                }
                inner
            }
            Expr::Unary(u) => self.walk(&u.expr, uses, problems),
            Expr::Paren(p) => self.walk(&p.expr, uses, problems),
            Expr::Subquery(s) => self.walk(&s.expr, uses, problems),
            Expr::Call(c) => c
                .args
                .args
                .iter()
                .flat_map(|arg| self.walk(arg, uses, problems))
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    fn selector(
        &self,
        v: &VectorSelector,
        uses: &mut Uses,
        problems: &mut Vec<String>,
    ) -> BTreeSet<String> {
        let Some(name) = &v.name else {
            problems.push("a selector without a metric name".to_owned());
            return BTreeSet::new();
        };
        uses.metrics.insert(name.clone());
        if !self.exported().contains(name) {
            problems.push(format!(
                "it uses {name}, which the controller does not export"
            ));
            return BTreeSet::new();
        }
        let Some(series) = self.series.get(name).filter(|s| !s.is_empty()) else {
            problems.push(format!(
                "{name} has no series in the scrape, so its labels cannot be checked (the \
                 workload must produce one)"
            ));
            return BTreeSet::new();
        };
        let labels = self.labels(name);
        uses.labels.extend(labels.iter().cloned());
        let matchers: Vec<&Matcher> = v
            .matchers
            .matchers
            .iter()
            .chain(v.matchers.or_matchers.iter().flatten())
            .filter(|m| m.name != "__name__" && !TARGET_LABELS.contains(&m.name.as_str()))
            .collect();
        for m in matchers {
            if !labels.contains(&m.name) {
                problems.push(format!(
                    "it matches {name} on {}, a label it does not carry (it carries {labels:?})",
                    m.name
                ));
                continue;
            }
            let selects = matches!(m.op, MatchOp::Equal | MatchOp::Re(_));
            let values: BTreeSet<&str> = series
                .iter()
                .filter_map(|s| s.get(&m.name).map(String::as_str))
                .collect();
            if selects && !values.iter().any(|value| m.is_match(value)) {
                problems.push(format!(
                    "{name}{{{}{}{:?}}} selects none of the exported values {values:?}",
                    m.name, m.op, m.value
                ));
            }
        }
        labels
    }
}

/// A certificate directory for the webhook (`--webhook-cert-dir`), removed on drop.
pub struct CertDir(pub PathBuf);

impl CertDir {
    /// A CA and a serving certificate for 127.0.0.1 it signed; returns the CA's PEM too.
    pub fn new(id: &str) -> (CertDir, String) {
        let dir = std::env::temp_dir().join(format!("{id}-webhook-tls"));
        std::fs::create_dir_all(&dir).unwrap();
        let timings = CertTimings {
            validity: Duration::from_secs(3600),
            renew_before: Duration::from_secs(600),
            overlap: Duration::from_secs(10),
        };
        let serving_names = ServingNames {
            dns_names: vec![],
            ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        };
        let now = jiff::Timestamp::now();
        let ca = certs::mint_ca(now, &timings).unwrap();
        let (serving, _) = certs::mint_serving(&ca, now, &timings, &serving_names).unwrap();
        std::fs::write(dir.join("tls.crt"), &serving.cert).unwrap();
        std::fs::write(dir.join("tls.key"), serving.key.expose()).unwrap();
        (CertDir(dir), ca.cert)
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A replica after one of everything, and its scrape.
pub struct Busy {
    pub replica: Replica,
    pub scrape: Scrape,
    _certs: CertDir,
}

/// Starts the real binary with its webhook on and makes it do one of everything, so every
/// family it exports has series: a binding (injectOnCreate) reconciled Ready into a namespace,
/// its token renewed (the harness must issue short tokens), a ServiceAccount created behind
/// the webhook's back that the reconciler patches, and an admission review answered.
pub async fn busy_scrape(h: &Harness) -> Busy {
    let (certs, ca) = CertDir::new(&h.id);
    let kubeconfig = support::cluster()
        .kubeconfig
        .clone()
        .expect("the operate tests need the local control plane");
    let extra = [
        "--webhook-address".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--webhook-cert-dir".to_owned(),
        certs.0.display().to_string(),
    ];
    let lease = format!("{}-lease", h.id);
    let mut replica =
        Replica::start_with(h, &lease, &format!("{}-a", h.id), &kubeconfig, &extra).await;
    replica
        .wait_log("became the leader", Duration::from_secs(30))
        .await;
    let webhook = replica
        .wait_log("webhook server listening", Duration::from_secs(30))
        .await["fields"]["address"]
        .as_str()
        .unwrap()
        .to_owned();

    // A namespace the binding selects.
    let ns = support::unique_name("op-exports");
    let object: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ns, "labels": {support::TEST_LABEL: "true", "acr-exports": h.id}},
    }))
    .unwrap();
    Api::<Namespace>::all(h.client())
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    h.env.track_cluster_object::<Namespace>(&ns);
    let binding = format!("{}-exports", h.id);
    h.binding(
        &binding,
        &format!(
            "  registry: {{instanceId: {INSTANCE}}}\n  policyRef: {{name: {}}}\n  namespaces: {{selector: {{matchLabels: {{acr-exports: {}}}}}}}\n  serviceAccounts: {{all: true}}\n  injectOnCreate: true\n",
            h.policy, h.id
        ),
    )
    .await;
    let ready = h
        .wait_ready(&binding, "True", Duration::from_secs(60))
        .await;
    let first_expiry = ready
        .status
        .and_then(|s| s.token)
        .and_then(|t| t.expires_at)
        .expect("a Ready binding's token expiry")
        .0
        .as_millisecond() as f64
        / 1000.0;

    // Created after the binding, and the API server does not call this webhook: the
    // reconciler patches it and counts it.
    let late: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "late"}})).unwrap();
    h.service_accounts(&ns)
        .create(&PostParams::default(), &late)
        .await
        .unwrap();
    crate::controller_common::wait_sa(&h.service_accounts(&ns), "late", "patched", |sa| {
        !pull_secret_names(sa).is_empty()
    })
    .await;

    // An admission review, sent to the webhook directly.
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "e4b0",
            "kind": {"group": "", "version": "v1", "kind": "ServiceAccount"},
            "resource": {"group": "", "version": "v1", "resource": "serviceaccounts"},
            "namespace": ns,
            "operation": "CREATE",
            "object": {"metadata": {"name": "reviewed"}},
        }
    });
    let response = client
        .post(format!("https://{webhook}{PATH}"))
        .json(&review)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}");

    let p = "acr_credential_controller";
    let text = support::wait_until(
        Duration::from_secs(90),
        "a renewal and every family with series",
        || {
            let replica = &replica;
            let binding = &binding;
            async move {
                let text = replica.metrics().await;
                let wanted = [
                    // A renewal: the gauge shows a later expiry than the first token's.
                    (
                        format!("{p}_binding_token_expiration_timestamp_seconds"),
                        vec![("binding", binding.as_str())],
                        first_expiry + 1.0,
                    ),
                    (
                        format!("{p}_binding_namespaces_synced"),
                        vec![("binding", binding.as_str())],
                        1.0,
                    ),
                    (
                        format!("{p}_cloud_requests_total"),
                        vec![("api", "cr:GetAuthorizationToken"), ("outcome", "ok")],
                        2.0,
                    ),
                    (
                        format!("{p}_service_accounts_patched_after_create_total"),
                        vec![("binding", binding.as_str())],
                        1.0,
                    ),
                    (format!("{p}_webhook_admissions_total"), vec![], 1.0),
                    (format!("{p}_leader"), vec![], 1.0),
                ];
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|(name, labels, at_least)| sample_sum(&text, name, labels) < *at_least)
                    .map(|(name, labels, at_least)| format!("{name}{labels:?} >= {at_least}"))
                    .collect();
                if missing.is_empty() {
                    Ok(text)
                } else {
                    Err(format!("still missing {missing:?}"))
                }
            }
        },
    )
    .await;
    Busy {
        replica,
        scrape: Scrape::parse(&text),
        _certs: certs,
    }
}
