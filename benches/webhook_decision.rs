//! How long the admission webhook takes to decide, with 1,000 bindings' worth of cached state.
//!
//! `cargo bench --bench webhook_decision` (release build) runs the whole pure path of one
//! admission as the server runs it: parse the AdmissionReview body, pick the candidate bindings
//! for the namespace from the bindings cache (resolving them against the policy cache), decide,
//! and build the answer with its JSONPatch. 1,000 bindings (900 with `injectOnCreate`, by
//! namespace names, label selectors and `all` with excludes; 20 policies, half with
//! `allowedNamespaces`) over 1,000 namespaces. It prints p50, p99 and the worst decision time
//! and their ratio to the API server's timeout; it asserts nothing about time.

#![allow(clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use acr_credential_controller::api::{AcrCredentialPolicy, AcrRegistryBinding};
use acr_credential_controller::model::ResolveConfig;
use acr_credential_controller::webhook::DEFAULT_TIMEOUT_SECONDS;
use acr_credential_controller::webhook::decide::{self, Settings};
use acr_credential_controller::webhook::review::{self, Review};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::json;

const BINDINGS: usize = 1_000;
const NAMESPACES: usize = 1_000;
const POLICIES: usize = 20;
const DECISIONS: usize = 5_000;

fn policy(i: usize) -> AcrCredentialPolicy {
    let allowed = if i.is_multiple_of(2) {
        "  allowedNamespaces: {matchLabels: {acr: allowed}}\n"
    } else {
        ""
    };
    serde_yaml::from_str(&format!(
        "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialPolicy\nmetadata: {{name: p{i}}}\nspec:\n  source: {{workerRole: {{}}}}\n{allowed}"
    ))
    .unwrap_or_else(|e| panic!("policy {i}: {e}"))
}

fn binding(i: usize) -> AcrRegistryBinding {
    let namespaces = match i % 3 {
        0 => format!(
            "{{names: [ns-{}, ns-{}]}}",
            i % NAMESPACES,
            (i * 7) % NAMESPACES
        ),
        1 => format!("{{selector: {{matchLabels: {{team: t{}}}}}}}", i % 50),
        _ => format!("{{all: true, exclude: [ns-{}]}}", i % NAMESPACES),
    };
    let sas = match i % 4 {
        0 => "{all: true}".to_owned(),
        1 => "{names: [default, builder]}".to_owned(),
        2 => format!("{{selector: {{matchLabels: {{app: a{}}}}}}}", i % 10),
        _ => format!("{{names: [sa-{}]}}", i % 100),
    };
    let inject = !i.is_multiple_of(10);
    serde_yaml::from_str(&format!(
        "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrRegistryBinding\nmetadata: {{name: b{i:04}}}\nspec:\n  registry: {{region: cn-hangzhou}}\n  policyRef: {{name: p{}}}\n  namespaces: {namespaces}\n  serviceAccounts: {sas}\n  injectOnCreate: {inject}\n",
        i % POLICIES
    ))
    .unwrap_or_else(|e| panic!("binding {i}: {e}"))
}

fn store<K>(items: impl IntoIterator<Item = K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    for item in items {
        writer.apply_watcher_event(&watcher::Event::Apply(item));
    }
    store
}

fn namespace_labels(n: usize) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([("team".to_owned(), format!("t{}", n % 50))]);
    if n.is_multiple_of(3) {
        labels.insert("acr".into(), "allowed".into());
    }
    labels
}

fn body(n: usize, k: usize) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("u{k}"),
            "kind": {"group": "", "version": "v1", "kind": "ServiceAccount"},
            "resource": {"group": "", "version": "v1", "resource": "serviceaccounts"},
            "namespace": format!("ns-{n}"),
            "name": format!("sa-{}", k % 100),
            "operation": "CREATE",
            "object": {"metadata": {"name": format!("sa-{}", k % 100), "labels": {"app": format!("a{}", k % 10)}},
                       "imagePullSecrets": [{"name": "theirs"}]},
        }
    })
    .to_string()
    .into_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let bindings = store((0..BINDINGS).map(binding));
    let policies = store((0..POLICIES).map(policy));
    let config = ResolveConfig::default();
    let settings = Settings::new("acr-credentials", "acr-system");
    let labels: Vec<_> = (0..NAMESPACES).map(namespace_labels).collect();
    let bodies: Vec<_> = (0..DECISIONS)
        .map(|k| body((k * 31) % NAMESPACES, k))
        .collect();

    let mut times = Vec::with_capacity(DECISIONS);
    let mut patched = 0usize;
    for (k, body) in bodies.iter().enumerate() {
        let n = (k * 31) % NAMESPACES;
        let started = Instant::now();
        let Ok(Review::Create(sa)) = review::parse(body) else {
            panic!("the benchmark's review does not parse");
        };
        let state = bindings.state();
        let sa_labels = decide::labels_of(&sa.object).unwrap_or_default();
        let candidates = decide::candidates(
            state.iter().map(|b| &**b),
            &policies,
            &config,
            &sa.namespace,
            &labels[n],
            (&sa.name, &sa_labels),
        );
        let outcome = decide::decide(&sa, Some(&labels[n]), &candidates, &settings);
        let patch = match &outcome {
            decide::Outcome::Patch { patch, .. } => Some(patch),
            decide::Outcome::Skip(_) => None,
        };
        let answer = review::respond(&sa.uid, outcome.decision(), patch);
        times.push(started.elapsed());
        patched += usize::from(patch.is_some());
        std::hint::black_box(answer);
    }
    times.sort();
    let timeout = Duration::from_secs(DEFAULT_TIMEOUT_SECONDS);
    let (p50, p99, max) = (
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        times[times.len() - 1],
    );
    println!(
        "webhook decision, {BINDINGS} bindings ({} with injectOnCreate), {POLICIES} policies, {NAMESPACES} namespaces, {DECISIONS} decisions ({patched} patched)",
        (0..BINDINGS).filter(|i| !i.is_multiple_of(10)).count()
    );
    println!("  p50 {p50:?}   p99 {p99:?}   max {max:?}");
    println!(
        "  p99 / timeout ({}s) = {:.6}",
        timeout.as_secs(),
        p99.as_secs_f64() / timeout.as_secs_f64()
    );
}
