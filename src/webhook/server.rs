//! The webhook's HTTPS server: the admission handler behind a rustls acceptor whose certificate
//! is read, at every handshake, from a [`CertSlot`] the rotation loop fills, so a new
//! certificate is served without a restart. Every replica serves it, leader or not.
//!
//! The handler is thin: it parses the review, waits for nothing (caches not yet listed mean
//! "admit unchanged", the reconciler catches up), looks the namespace up (the cache, else one
//! bounded GET: the `default` ServiceAccount of a new namespace is created before the
//! namespace reaches the cache), and hands the rest to [`super::decide`].
//!
//! Any pod that reaches the port can connect (the API server presents no client certificate
//! by default), and the controller runs in the same process, so what one caller may hold is
//! bounded: [`MAX_CONNECTIONS`] open at once (more are closed as soon as accepted), one request
//! per connection under one [`REQUEST_DEADLINE`] (TLS handshake, head, body and answer), a body
//! of at most [`MAX_BODY_BYTES`], [`MAX_REVIEWS`] reviews decided at once and
//! [`MAX_NAMESPACE_LOOKUPS`] namespace GETs at once. Names are checked as DNS names before any
//! lookup ([`review::parse`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::certs::Pair;
use super::decide::{self, Outcome, Settings, decision};
use super::review::{self, Review};
use super::{PATH, WebhookError};
use crate::cluster::{Readiness, Stores};
use crate::model::ResolveConfig;

/// How long the namespace GET of a cache miss may take.
const NAMESPACE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest request body read: a ServiceAccount AdmissionReview is a few KiB (one with
/// 100 labels, 100 annotations, a `last-applied-configuration` of them, 50 pull Secrets and a
/// user in 30 groups is 31 KiB, see `tests/webhook_limits.rs`). A larger one is answered 413
/// and the API server applies the failure policy.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// One deadline for a whole connection, which carries one request: TLS handshake, request
/// head, body, decision and answer. The API server gives up on a webhook after its
/// `timeoutSeconds` (at most 30, 10 by default, 5 in the chart); past 10 s nobody waits.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Connections open at once (each holds at most a TLS session and one body); more are closed
/// as soon as accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// Reviews parsed and decided at once (a parsed body can take ten times its size).
pub const MAX_REVIEWS: usize = 16;
/// Namespace GETs of cache misses at once; a review finding none free decides as if the
/// namespace were unknown (the reconciler catches up).
pub const MAX_NAMESPACE_LOOKUPS: usize = 4;

/// The certificate being served; empty until the first one is loaded (handshakes fail then,
/// and the API server applies the failure policy).
#[derive(Debug, Default)]
pub struct CertSlot {
    current: RwLock<Option<(String, Arc<CertifiedKey>)>>,
    /// The CAs the API server is given (the configuration's `caBundle`, or cert-manager's
    /// `ca.crt`), PEM; `None` while unknown.
    trusted: RwLock<Option<Vec<String>>>,
}

impl CertSlot {
    /// Serves `pair` from the next handshake on; returns whether it differs from the current.
    pub fn load(&self, pair: &Pair) -> Result<bool, WebhookError> {
        if self.serves(&pair.cert) {
            return Ok(false);
        }
        let chain = CertificateDer::pem_slice_iter(pair.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WebhookError::Pem(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(pair.key.expose().as_bytes())
            .map_err(|e| WebhookError::Pem(e.to_string()))?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| WebhookError::Tls(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signer);
        // A certificate with another pair's key fails every handshake: keep the previous one.
        certified
            .keys_match()
            .map_err(|e| WebhookError::Tls(format!("the certificate and its key: {e}")))?;
        let certified = Arc::new(certified);
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Some((pair.cert.clone(), certified));
        Ok(true)
    }

    /// Whether `cert` (PEM) is the one served.
    pub fn serves(&self, cert: &str) -> bool {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(|(c, _)| c == cert)
    }

    /// Whether a certificate is loaded.
    pub fn is_loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Records the CAs the API server is given (`None`: unknown, not checked).
    pub fn trust(&self, cas: Option<Vec<String>>) {
        *self
            .trusted
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = cas;
    }

    /// Why this replica should not receive reviews, if it should not: no certificate loaded,
    /// or the served one has expired or does not chain to the CAs the API server is given (a
    /// replica that missed a rotation step). Checked at `now`.
    pub fn problem(&self, now: std::time::SystemTime) -> Option<&'static str> {
        let served = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(_, k)| k.clone());
        let Some(served) = served else {
            return Some("webhook certificate not loaded");
        };
        let trusted = self
            .trusted
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        check_chain(&served.cert, trusted.as_deref(), now).err()
    }
}

/// Checks that `chain` (leaf first) chains to one of `cas` and is valid at `now`; with `cas`
/// unknown, only that it can be read.
fn check_chain(
    chain: &[CertificateDer<'static>],
    cas: Option<&[String]>,
    now: std::time::SystemTime,
) -> Result<(), &'static str> {
    use rustls::client::verify_server_cert_signed_by_trust_anchor;
    use rustls::server::ParsedCertificate;
    const UNPARSABLE: &str = "the served webhook certificate cannot be read";
    const EXPIRED: &str = "the served webhook certificate has expired or is not valid yet";
    const UNTRUSTED: &str =
        "the served webhook certificate does not chain to the published CA bundle";
    let (leaf, intermediates) = chain.split_first().ok_or(UNPARSABLE)?;
    let parsed = ParsedCertificate::try_from(leaf).map_err(|_| UNPARSABLE)?;
    // Unknown CAs (no configuration to read, no `ca.crt`): nothing to check against.
    let Some(cas) = cas else { return Ok(()) };
    let mut roots = rustls::RootCertStore::empty();
    for pem in cas {
        if let Ok(der) = CertificateDer::from_pem_slice(pem.as_bytes()) {
            // A CA that cannot be a trust anchor is simply not one.
            let _ = roots.add(der);
        }
    }
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    let now = rustls_pki_types::UnixTime::since_unix_epoch(
        now.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    match verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        intermediates,
        now,
        algorithms.all,
    ) {
        Ok(()) => Ok(()),
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired
            | rustls::CertificateError::ExpiredContext { .. }
            | rustls::CertificateError::NotValidYet
            | rustls::CertificateError::NotValidYetContext { .. },
        )) => Err(EXPIRED),
        Err(_) => Err(UNTRUSTED),
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(_, k)| k.clone())
    }
}

/// What the admission handler reads.
#[derive(Clone)]
pub struct Handler {
    pub client: Client,
    pub stores: Stores,
    pub readiness: Readiness,
    /// What resolving a binding needs (as the reconciler resolves it).
    pub config: ResolveConfig,
    pub settings: Settings,
    /// [`MAX_REVIEWS`] permits.
    pub reviews: Arc<Semaphore>,
    /// [`MAX_NAMESPACE_LOOKUPS`] permits.
    pub lookups: Arc<Semaphore>,
}

impl Handler {
    /// A handler with the default bounds.
    pub fn new(
        client: Client,
        stores: Stores,
        readiness: Readiness,
        config: ResolveConfig,
        settings: Settings,
    ) -> Self {
        Self {
            client,
            stores,
            readiness,
            config,
            settings,
            reviews: Arc::new(Semaphore::new(MAX_REVIEWS)),
            lookups: Arc::new(Semaphore::new(MAX_NAMESPACE_LOOKUPS)),
        }
    }

    /// The namespace's labels: from the cache, else read once (bounded); `None` if unknown.
    async fn namespace_labels(&self, ns: &str) -> Option<BTreeMap<String, String>> {
        if let Some(n) = self.stores.namespaces.get(&ObjectRef::new(ns)) {
            return Some(n.labels().clone());
        }
        let Ok(_permit) = self.lookups.try_acquire() else {
            tracing::debug!(
                namespace = ns,
                "webhook: too many namespace lookups at once"
            );
            return None;
        };
        let api: Api<Namespace> = Api::all(self.client.clone());
        match tokio::time::timeout(NAMESPACE_LOOKUP_TIMEOUT, api.get_opt(ns)).await {
            Ok(Ok(Some(n))) => Some(n.labels().clone()),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!(namespace = ns, error = %e, "webhook: could not read the namespace");
                None
            }
            Err(_) => {
                tracing::warn!(namespace = ns, "webhook: reading the namespace timed out");
                None
            }
        }
    }

    /// Answers one AdmissionReview body: the decision name and the HTTP response.
    pub async fn review(&self, body: &[u8]) -> (&'static str, Response) {
        let create = match review::parse(body) {
            Err(invalid) => {
                tracing::warn!(error = %invalid, "webhook: refused a request");
                let response = (StatusCode::BAD_REQUEST, format!("{invalid}\n")).into_response();
                return (decision::INVALID_REVIEW, response);
            }
            Ok(Review::NotOurs { uid, why }) => {
                return (decision::NOT_OURS, json(review::respond(&uid, why, None)));
            }
            Ok(Review::Create(c)) => c,
        };
        let outcome = if !self.readiness.is_ready() {
            Outcome::Skip(decision::CACHES_NOT_SYNCED)
        } else if self
            .settings
            .excluded_namespaces
            .contains(&create.namespace)
        {
            // Decided without a namespace lookup.
            decide::decide(&create, None, &[], &self.settings)
        } else {
            let labels = self.namespace_labels(&create.namespace).await;
            // Labels of an odd shape: decide() skips it before looking at candidates.
            let sa_labels = decide::labels_of(&create.object).unwrap_or_default();
            let candidates = labels.as_ref().map_or_else(Vec::new, |l| {
                let bindings = self.stores.bindings.state();
                decide::candidates(
                    bindings.iter().map(|b| &**b),
                    &self.stores.policies,
                    &self.config,
                    &create.namespace,
                    l,
                    (&create.name, &sa_labels),
                )
            });
            decide::decide(&create, labels.as_ref(), &candidates, &self.settings)
        };
        let patch = match &outcome {
            Outcome::Patch { binding, patch } => {
                tracing::info!(namespace = %create.namespace, serviceaccount = %create.name, %binding, "webhook: adding the pull Secret at creation");
                Some(patch)
            }
            Outcome::Skip(why) => {
                tracing::debug!(namespace = %create.namespace, serviceaccount = %create.name, decision = why, "webhook: admitted unchanged");
                None
            }
        };
        let answer = review::respond(&create.uid, outcome.decision(), patch);
        (outcome.decision(), json(answer))
    }
}

fn json(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn mutate(State(handler): State<Arc<Handler>>, body: Bytes) -> Response {
    let started = Instant::now();
    // Waiting is bounded by the connection's deadline.
    let Ok(_permit) = handler.reviews.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let (result, response) = handler.review(&body).await;
    crate::metrics::admission(result, started.elapsed());
    response
}

/// The webhook's routes: POST [`PATH`], bodies up to [`MAX_BODY_BYTES`].
pub fn router(handler: Handler) -> axum::Router {
    axum::Router::new()
        .route(PATH, post(mutate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(handler))
}

/// Binds `address` and serves `app` over TLS with the certificate in `slot`, in the background,
/// until `shutdown`; returns the bound address.
pub async fn serve(
    address: SocketAddr,
    slot: Arc<CertSlot>,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, WebhookError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(slot);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(WebhookError::Bind)?;
    let bound = listener.local_addr().map_err(WebhookError::Bind)?;
    // Open connections end with the server.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // The accept loop and every connection stay in the caller's span.
    tokio::spawn(
        async move {
            tokio::pin!(shutdown);
            loop {
                let (tcp, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "webhook: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = &mut shutdown => break,
                };
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    // Closed at once: the caller (the API server too) sees a reset, and the API
                    // server applies the failure policy.
                    tracing::debug!("webhook: too many connections, one closed");
                    drop(tcp);
                    continue;
                };
                let served = connection(acceptor.clone(), tcp, app.clone(), stop.clone());
                tokio::spawn(
                    async move {
                        if tokio::time::timeout(REQUEST_DEADLINE, served)
                            .await
                            .is_err()
                        {
                            tracing::debug!(
                                "webhook: a connection passed its deadline and was closed"
                            );
                        }
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
            let _ = stop_tx.send(true);
            tracing::info!("webhook server stopped");
        }
        .in_current_span(),
    );
    tracing::info!(address = %bound, path = PATH, "webhook server listening");
    Ok(bound)
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            tracing::debug!(error = %e, "webhook: TLS handshake failed");
            return;
        }
    };
    let service = TowerToHyperService::new(app);
    // One request per connection, so the caller's deadline is the connection's. The API
    // server opens a new one for the next review.
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(false)
        .max_buf_size(MAX_BODY_BYTES)
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(served);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        r = served.as_mut() => r,
        () = stopped => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "webhook: connection ended with an error");
    }
}

#[cfg(test)]
mod tests;
