//! The controller: keeps pull Secrets and ServiceAccount `imagePullSecrets` in line with the
//! `AcrRegistryBinding`s and `AcrCredentialPolicy`s, renews tokens, and reports status.
//!
//! - [`caches`]: the watch caches, their one shared readiness signal and re-list triggers.
//! - [`context`]: the one `Context` (client, watch caches, token manager, recorder, clock).
//! - [`guard`]: the envelope of every reconcile (caches synced, deadline, error policy) and the
//!   leadership gate in front of it.
//! - [`leader`]: leader election on a Lease; only the leader writes.
//! - [`locks`]: the per-namespace write locks (entries nobody holds are dropped).
//! - [`probes`]: `/readyz`, `/livez` and `/metrics` with the per-binding gauges.
//! - [`finalizer`]: the binding finalizer, added in the pass that first converges a binding.
//! - [`selection`]: which namespaces and ServiceAccounts a binding targets (pure).
//! - [`resolve`]: from a binding and its policy to a token request (pure over the caches).
//! - [`tokens`]: the shared token manager (coalescing, renewal, backoff).
//! - [`secret`]: the dockerconfigjson Secret builder and change detection (pure).
//! - [`service_accounts`]: version-checked `imagePullSecrets` patches.
//! - [`adopt`]: after a restart, taking over a token the binding's pull Secrets hold, only when
//!   the binding's status proves the controller issued it.
//! - [`sync`]: converging one namespace from every live binding (selection, a pure plan of the
//!   Secret, then the writes).
//! - [`observe`]: folds one reconcile's namespace outcomes into the binding's view (pure).
//! - [`status`]: the binding status builder (one function per condition) and SSA on `/status`.
//! - [`events`]: Event reasons and actions, and the token Event builder (pure).
//! - [`recorder`]: publishes Events, one per distinct note, identical repeats folded into a count.
//! - [`binding`], [`policy`]: the reconcilers.
//! - [`legacy_sync`]: live translation of the legacy ConfigMap (optional).
//! - [`error`]: the layer's error type.
//!
//! [`run`] wires it together and is what the `run` subcommand and the integration tests call.

pub mod adopt;
pub mod binding;
pub mod caches;
pub mod context;
pub mod error;
pub mod events;
pub mod finalizer;
pub mod guard;
pub mod leader;
pub mod legacy_sync;
pub mod locks;
pub mod observe;
pub mod policy;
pub mod probes;
pub mod recorder;
pub mod resolve;
pub mod secret;
pub mod selection;
pub mod service_accounts;
pub mod status;
pub mod sync;
pub mod tokens;
pub mod written;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use recorder::Recorder;

pub use caches::Readiness;
pub use context::{Context, ControllerConfig, Stores};
pub use error::Error;
pub use leader::Leadership;

use crate::api::{AcrCredentialPolicy, AcrRegistryBinding};
use crate::cloud::clock::{Clock, SystemClock};
use crate::cloud::credentials::access_key::KubeSecretReader;
use crate::cloud::{CloudClient, CloudConfig, CloudError};
use tokens::{CloudFetcher, TokenFetcher, TokenManager};

/// Bindings that may care about namespace `ns`, whose labels are `labels` (taken from the
/// event's own object when there is one, so a namespace relabelled during a watch gap is judged
/// by its new labels): those whose selection matches it by name or labels (ignoring the
/// policy's allowedNamespaces) and those owning our Secret there.
fn bindings_for_namespace(
    bindings: &Store<AcrRegistryBinding>,
    secrets: &Store<Secret>,
    secret_name: &str,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<ObjectRef<AcrRegistryBinding>> {
    let owners = secrets
        .get(&ObjectRef::new(secret_name).within(ns))
        .map(|s| secret::owner_bindings(&s))
        .unwrap_or_default();
    bindings
        .state()
        .iter()
        .filter(|b| {
            owners.contains(&b.name_any())
                || selection::namespace_verdict(&b.spec.namespaces, None, ns, labels)
                    != selection::NamespaceVerdict::NotSelected
        })
        .map(|b| ObjectRef::from_obj(&**b))
        .collect()
}

/// Maps watch events of the secondary kinds to the bindings they concern.
#[derive(Clone)]
struct Mappers {
    stores: Stores,
    secret_name: String,
}

impl Mappers {
    /// The labels of namespace `ns` as cached.
    fn labels_of(&self, ns: &str) -> BTreeMap<String, String> {
        self.stores
            .namespaces
            .get(&ObjectRef::new(ns))
            .map(|n| n.labels().clone())
            .unwrap_or_default()
    }

    fn namespace(&self, ns: &Namespace) -> Vec<ObjectRef<AcrRegistryBinding>> {
        let s = &self.stores;
        bindings_for_namespace(
            &s.bindings,
            &s.secrets,
            &self.secret_name,
            &ns.name_any(),
            ns.labels(),
        )
    }

    fn service_account(&self, sa: &ServiceAccount) -> Vec<ObjectRef<AcrRegistryBinding>> {
        let s = &self.stores;
        match sa.namespace() {
            Some(ns) => bindings_for_namespace(
                &s.bindings,
                &s.secrets,
                &self.secret_name,
                &ns,
                &self.labels_of(&ns),
            ),
            None => Vec::new(),
        }
    }

    fn secret(&self, secret: &Secret) -> Vec<ObjectRef<AcrRegistryBinding>> {
        let s = &self.stores;
        let mut refs = match secret.namespace() {
            Some(ns) => bindings_for_namespace(
                &s.bindings,
                &s.secrets,
                &self.secret_name,
                &ns,
                &self.labels_of(&ns),
            ),
            None => Vec::new(),
        };
        refs.extend(
            secret::owner_bindings(secret)
                .into_iter()
                .map(|o| ObjectRef::new(&o)),
        );
        refs
    }

    fn policy(&self, policy: &AcrCredentialPolicy) -> Vec<ObjectRef<AcrRegistryBinding>> {
        let name = policy.name_any();
        self.stores
            .bindings
            .state()
            .iter()
            .filter(|b| b.spec.policy_name() == name)
            .map(|b| ObjectRef::from_obj(&**b))
            .collect()
    }
}

/// Logs what a controller's stream yields: reconcile failures were logged by the error policy
/// already; watch and runner errors are logged here, at warn level.
async fn log_controller_event<K, E>(
    controller: &'static str,
    result: Result<
        (ObjectRef<K>, kube::runtime::controller::Action),
        kube::runtime::controller::Error<E, watcher::Error>,
    >,
) where
    K: kube::Resource,
    E: std::error::Error,
{
    use kube::runtime::controller::Error as E2;
    match result {
        Ok(_) | Err(E2::ReconcilerFailed(..)) => {}
        Err(E2::ObjectNotFound(obj)) => {
            tracing::debug!(controller, object = %obj, "object gone before its reconcile");
        }
        Err(e) => tracing::warn!(controller, error = %e, "controller stream error"),
    }
}

/// Runs the controller with the production cloud client until `shutdown` completes.
pub async fn run(
    client: Client,
    config: ControllerConfig,
    cloud: CloudConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CloudError> {
    let cloud_client = Arc::new(CloudClient::new(cloud)?);
    let fetcher = Arc::new(CloudFetcher::new(
        cloud_client,
        Arc::new(KubeSecretReader::new(client.clone())),
    ));
    run_with(client, config, fetcher, Arc::new(SystemClock), shutdown)
        .await
        .map_err(|e| CloudError::Config {
            message: format!("probe or webhook server: {e}"),
        })
}

/// Runs the controller with any token fetcher and clock until `shutdown` completes. Fails only
/// when the probe server or the webhook cannot bind its address.
pub async fn run_with(
    client: Client,
    config: ControllerConfig,
    fetcher: Arc<dyn TokenFetcher>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shutdown = shutdown.boxed().shared();
    let readiness = Readiness::new(caches::kind::ALL);
    let (relisted_tx, relisted) = futures::channel::mpsc::unbounded();
    let (stores, binding_stream, policy_stream, ns_stream, sa_stream, secret_stream) =
        start_caches(&client, &config, &readiness, &relisted_tx);
    let (bindings, policies) = (stores.bindings.clone(), stores.policies.clone());
    let leadership = config.leadership.clone();
    let (policy_relist_tx, policy_relist) = futures::channel::mpsc::unbounded();
    rerun_on_leadership(&leadership, relisted_tx, policy_relist_tx);

    let mappers = Mappers {
        stores: stores.clone(),
        secret_name: config.secret_name.clone(),
    };
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    serve_endpoints(
        &client,
        &config,
        &stores,
        &readiness,
        &clock,
        shutdown.clone(),
        running.clone(),
    )
    .await?;
    let ctx = new_context(&client, &config, stores, readiness, fetcher, clock);

    let (policy_stream, policy_trigger) = policy_triggers(policy_stream);

    // No debounce: the runner already folds triggers for a binding that is being reconciled
    // into one rerun, and kube-runtime's debounce restarts its timer on every trigger, so a
    // steady stream of namespace events would postpone reconciles indefinitely.
    let m = mappers.clone();
    let binding_controller = Controller::for_stream(binding_stream.applied_objects(), bindings)
        .watches_stream(ns_stream.touched_objects(), {
            let m = m.clone();
            move |ns: Namespace| m.namespace(&ns)
        })
        .watches_stream(sa_stream.touched_objects(), {
            let m = m.clone();
            move |sa: ServiceAccount| m.service_account(&sa)
        })
        .watches_stream(secret_stream.touched_objects(), {
            let m = m.clone();
            move |s: Secret| m.secret(&s)
        })
        .watches_stream(
            policy_stream.touched_objects(),
            move |p: AcrCredentialPolicy| m.policy(&p),
        )
        .reconcile_all_on(relisted)
        .graceful_shutdown_on(shutdown.clone())
        .run(binding::reconcile, guard::error_policy, ctx.clone())
        .for_each(|r| log_controller_event("binding", r));
    let translator = translator(
        client.clone(),
        config.legacy_configmap.clone(),
        shutdown.clone(),
        leadership.clone(),
    );
    let policy_controller = Controller::for_stream(policy_trigger, policies)
        .reconcile_all_on(policy_relist)
        .graceful_shutdown_on(shutdown)
        .run(policy::reconcile, guard::error_policy, ctx)
        .for_each(|r| log_controller_event("policy", r));
    tracing::info!(secret = %config.secret_name, "controller started");
    futures::join!(binding_controller, policy_controller, translator);
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("controller stopped");
    Ok(())
}

/// The webhook (when configured) and the probes, served by every replica from the same caches;
/// only the leader writes the webhook's certificate Secret and caBundle (the client is gated).
async fn serve_endpoints(
    client: &Client,
    config: &ControllerConfig,
    stores: &Stores,
    readiness: &Readiness,
    clock: &Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Clone + Send + 'static,
    running: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    let leadership = config.leadership.clone();
    let webhook = match &config.webhook {
        Some(w) => Some(
            crate::webhook::start(
                w,
                client.clone(),
                stores.clone(),
                readiness.clone(),
                config.clone(),
                leadership.clone(),
                clock.clone(),
                shutdown,
            )
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .slot,
        ),
        None => None,
    };
    if let Some(address) = config.probe_address {
        let health = probes::Health {
            readiness: readiness.clone(),
            leadership,
            loop_max_age: config.liveness_max_age,
            running,
            webhook,
        };
        probes::serve(address, health, probes::registry(stores.bindings.clone())).await?;
    }
    Ok(())
}

/// Starts one reflector per kind, each reporting its lists to `readiness` and its re-lists to
/// `relisted`: the stores the reconcilers read, and the event streams (bindings, policies,
/// namespaces, ServiceAccounts, Secrets) the controllers must poll for the stores to fill.
#[allow(clippy::type_complexity)]
fn start_caches(
    client: &Client,
    config: &ControllerConfig,
    readiness: &Readiness,
    relisted: &futures::channel::mpsc::UnboundedSender<()>,
) -> (
    Stores,
    impl futures::Stream<Item = WatchResult<AcrRegistryBinding>> + Send + use<>,
    impl futures::Stream<Item = WatchResult<AcrCredentialPolicy>> + Send + use<>,
    impl futures::Stream<Item = WatchResult<Namespace>> + Send + use<>,
    impl futures::Stream<Item = WatchResult<ServiceAccount>> + Send + use<>,
    impl futures::Stream<Item = WatchResult<Secret>> + Send + use<>,
) {
    let owned = || match &config.object_selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    let all = watcher::Config::default;
    let (bindings, binding_stream) = caches::cache::<AcrRegistryBinding>(
        Api::all(client.clone()),
        owned(),
        caches::kind::BINDINGS,
        readiness,
        relisted,
        caches::trim::nothing,
    );
    let (policies, policy_stream) = caches::cache::<AcrCredentialPolicy>(
        Api::all(client.clone()),
        owned(),
        caches::kind::POLICIES,
        readiness,
        relisted,
        caches::trim::nothing,
    );
    let (namespaces, ns_stream) = caches::cache::<Namespace>(
        Api::all(client.clone()),
        all(),
        caches::kind::NAMESPACES,
        readiness,
        relisted,
        caches::trim::namespace,
    );
    let (service_accounts, sa_stream) = caches::cache::<ServiceAccount>(
        Api::all(client.clone()),
        all(),
        caches::kind::SERVICE_ACCOUNTS,
        readiness,
        relisted,
        caches::trim::service_account,
    );
    let (secrets, secret_stream) = caches::cache::<Secret>(
        Api::all(client.clone()),
        all().fields(&format!("metadata.name={}", config.secret_name)),
        caches::kind::SECRETS,
        readiness,
        relisted,
        caches::trim::secret,
    );
    let (written, secret_stream) = in_front_of(&secrets, &config.secret_name, secret_stream);
    let stores = Stores {
        bindings,
        policies,
        namespaces,
        service_accounts,
        secrets,
        written,
    };
    (
        stores,
        binding_stream,
        policy_stream,
        ns_stream,
        sa_stream,
        secret_stream,
    )
}

/// What a watch stream yields.
type WatchResult<K> = Result<watcher::Event<K>, watcher::Error>;

/// Our own Secret writes, in front of the Secret cache until its stream shows them.
fn in_front_of<S>(
    secrets: &Store<Secret>,
    secret_name: &str,
    stream: S,
) -> (
    Arc<written::Written>,
    impl futures::Stream<Item = WatchResult<Secret>> + Send + use<S>,
)
where
    S: futures::Stream<Item = WatchResult<Secret>> + Send,
{
    let written = Arc::new(written::Written::new(secrets.clone(), secret_name));
    let observer = written.clone();
    let stream = stream.inspect(move |event| {
        if let Ok(event) = event {
            observer.observe(event);
        }
    });
    (written, stream)
}

/// Policies feed two things: the binding controller (through the policy cache and mapper)
/// and the policy controller (its own trigger stream over the same cache). Returns the stream
/// for the first and the triggers of the second.
fn policy_triggers(
    policy_stream: impl futures::Stream<Item = WatchResult<AcrCredentialPolicy>> + Send,
) -> (
    impl futures::Stream<Item = WatchResult<AcrCredentialPolicy>> + Send,
    futures::channel::mpsc::UnboundedReceiver<Result<AcrCredentialPolicy, watcher::Error>>,
) {
    let (policy_trigger_tx, policy_trigger) = futures::channel::mpsc::unbounded();
    let policy_stream = policy_stream.inspect(move |event| {
        if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = event {
            let _ = policy_trigger_tx.unbounded_send(Ok(p.clone()));
        }
    });
    (policy_stream, policy_trigger)
}

/// Becoming the leader re-runs every binding and policy: a standby's reconciles did nothing.
fn rerun_on_leadership(
    leadership: &Leadership,
    bindings: futures::channel::mpsc::UnboundedSender<()>,
    policies: futures::channel::mpsc::UnboundedSender<()>,
) {
    let mut gained = leadership.subscribe();
    tokio::spawn(async move {
        loop {
            if gained.wait_for(|l| *l).await.is_err() {
                break;
            }
            let binding_sent = bindings.unbounded_send(()).is_ok();
            let policy_sent = policies.unbounded_send(()).is_ok();
            if !binding_sent && !policy_sent {
                break;
            }
            if gained.wait_for(|l| !*l).await.is_err() {
                break;
            }
        }
    });
}

/// The one reconcile context: the caches, a token manager over `fetcher`, and an Event
/// recorder named after this controller (and the Pod, when `POD_NAME` is set).
fn new_context(
    client: &Client,
    config: &ControllerConfig,
    stores: Stores,
    readiness: Readiness,
    fetcher: Arc<dyn TokenFetcher>,
    clock: Arc<dyn Clock>,
) -> Arc<Context> {
    let reporter = Reporter {
        controller: context::CONTROLLER_NAME.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let tokens = Arc::new(TokenManager::new(fetcher, clock.clone()));
    Arc::new(Context::new(
        client.clone(),
        config.clone(),
        stores,
        readiness,
        tokens,
        recorder,
        clock,
    ))
}

/// The live translation of the legacy ConfigMap, when configured. The translator writes too:
/// it starts once this replica leads (a standby's writes would only be refused by the gated
/// client).
async fn translator(
    client: Client,
    legacy: Option<legacy_sync::LegacyConfigMap>,
    shutdown: impl Future<Output = ()> + Clone + Send,
    leadership: Leadership,
) {
    let Some(legacy) = legacy else { return };
    tokio::select! {
        () = leadership.acquired() => {
            legacy_sync::run_translator(client, legacy, shutdown).await;
        }
        () = shutdown.clone() => {}
    }
}
