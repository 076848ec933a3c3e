//! The composition root: builds everything from the settings and starts it side by side.
//!
//! - [`config`]: [`ControllerConfig`], every default written once.
//! - [`watches`]: the watch caches, our Secret writes in front of them, and the mappers from
//!   secondary kinds to bindings.
//! - [`leader`]: the leader election loop on a Lease (the write gate it drives is
//!   `cluster::leadership`).
//! - [`probes`]: `/readyz`, `/livez` and `/metrics` with the per-binding gauges.
//! - [`throttle`]: at most one binding pass per period from namespace, ServiceAccount and
//!   Secret events.
//!
//! [`run_with`] starts the caches, the probes, the webhook, the binding and policy reconcilers
//! ([`crate::binding`], [`crate::policy`]), the binding's wave lane and the legacy translator ([`crate::translator`]) as
//! siblings over one [`Context`]; [`run`] does so with the production cloud client (the
//! integration tests call it), and [`run_replica`] adds the election around it (the `run`
//! subcommand calls that).

pub mod config;
pub mod leader;
pub mod probes;
pub mod throttle;
pub mod watches;

use std::future::Future;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use tracing::Instrument;

pub use config::ControllerConfig;

use crate::api::AcrCredentialPolicy;
use crate::cloud::clock::{Clock, SystemClock};
use crate::cloud::credentials::access_key::KubeSecretReader;
use crate::cloud::{CloudClient, CloudConfig, CloudError};
use crate::cluster::caches::{self, Readiness};
use crate::cluster::guard;
use crate::cluster::recorder::Recorder;
use crate::cluster::tokens::{CloudFetcher, TokenFetcher, TokenManager};
use crate::cluster::{CONTROLLER_NAME, Context, Leadership, Stores, gated_client};
use crate::model::cached_secret::CachedSecret;
use crate::model::cached_service_account::CachedServiceAccount;
use crate::translator::{self, LegacyConfigMap};
use crate::{binding, policy};
use leader::{LeaseConfig, LeaseTimings};
use watches::{
    Mappers, namespace_touched, policy_triggers, secret_touched, service_account_touched,
    start_caches, touching,
};

/// Why the controller stopped other than by its shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The cloud client could not be built from its configuration.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// The probe server or the webhook could not serve (binding its address, its certificate).
    #[error("probe or webhook server: {0}")]
    Serve(#[source] std::io::Error),
    /// The Kubernetes client could not be built.
    #[error("building the Kubernetes client: {0}")]
    Kube(#[source] kube::Error),
    /// This replica led and lost the Lease: it stopped writing and exits, to come back as a
    /// standby.
    #[error("leadership lost")]
    LeadershipLost,
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

/// Runs one replica until `shutdown` completes: with `election`, it leads only while it holds
/// the Lease, and every write goes through a client that refuses writes otherwise; losing the
/// lead stops it ([`RuntimeError::LeadershipLost`]). On the way out it hands the Lease over.
pub async fn run_replica(
    kube_config: kube::Config,
    election: Option<LeaseConfig>,
    mut config: ControllerConfig,
    cloud: CloudConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RuntimeError> {
    let lease = match election {
        Some(lease) => {
            let client = Client::try_from(kube_config.clone()).map_err(RuntimeError::Kube)?;
            Some(leader::start(client, lease))
        }
        None => None,
    };
    let leadership = lease
        .as_ref()
        .map_or_else(Leadership::always, |l| l.leadership.clone());
    // Every write of the controller goes through this client: refused unless leading.
    let client = gated_client(kube_config, leadership.clone()).map_err(RuntimeError::Kube)?;
    config.leadership = leadership.clone();
    let result = tokio::select! {
        r = run(client, config, cloud, shutdown) => r,
        // Writes stopped when the loop gave up the lead; exit so nothing keeps running without
        // the Lease, and the orchestrator restarts this replica as a standby.
        () = leadership.lost() => return Err(RuntimeError::LeadershipLost),
    };
    // In-flight reconciles have finished: hand the Lease over.
    if let Some(lease) = lease {
        lease.release().await;
    }
    result
}

/// How long `/livez` lets the election loop's last pass be: past the renew deadline something
/// is wrong (a pass takes at most one retry period, and passes come one retry period apart).
pub fn liveness_max_age(timings: Option<&LeaseTimings>) -> std::time::Duration {
    timings.map_or(
        std::time::Duration::from_secs(config::DEFAULT_LIVENESS_MAX_AGE_SECONDS),
        |t| t.renew_deadline,
    )
}

/// Runs the controller with the production cloud client until `shutdown` completes.
pub async fn run(
    client: Client,
    config: ControllerConfig,
    cloud: CloudConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RuntimeError> {
    let cloud_client = Arc::new(CloudClient::new(cloud)?);
    let fetcher = Arc::new(CloudFetcher::new(
        cloud_client,
        Arc::new(KubeSecretReader::new(client.clone())),
    ));
    run_with(client, config, fetcher, Arc::new(SystemClock), shutdown)
        .await
        .map_err(RuntimeError::Serve)
}

/// How often at most namespace, ServiceAccount and Secret events start a pass of one binding
/// (see [`throttle`]).
pub const RELATED_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// A watch event's object (the caches dropped errors already; see `cluster::caches`).
fn ok<K>(event: Result<K, watcher::Error>) -> futures::future::Ready<Option<K>> {
    futures::future::ready(event.ok())
}

/// How long in-flight reconciles may run on after the shutdown signal (well inside a Pod's
/// default 30 s termination grace, leaving time to release the Lease).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

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
    let ns_stream = touching(ns_stream, ctx.clone(), namespace_touched);
    let sa_stream = touching(sa_stream, ctx.clone(), service_account_touched);
    let secret_stream = touching(secret_stream, ctx.clone(), secret_touched);

    let (policy_stream, policy_trigger) = policy_triggers(policy_stream);

    // The passes namespace, ServiceAccount and Secret events trigger, at most one per binding per
    // `RELATED_PERIOD` (see `throttle`): the namespace pass has converged the namespace already.
    let m = mappers.clone();
    let related = futures::stream::select_all([
        ns_stream
            .touched_objects()
            .filter_map(ok)
            .map({
                let m = m.clone();
                move |ns: Namespace| m.namespace(&ns)
            })
            .boxed(),
        sa_stream
            .touched_objects()
            .filter_map(ok)
            .map({
                let m = m.clone();
                move |sa: CachedServiceAccount| m.service_account(&sa)
            })
            .boxed(),
        secret_stream
            .touched_objects()
            .filter_map(ok)
            .map({
                let m = m.clone();
                move |s: CachedSecret| m.secret(&s)
            })
            .boxed(),
    ])
    .flat_map(futures::stream::iter);
    let binding_controller = Controller::for_stream(binding_stream.applied_objects(), bindings)
        .reconcile_on(throttle::throttle(related, RELATED_PERIOD))
        .watches_stream(
            policy_stream.touched_objects(),
            move |p: AcrCredentialPolicy| m.policy(&p),
        )
        .reconcile_all_on(relisted)
        .graceful_shutdown_on(shutdown.clone())
        .run(binding::reconcile, guard::error_policy, ctx.clone())
        .for_each(|r| log_controller_event("binding", r))
        .instrument(controller_span("binding"));
    let translator = translate(
        client.clone(),
        ctx.recorder.clone(),
        config.legacy_configmap.clone(),
        shutdown.clone(),
        leadership.clone(),
    );
    // The wave lane: deferred renewal rewrites, written at their slots within the budget.
    let wave = {
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        async move {
            tokio::select! {
                () = binding::wave::run(ctx) => {}
                () = shutdown => {}
            }
        }
    };
    // The namespace pass: a touched namespace converged on its own, ahead of the passes.
    let touched = {
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        async move {
            tokio::select! {
                () = binding::touched::run(ctx) => {}
                () = shutdown => {}
            }
        }
    };
    let policy_controller = Controller::for_stream(policy_trigger, policies)
        .reconcile_all_on(policy_relist)
        .graceful_shutdown_on(shutdown.clone())
        .run(policy::reconcile, guard::error_policy, ctx)
        .for_each(|r| log_controller_event("policy", r))
        .instrument(controller_span("policy"));
    tracing::info!(secret = %config.secret_name, "controller started");
    let stopped = async {
        futures::join!(
            binding_controller,
            policy_controller,
            translator,
            wave,
            touched
        );
    };
    // A reconcile started just before the signal may be waiting for caches that nobody polls
    // any more: in-flight work gets a bounded grace, then the replica stops anyway (every
    // reconcile is idempotent, and the next leader redoes what was cut short).
    let grace = async {
        shutdown.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = stopped => {}
        () = grace => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "in-flight reconciles did not finish after the shutdown signal; stopping anyway");
        }
    }
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("controller stopped");
    Ok(())
}

/// The span of a controller's runner: its reconciles' spans are children of it.
fn controller_span(controller: &'static str) -> tracing::Span {
    tracing::info_span!(parent: None, "controller", controller)
}

/// The webhook (when configured) and the probes, served by every replica from the same caches;
/// only the leader writes the webhook's certificate Secret and caBundle (the client is gated).
/// Each runs in its own span (`webhook`, `probes`), its background tasks too.
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
                config.resolve(),
                config.field_manager.clone(),
                leadership.clone(),
                clock.clone(),
                shutdown,
            )
            .instrument(tracing::info_span!(parent: None, "webhook", address = %w.address))
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
        probes::serve(address, health, probes::registry(stores.bindings.clone()))
            .instrument(tracing::info_span!(parent: None, "probes"))
            .await?;
    }
    Ok(())
}

/// Becoming the leader re-runs every binding and policy: a standby's reconciles did nothing.
fn rerun_on_leadership(
    leadership: &Leadership,
    bindings: futures::channel::mpsc::UnboundedSender<()>,
    policies: futures::channel::mpsc::UnboundedSender<()>,
) {
    let mut gained = leadership.subscribe();
    let span = tracing::info_span!(parent: None, "leadership", task = "rerun on leading");
    tokio::spawn(
        async move {
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
        }
        .instrument(span),
    );
}

/// The one reconcile context: the caches, a token manager over `fetcher`, and the one Event
/// recorder, named after this controller and this replica (`replica_name`), on `clock`.
fn new_context(
    client: &Client,
    config: &ControllerConfig,
    stores: Stores,
    readiness: Readiness,
    fetcher: Arc<dyn TokenFetcher>,
    clock: Arc<dyn Clock>,
) -> Arc<Context> {
    let reporter = Reporter {
        controller: CONTROLLER_NAME.into(),
        instance: config.replica_name.clone(),
    };
    let recorder = Recorder::new(client.clone(), reporter).with_clock(clock.clone());
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

/// The live translation of the legacy ConfigMap, when configured, in the `translator` span.
/// The translator writes too: it starts once this replica leads (a standby's writes would only
/// be refused by the gated client).
async fn translate(
    client: Client,
    recorder: Arc<Recorder>,
    legacy: Option<LegacyConfigMap>,
    shutdown: impl Future<Output = ()> + Clone + Send,
    leadership: Leadership,
) {
    let Some(legacy) = legacy else { return };
    let span = tracing::info_span!(parent: None, "translator", configmap = %legacy.label_value());
    tokio::select! {
        () = leadership.acquired() => {
            translator::run_translator(client, recorder, legacy, shutdown)
                .instrument(span)
                .await;
        }
        () = shutdown.clone() => {}
    }
}
