//! The reconcilers' error type (shared by the binding and policy reconcilers and the plumbing
//! they run on). Every variant has a fixed [`Error::reason`], the bounded label that reconcile
//! failures are logged, counted and published as Warning Events under; the message is for
//! people.

/// Anything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// An object from the cache lacks a field the API server always sets.
    #[error("object without {0}")]
    MissingField(&'static str),
    /// A reconcile ran past its deadline; the work done so far stays, and it is requeued.
    #[error("reconcile did not finish within {seconds} s{}", waiting_note(.waiting_for))]
    Timeout {
        seconds: u64,
        /// Watch caches that had not synced yet when the deadline passed.
        waiting_for: Vec<&'static str>,
    },
    /// An object we write (the pull Secret, a ServiceAccount) kept changing under us; the next
    /// reconcile tries again.
    #[error("{kind} {namespace}/{name} changed {attempts} times while we wrote it")]
    Contended {
        /// `Secret` or `ServiceAccount`.
        kind: &'static str,
        namespace: String,
        name: String,
        attempts: u32,
    },
    /// Some of a namespace's ServiceAccounts could not be patched.
    #[error("ServiceAccounts in namespace {namespace}: {message}")]
    ServiceAccounts { namespace: String, message: String },
}

impl Error {
    /// A fixed CamelCase reason: the failed reconcile's Event reason, log field and metric
    /// label.
    pub fn reason(&self) -> &'static str {
        use crate::api::conditions::reasons as condition;
        use crate::model::events::reasons;
        match self {
            Error::Kube(_) => reasons::KUBERNETES_API_ERROR,
            Error::MissingField(_) => reasons::MISSING_FIELD,
            Error::Contended { .. } => reasons::CONFLICT,
            Error::Timeout { .. } => reasons::RECONCILE_TIMEOUT,
            Error::ServiceAccounts { .. } => condition::SERVICE_ACCOUNT_PATCH_FAILED,
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

fn waiting_note(caches: &[&'static str]) -> String {
    if caches.is_empty() {
        String::new()
    } else {
        format!(" (watch caches not synced yet: {})", caches.join(", "))
    }
}

/// Whether a Kubernetes error is an HTTP status `code` answer.
pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Result alias for the controller layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
