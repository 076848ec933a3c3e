//! The process's Prometheus metrics that are counted as things happen: cloud calls by API and
//! outcome (with latency), reconciles by controller and result (with duration), API writes by
//! kind, whether this replica leads, the webhook's admissions by result (with latency) and the
//! ServiceAccounts the reconciler had to patch after creation although a binding asked for
//! injection at creation, the writes that went over the write budget and the renewal rewrites
//! waiting in the wave lane.
//!
//! They live in one process-wide set ([`global`]) so the cloud client and the write paths can
//! count without a handle threaded through; [`register`] adds them to a scrape registry. Label
//! values are bounded: API names, error reasons, kinds, never error text. Per-binding gauges are
//! computed at scrape time from the caches (`runtime::probes`).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label sets: fixed keys, bounded values.
pub type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Prefix of every metric name.
pub const PREFIX: &str = "acr_credential_controller";

fn latency_histogram() -> Histogram {
    // 5 ms … ~41 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The counted metrics.
pub struct Metrics {
    pub cloud_requests: Family<Labels, Counter>,
    pub cloud_request_duration: Histograms,
    pub reconciles: Family<Labels, Counter>,
    pub reconcile_duration: Histograms,
    pub writes: Family<Labels, Counter>,
    pub leader: Gauge,
    pub admissions: Family<Labels, Counter>,
    pub admission_duration: Histogram,
    pub patched_after_create: Family<Labels, Counter>,
    pub over_budget: Counter,
    pub wave_pending: Gauge,
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
        cloud_requests: Family::default(),
        cloud_request_duration: Family::new_with_constructor(latency_histogram),
        reconciles: Family::default(),
        reconcile_duration: Family::new_with_constructor(latency_histogram),
        writes: Family::default(),
        leader: Gauge::default(),
        admissions: Family::default(),
        // 50 µs … ~0.8 s.
        admission_duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 15)),
        patched_after_create: Family::default(),
        over_budget: Counter::default(),
        wave_pending: Gauge::default(),
    });
    &METRICS
}

/// Adds the counted metrics to `registry` (whose prefix is [`PREFIX`]).
pub fn register(registry: &mut Registry) {
    let m = global();
    registry.register(
        "cloud_requests",
        "Alibaba Cloud API requests sent, by API and outcome (ok or an error reason)",
        m.cloud_requests.clone(),
    );
    registry.register(
        "cloud_request_duration_seconds",
        "Latency of Alibaba Cloud API requests, by API",
        m.cloud_request_duration.clone(),
    );
    registry.register(
        "reconciles",
        "Reconciles run, by controller and result (ok or an error reason)",
        m.reconciles.clone(),
    );
    registry.register(
        "reconcile_duration_seconds",
        "Duration of reconciles, by controller",
        m.reconcile_duration.clone(),
    );
    registry.register(
        "api_writes",
        "Writes to the Kubernetes API, by kind and verb",
        m.writes.clone(),
    );
    registry.register(
        "leader",
        "1 while this replica holds the leader Lease (and may write), else 0",
        m.leader.clone(),
    );
    registry.register(
        "webhook_admissions",
        "ServiceAccount admission reviews answered by the webhook, by result (Patched, NotSelected, ...)",
        m.admissions.clone(),
    );
    registry.register(
        "webhook_admission_duration_seconds",
        "Time the webhook took to answer an admission review",
        m.admission_duration.clone(),
    );
    registry.register(
        "service_accounts_patched_after_create",
        "ServiceAccounts created after a binding with injectOnCreate selected them that the reconciler still had to patch (the webhook was down, skipped or not called), by binding",
        m.patched_after_create.clone(),
    );
    registry.register(
        "writes_over_budget",
        "Renewal rewrites written beyond the write budget, because their wave could not finish within it before the old token's renewBefore margin was half used",
        m.over_budget.clone(),
    );
    registry.register(
        "renewal_rewrites_pending",
        "Renewal rewrites deferred to their slot in a paced renewal wave, not written yet",
        m.wave_pending.clone(),
    );
}

/// Counts one cloud request to `api` that ended with `outcome` after `elapsed`.
pub fn cloud_request(api: &'static str, outcome: &'static str, elapsed: Duration) {
    let m = global();
    m.cloud_requests
        .get_or_create(&vec![
            ("api", api.to_owned()),
            ("outcome", outcome.to_owned()),
        ])
        .inc();
    m.cloud_request_duration
        .get_or_create(&vec![("api", api.to_owned())])
        .observe(elapsed.as_secs_f64());
}

/// Counts one reconcile of `controller` with `result` after `elapsed`.
pub fn reconcile(controller: &'static str, result: &'static str, elapsed: Duration) {
    let m = global();
    m.reconciles
        .get_or_create(&vec![
            ("controller", controller.to_owned()),
            ("result", result.to_owned()),
        ])
        .inc();
    m.reconcile_duration
        .get_or_create(&vec![("controller", controller.to_owned())])
        .observe(elapsed.as_secs_f64());
}

/// Counts one successful write of `kind` (`Secret`, `ServiceAccount`, ...) with `verb`.
pub fn write(kind: &str, verb: &'static str) {
    global()
        .writes
        .get_or_create(&vec![("kind", kind.to_owned()), ("verb", verb.to_owned())])
        .inc();
}

/// Sets the leader gauge.
pub fn set_leader(leading: bool) {
    global().leader.set(i64::from(leading));
}

/// Counts one admission review answered with `result` after `elapsed`.
pub fn admission(result: &'static str, elapsed: Duration) {
    let m = global();
    m.admissions
        .get_or_create(&vec![("result", result.to_owned())])
        .inc();
    m.admission_duration.observe(elapsed.as_secs_f64());
}

/// Counts one ServiceAccount the reconciler patched although `binding` asked for injection at
/// creation.
pub fn patched_after_create(binding: &str) {
    global()
        .patched_after_create
        .get_or_create(&vec![("binding", binding.to_owned())])
        .inc();
}

/// Counts one write beyond the write budget.
pub fn over_budget() {
    global().over_budget.inc();
}

/// Sets how many renewal rewrites wait in the wave lane.
pub fn wave_pending(n: usize) {
    global()
        .wave_pending
        .set(i64::try_from(n).unwrap_or(i64::MAX));
}
