//! The one `Context` every reconcile gets: the Kubernetes client, the watch caches (stores),
//! the token manager, the Event recorder, configuration and the clock.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::Client;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;

use super::caches::Readiness;
use super::leader::Leadership;
use super::recorder::Recorder;
use super::tokens::TokenManager;
use crate::api::{AcrCredentialPolicy, AcrRegistryBinding};
use crate::cloud::clock::Clock;

/// The name this controller reports Events and field ownership under.
pub const CONTROLLER_NAME: &str = "acr-credential-controller";
/// Finalizer on bindings: their ServiceAccount entries are removed before they go.
pub const FINALIZER: &str = "acrcredentials.io/cleanup";

/// Settings of the controller (from flags).
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Name of the pull Secret in every namespace (default `acr-credentials`).
    pub secret_name: String,
    /// Region of registries whose binding names none.
    pub default_region: String,
    /// Where the ACK add-on token and the projected RRSA token are (managedRole and rrsa
    /// sources).
    pub token_files: crate::cloud::credentials::TokenFiles,
    /// Field manager for server-side apply.
    pub field_manager: String,
    /// Longest time between two reconciles of a binding, whatever happens.
    pub resync: std::time::Duration,
    /// Optional label selector (`key=value,...`): only bindings and policies matching it are
    /// handled. Lets several controllers share a cluster (shards, parallel tests).
    pub object_selector: Option<String>,
    /// Longest time one reconcile may take (waiting for the caches included); past it, the
    /// reconcile fails and is retried, so nothing can hold an object's slot for ever.
    pub reconcile_timeout: std::time::Duration,
    /// The legacy ConfigMap to translate live (`run --legacy-configmap`); `None`: off.
    pub legacy_configmap: Option<super::legacy_sync::LegacyConfigMap>,
    /// Whether this replica leads and may write ([`Leadership::always`] without election).
    pub leadership: Leadership,
    /// Where to serve `/readyz`, `/livez` and `/metrics`; none without.
    pub probe_address: Option<std::net::SocketAddr>,
    /// How stale the election loop's last pass may be before `/livez` fails.
    pub liveness_max_age: std::time::Duration,
    /// The ServiceAccount admission webhook; `None`: off.
    pub webhook: Option<crate::webhook::WebhookConfig>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            secret_name: "acr-credentials".into(),
            default_region: crate::cli::args::DEFAULT_REGION.into(),
            token_files: Default::default(),
            field_manager: CONTROLLER_NAME.into(),
            resync: std::time::Duration::from_secs(300),
            object_selector: None,
            reconcile_timeout: std::time::Duration::from_secs(120),
            legacy_configmap: None,
            leadership: Leadership::always(),
            probe_address: None,
            liveness_max_age: std::time::Duration::from_secs(10),
            webhook: None,
        }
    }
}

/// The watch caches the reconcilers read instead of the API server.
#[derive(Clone)]
pub struct Stores {
    pub bindings: Store<AcrRegistryBinding>,
    pub policies: Store<AcrCredentialPolicy>,
    pub namespaces: Store<Namespace>,
    pub service_accounts: Store<ServiceAccount>,
    /// Only Secrets named [`ControllerConfig::secret_name`].
    pub secrets: Store<Secret>,
    /// Our writes of those Secrets that `secrets` has not shown yet.
    pub written: Arc<super::written::Written>,
}

impl Stores {
    /// The pull Secret of `namespace`: our last write while the cache lags behind it, else the
    /// cached copy.
    pub fn secret(&self, namespace: &str) -> Option<Arc<Secret>> {
        self.written.current(namespace)
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub config: ControllerConfig,
    pub stores: Stores,
    /// Whether every cache holds its initial list: reconciles wait for it, so no decision is
    /// made on a partial view (an empty namespace cache would look like every namespace left
    /// every binding).
    pub readiness: Readiness,
    pub tokens: Arc<TokenManager>,
    pub recorder: Recorder,
    pub clock: Arc<dyn Clock>,
    /// One lock per namespace being converged; entries nobody holds are dropped.
    pub namespace_locks: super::locks::NamespaceLocks,
    /// Consecutive failures per binding and policy, for the retry backoff.
    pub retries: super::guard::Backoff,
}

impl Context {
    pub fn new(
        client: Client,
        config: ControllerConfig,
        stores: Stores,
        readiness: Readiness,
        tokens: Arc<TokenManager>,
        recorder: Recorder,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            config,
            stores,
            readiness,
            tokens,
            recorder,
            clock,
            namespace_locks: super::locks::NamespaceLocks::default(),
            retries: super::guard::Backoff::default(),
        }
    }

    /// Waits for the lock serialising writes to one namespace's Secret and ServiceAccounts
    /// (several bindings may reconcile the same namespace at once); held until dropped.
    pub async fn namespace_lock(&self, namespace: &str) -> super::locks::NamespaceGuard<'_> {
        self.namespace_locks.lock(namespace).await
    }

    /// Publishes an Event about a binding or policy; a failure to publish is only logged.
    pub async fn event<K>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: kube::Resource<DynamicType = ()>,
    {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        let reference = object.object_ref(&());
        match self.recorder.publish(&event, &reference).await {
            Ok(()) => crate::metrics::write("Event", "create"),
            Err(e) => tracing::warn!(error = %e, reason, "could not publish Event"),
        }
    }
}
