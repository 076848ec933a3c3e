//! The one `Context` every reconcile gets: the Kubernetes client, the watch caches (stores),
//! the token manager, the Event recorder, the reconcilers' settings ([`ReconcileConfig`]), the
//! write budget and its wave lane, the touched namespaces, and the clock.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Secret};
use kube::Client;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;

use super::budget::{BudgetConfig, WriteBudget};
use super::caches::Readiness;
use super::leadership::Leadership;
use super::recorder::Recorder;
use super::tokens::TokenManager;
use super::touched::TouchedNamespaces;
use super::wave::WaveQueue;
use crate::api::{AcrCredentialPolicy, AcrRegistryBinding};
use crate::cloud::clock::Clock;
use crate::model::ResolveConfig;
use crate::model::cached_secret::CachedSecret;
use crate::model::cached_service_account::CachedServiceAccount;

/// The name this controller reports Events and field ownership under.
pub const CONTROLLER_NAME: &str = "acr-credential-controller";

/// What the reconcilers need of the controller's settings (`runtime::ControllerConfig`
/// holds them all, and its defaults).
#[derive(Clone, Debug)]
pub struct ReconcileConfig {
    /// What resolving a binding needs (shared with the webhook).
    pub resolve: ResolveConfig,
    /// Name of the pull Secret in every namespace.
    pub secret_name: String,
    /// Field manager for server-side apply.
    pub field_manager: String,
    /// Longest time between two reconciles of a binding, whatever happens.
    pub resync: std::time::Duration,
    /// Longest time one reconcile may take (waiting for the caches included); past it, the
    /// reconcile fails and is retried, so nothing can hold an object's slot for ever.
    pub reconcile_timeout: std::time::Duration,
    /// Whether this replica leads and may write.
    pub leadership: Leadership,
    /// The write budget: writes per second and burst; unlimited defers nothing.
    pub write_budget: BudgetConfig,
}

/// The watch caches the reconcilers read instead of the API server.
#[derive(Clone)]
pub struct Stores {
    pub bindings: Store<AcrRegistryBinding>,
    pub policies: Store<AcrCredentialPolicy>,
    pub namespaces: Store<Namespace>,
    /// In their compact form.
    pub service_accounts: Store<CachedServiceAccount>,
    /// Only Secrets named [`ReconcileConfig::secret_name`], in their compact form.
    pub secrets: Store<CachedSecret>,
    /// Our writes of those Secrets that `secrets` has not shown yet.
    pub written: Arc<super::written::Written>,
    /// Our ServiceAccount patches that `service_accounts` has not shown yet.
    pub patched: Arc<super::patched::Patched>,
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
    pub config: ReconcileConfig,
    pub stores: Stores,
    /// Whether every cache holds its initial list: reconciles wait for it, so no decision is
    /// made on a partial view (an empty namespace cache would look like every namespace left
    /// every binding).
    pub readiness: Readiness,
    pub tokens: Arc<TokenManager>,
    /// The one Event writer (shared with the legacy translator).
    pub recorder: Arc<Recorder>,
    pub clock: Arc<dyn Clock>,
    /// One lock per namespace being converged; entries nobody holds are dropped.
    pub namespace_locks: super::locks::NamespaceLocks,
    /// Consecutive failures per binding and policy, for the retry backoff.
    pub retries: super::backoff::Backoff,
    /// The write budget every write takes from ([`WriteBudget::urgent`] or its wave lane).
    pub budget: WriteBudget,
    /// Renewal rewrites deferred to their slot in a paced wave.
    pub wave: WaveQueue,
    /// Namespaces whose objects just changed, for the namespace pass.
    pub touched: TouchedNamespaces,
}

impl Context {
    pub fn new(
        client: Client,
        config: impl Into<ReconcileConfig>,
        stores: Stores,
        readiness: Readiness,
        tokens: Arc<TokenManager>,
        recorder: impl Into<Arc<Recorder>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let config: ReconcileConfig = config.into();
        Self {
            budget: WriteBudget::new(config.write_budget),
            wave: WaveQueue::default(),
            touched: TouchedNamespaces::default(),
            client,
            config,
            stores,
            readiness,
            tokens,
            recorder: recorder.into(),
            clock,
            namespace_locks: super::locks::NamespaceLocks::default(),
            retries: super::backoff::Backoff::default(),
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
        self.event_about(&object.object_ref(&()), type_, reason, action, note)
            .await;
    }

    /// Publishes an Event about the object `regarding`; a failure to publish is only logged.
    pub async fn event_about(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        // An Event is a write too (a create, or a patch counting a repeat): urgent.
        self.budget.urgent();
        match self.recorder.publish(&event, regarding).await {
            Ok(()) => crate::metrics::write("Event", "create"),
            Err(e) => tracing::warn!(error = %e, reason, "could not publish Event"),
        }
    }
}
