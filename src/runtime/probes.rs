//! The plain-HTTP probe and metrics server: `/readyz` (every watch cache holds its first list,
//! and the webhook, when on, serves a certificate that is valid and chains to the CA bundle
//! the API server is given, so a replica that missed a rotation step leaves the Service),
//! `/livez` (the controllers run and the leader-election loop made a pass lately), `/metrics`
//! (OpenMetrics text: the counted [`crate::metrics`] plus per-binding gauges computed at scrape
//! time from the bindings cache, as cert-manager does for certificates).
//!
//! Every replica serves it, leader or not: readiness is about caches, not leadership.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tracing::Instrument;

use crate::api::AcrRegistryBinding;
use crate::cluster::Leadership;
use crate::cluster::Readiness;
use crate::metrics::{Labels, PREFIX};

/// What the probes look at.
#[derive(Clone)]
pub struct Health {
    pub readiness: Readiness,
    pub leadership: Leadership,
    /// How stale the election loop's last pass may be before `/livez` fails.
    pub loop_max_age: Duration,
    /// Set while the controllers (and so the watch streams) run.
    pub running: Arc<AtomicBool>,
    /// The webhook's certificate, when the webhook is on: not ready until one is loaded.
    pub webhook: Option<Arc<crate::webhook::CertSlot>>,
}

impl Health {
    /// Why the process is not ready at `now`, if it is not.
    pub fn not_ready(&self, now: std::time::SystemTime) -> Option<String> {
        if let Some(why) = self.webhook.as_ref().and_then(|w| w.problem(now)) {
            return Some(why.to_owned());
        }
        if self.readiness.is_ready() {
            None
        } else {
            let pending = self.readiness.pending().join(", ");
            Some(format!("caches not synced: {pending}"))
        }
    }

    /// Why the process is not live, if it is not.
    pub fn not_live(&self) -> Option<&'static str> {
        if !self.running.load(Ordering::Relaxed) {
            return Some("the controllers are not running");
        }
        if !self.leadership.loop_alive(self.loop_max_age) {
            return Some("the leader-election loop is not running");
        }
        None
    }
}

/// Per-binding gauges, read from the bindings cache at each scrape.
#[derive(Debug)]
pub struct BindingCollector {
    pub bindings: Store<AcrRegistryBinding>,
}

fn timestamp_seconds(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> f64 {
    t.0.as_millisecond() as f64 / 1000.0
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: Vec<(Labels, V)>,
) -> Result<(), std::fmt::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for BindingCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut expiry = Vec::new();
        let mut renewal = Vec::new();
        let mut conditions = Vec::new();
        let mut selected = Vec::new();
        let mut synced = Vec::new();
        for b in self.bindings.state() {
            let name = b.name_any();
            let binding = || vec![("binding", name.clone())];
            let Some(status) = &b.status else { continue };
            if let Some(token) = &status.token {
                if let Some(t) = &token.expires_at {
                    expiry.push((binding(), timestamp_seconds(t)));
                }
                if let Some(t) = &token.renew_at {
                    renewal.push((binding(), timestamp_seconds(t)));
                }
            }
            for c in &status.conditions {
                for s in ["True", "False", "Unknown"] {
                    let labels = vec![
                        ("binding", name.clone()),
                        ("type", c.type_.clone()),
                        ("status", s.to_owned()),
                    ];
                    conditions.push((labels, i64::from(c.status == s)));
                }
            }
            if let Some(ns) = &status.namespaces {
                selected.push((binding(), i64::from(ns.selected)));
                synced.push((binding(), i64::from(ns.synced)));
            }
        }
        gauge(
            &mut encoder,
            "binding_token_expiration_timestamp_seconds",
            "When the binding's current registry token expires (status.token.expiresAt)",
            expiry,
        )?;
        gauge(
            &mut encoder,
            "binding_token_renewal_timestamp_seconds",
            "When the binding's token is due for renewal (status.token.renewAt)",
            renewal,
        )?;
        gauge(
            &mut encoder,
            "binding_condition",
            "1 for the binding condition's current status, 0 for the others",
            conditions,
        )?;
        gauge(
            &mut encoder,
            "binding_namespaces_selected",
            "Namespaces the binding selects",
            selected,
        )?;
        gauge(
            &mut encoder,
            "binding_namespaces_synced",
            "Selected namespaces whose pull Secret carries the binding's token",
            synced,
        )?;
        Ok(())
    }
}

/// The scrape registry: the counted metrics and the binding gauges.
pub fn registry(bindings: Store<AcrRegistryBinding>) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    crate::metrics::register(&mut registry);
    registry.register_collector(Box::new(BindingCollector { bindings }));
    registry
}

struct Shared {
    health: Health,
    registry: Registry,
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match s.health.not_ready(std::time::SystemTime::now()) {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn livez(State(s): State<Arc<Shared>>) -> Response {
    match s.health.not_live() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    crate::metrics::set_leader(s.health.leadership.is_leader());
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}

/// The router of the probe server.
pub fn router(health: Health, registry: Registry) -> axum::Router {
    axum::Router::new()
        .route("/readyz", get(readyz))
        .route("/livez", get(livez))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(Shared { health, registry }))
}

/// Binds `address` and serves the probes on it in the background; returns the bound address
/// (port 0 picks a free one) and logs it.
pub async fn serve(
    address: SocketAddr,
    health: Health,
    registry: Registry,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let app = router(health, registry);
    tokio::spawn(
        async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "probe server failed");
            }
        }
        .in_current_span(),
    );
    tracing::info!(address = %bound, "probe and metrics server listening");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::{Duration, SystemTime};

    use jiff::Timestamp;

    use super::*;
    use crate::webhook::CertSlot;
    use crate::webhook::certs::{self, CertTimings, ServingNames};

    fn timings() -> CertTimings {
        CertTimings {
            validity: Duration::from_secs(3600),
            renew_before: Duration::from_secs(600),
            overlap: Duration::from_secs(10),
        }
    }

    /// A CA and a serving certificate it signed at `now`, valid for an hour.
    fn minted(now: Timestamp) -> (certs::Pair, certs::Pair) {
        let serving_names = ServingNames {
            dns_names: vec!["acr-webhook.acr-system.svc".into()],
            ip_addresses: vec![],
        };
        let ca = certs::mint_ca(now, &timings()).unwrap();
        let serving = certs::mint_serving(&ca, now, &timings(), &serving_names)
            .unwrap()
            .0;
        (ca, serving)
    }

    fn health(slot: Arc<CertSlot>) -> Health {
        Health {
            readiness: Readiness::new([]),
            leadership: Leadership::always(),
            loop_max_age: Duration::from_secs(60),
            running: Arc::new(AtomicBool::new(true)),
            webhook: Some(slot),
        }
    }

    /// Readiness looked only at whether a certificate was loaded: a replica serving an expired
    /// one, or one the published bundle no longer trusts (it missed a rotation step), stayed in
    /// the Service and failed every handshake.
    #[test]
    fn readiness_fails_on_an_expired_or_untrusted_webhook_certificate() {
        let now = SystemTime::now();
        let slot = Arc::new(CertSlot::default());
        let h = health(slot.clone());
        assert_eq!(
            h.not_ready(now).as_deref(),
            Some("webhook certificate not loaded")
        );

        let (ca, serving) = minted(Timestamp::now());
        slot.load(&serving).unwrap();
        slot.trust(Some(vec![ca.cert.clone()]));
        assert_eq!(h.not_ready(now), None);
        // Past its expiry (an hour and a bit later).
        let later = now + Duration::from_secs(3700);
        let why = h.not_ready(later).unwrap();
        assert!(why.contains("expired"), "{why}");
        // The published bundle holds another CA only (the old one was dropped).
        let (other, _) = minted(Timestamp::now());
        slot.trust(Some(vec![other.cert.clone()]));
        let why = h.not_ready(now).unwrap();
        assert!(why.contains("does not chain"), "{why}");
        // Both CAs published (mid-rotation): ready.
        slot.trust(Some(vec![other.cert, ca.cert]));
        assert_eq!(h.not_ready(now), None);
    }
}
