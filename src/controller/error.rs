//! The controller layer's error type. Every variant has a fixed [`Error::reason`] used as the
//! condition reason, the Event reason and (later) a metric label, so the set stays bounded.

use crate::cloud::CloudError;

/// Anything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// A finalizer add/remove/cleanup step failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The cloud (credentials or registry token) failed.
    #[error("{0}")]
    Cloud(#[source] CloudError),
    /// Serialising an object we build failed (a bug, never user input).
    #[error("serialising {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// An object from the cache lacks a field the API server always sets.
    #[error("object without {0}")]
    MissingField(&'static str),
    /// A ServiceAccount kept changing under us; the next reconcile tries again.
    #[error("ServiceAccount {namespace}/{name} changed {attempts} times while we patched it")]
    Contended {
        namespace: String,
        name: String,
        attempts: u32,
    },
}

impl Error {
    /// A fixed CamelCase reason for conditions, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApiError",
            Error::Finalizer(_) => "FinalizerFailed",
            Error::Cloud(e) => e.reason(),
            Error::Serialize { .. } => "SerializationFailed",
            Error::MissingField(_) => "MissingField",
            Error::Contended { .. } => "Conflict",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

/// Whether a Kubernetes error is an HTTP status `code` answer.
pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Result alias for the controller layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
