//! The ServiceAccount admission webhook (`injectOnCreate`).
//!
//! Kubernetes copies a ServiceAccount's `imagePullSecrets` into a Pod only when the Pod is
//! admitted, so a Pod created right after its ServiceAccount misses a reference the reconciler
//! adds a moment later. This webhook adds it as the ServiceAccount is created.
//!
//! - [`review`]: AdmissionReview v1 parsing and answers (pure).
//! - [`decide`]: which ServiceAccount gets the reference, with the binding model's resolve and
//!   selection ([`crate::model`]) over the shared watch caches, and the JSONPatch (pure).
//! - [`certs`]: CA and serving certificates and their rotation steps (pure).
//! - [`plan`]: the leader's pass over the certificate: publication time and step (pure).
//! - [`rotation`]: the certificate Secret, the `caBundle` and reloading (I/O).
//! - [`server`]: the HTTPS server every replica runs, with a hot-swapped certificate.
//!
//! [`start`] wires them together; `runtime::run_with` starts it next to the reconcilers when
//! the webhook is on. The webhook imports only the model and the shared plumbing
//! ([`crate::cluster`]), never a reconciler.

pub mod certs;
pub mod decide;
pub mod plan;
pub mod review;
pub mod rotation;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use kube::Client;
use tracing::Instrument;

use crate::cloud::clock::Clock;
use crate::cluster::{Leadership, Readiness, Stores};
use crate::model::ResolveConfig;
pub use decide::{OPT_OUT_LABEL, OPT_OUT_VALUE, Settings};
pub use rotation::{CertSource, Managed};
pub use server::CertSlot;

/// The chart's default `webhook.timeoutSeconds` (defined with the legacy translation, which
/// reports a `timeout-seconds` other than this with the Helm value to set).
pub use crate::legacy::DEFAULT_TIMEOUT_SECONDS;

/// The path the API server posts AdmissionReviews to.
pub const PATH: &str = "/mutate-serviceaccounts";

/// The webhook layer's errors.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot bind the webhook address: {0}")]
    Bind(#[source] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("PEM: {0}")]
    Pem(String),
    #[error("certificate files: {0}")]
    Files(String),
    #[error(transparent)]
    Cert(#[from] certs::CertError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl WebhookError {
    /// A fixed reason, for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            WebhookError::Bind(_) => "BindFailed",
            WebhookError::Tls(_) | WebhookError::Pem(_) => "TlsError",
            WebhookError::Files(_) => "CertificateFilesUnreadable",
            WebhookError::Cert(_) => "CertificateError",
            WebhookError::Kube(_) => crate::model::events::reasons::KUBERNETES_API_ERROR,
        }
    }
}

/// The webhook's settings (from `run`'s `--webhook-*` flags).
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    /// Where the HTTPS server listens.
    pub address: SocketAddr,
    /// Namespaces never mutated, and the Secret name to add.
    pub settings: Settings,
    pub certs: CertSource,
}

/// A running webhook: its bound address and certificate slot.
pub struct Started {
    pub address: SocketAddr,
    pub slot: Arc<CertSlot>,
}

/// Starts the server and the certificate loop in the background, both until `shutdown`; both
/// run in the caller's span (the certificate loop in a `certificates` span within it).
#[allow(clippy::too_many_arguments)]
pub async fn start(
    webhook: &WebhookConfig,
    client: Client,
    stores: Stores,
    readiness: Readiness,
    resolve: ResolveConfig,
    field_manager: String,
    leadership: Leadership,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()> + Clone + Send + 'static,
) -> Result<Started, WebhookError> {
    let slot = Arc::new(CertSlot::default());
    let handler = server::Handler::new(
        client.clone(),
        stores,
        readiness,
        resolve,
        webhook.settings.clone(),
    );
    let address = server::serve(
        webhook.address,
        slot.clone(),
        server::router(handler),
        shutdown.clone(),
    )
    .await?;
    tokio::spawn(
        rotation::run(
            client,
            webhook.certs.clone(),
            slot.clone(),
            leadership,
            clock,
            field_manager,
            shutdown,
        )
        .instrument(tracing::info_span!("certificates")),
    );
    Ok(Started { address, slot })
}
