//! The controller: keeps pull Secrets and ServiceAccount `imagePullSecrets` in line with the
//! `AcrRegistryBinding`s and `AcrCredentialPolicy`s, renews tokens, and reports status.
//!
//! - [`context`]: the one `Context` (client, watch caches, token manager, recorder, clock).
//! - [`selection`]: which namespaces and ServiceAccounts a binding targets (pure).
//! - [`resolve`]: from a binding and its policy to a token request (pure over the caches).
//! - [`tokens`]: the shared token manager (coalescing, renewal, backoff).
//! - [`secret`]: the dockerconfigjson Secret builder and change detection (pure).
//! - [`service_accounts`]: version-checked `imagePullSecrets` patches.
//! - [`sync`]: converging one namespace from every live binding.
//! - [`status`]: status builder and SSA on `/status`.
//! - [`binding`], [`policy`]: the reconcilers.
//! - [`legacy_sync`]: live translation of the legacy ConfigMap (optional).
//! - [`error`]: the layer's error type.
//!
//! [`run`] wires it together and is what the `run` subcommand and the integration tests call.

pub mod binding;
pub mod context;
pub mod error;
pub mod legacy_sync;
pub mod policy;
pub mod resolve;
pub mod secret;
pub mod selection;
pub mod service_accounts;
pub mod status;
pub mod sync;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

pub use context::{Context, ControllerConfig, Stores};
pub use error::Error;

use crate::api::{AcrCredentialPolicy, AcrRegistryBinding};
use crate::cloud::clock::{Clock, SystemClock};
use crate::cloud::credentials::access_key::KubeSecretReader;
use crate::cloud::{CloudClient, CloudConfig, CloudError};
use tokens::{CloudFetcher, TokenFetcher, TokenManager};

/// Bindings that may care about namespace `ns`: those whose selection matches it by name or
/// labels (ignoring the policy's allowedNamespaces) and those owning our Secret there.
fn bindings_for_namespace(
    bindings: &Store<AcrRegistryBinding>,
    namespaces: &Store<Namespace>,
    secrets: &Store<Secret>,
    secret_name: &str,
    ns: &str,
) -> Vec<ObjectRef<AcrRegistryBinding>> {
    let labels = namespaces
        .get(&ObjectRef::new(ns))
        .map(|n| n.labels().clone())
        .unwrap_or_default();
    let owners = secrets
        .get(&ObjectRef::new(secret_name).within(ns))
        .map(|s| secret::owner_bindings(&s))
        .unwrap_or_default();
    bindings
        .state()
        .iter()
        .filter(|b| {
            owners.contains(&b.name_any())
                || selection::namespace_verdict(&b.spec.namespaces, None, ns, &labels)
                    != selection::NamespaceVerdict::NotSelected
        })
        .map(|b| ObjectRef::from_obj(&**b))
        .collect()
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
    run_with(client, config, fetcher, Arc::new(SystemClock), shutdown).await;
    Ok(())
}

/// Runs the controller with any token fetcher and clock until `shutdown` completes.
pub async fn run_with(
    client: Client,
    config: ControllerConfig,
    fetcher: Arc<dyn TokenFetcher>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown = shutdown.boxed().shared();
    let wc = watcher::Config::default;
    let owned = || match &config.object_selector {
        Some(selector) => wc().labels(selector),
        None => wc(),
    };

    let (namespaces, ns_writer) = reflector::store::<Namespace>();
    let ns_stream = reflector::reflector(
        ns_writer,
        watcher(Api::<Namespace>::all(client.clone()), wc()),
    )
    .default_backoff()
    .touched_objects();
    let (service_accounts, sa_writer) = reflector::store::<ServiceAccount>();
    let sa_stream = reflector::reflector(
        sa_writer,
        watcher(Api::<ServiceAccount>::all(client.clone()), wc()),
    )
    .default_backoff()
    .touched_objects();
    let (secrets, secret_writer) = reflector::store::<Secret>();
    let secret_stream = reflector::reflector(
        secret_writer,
        watcher(
            Api::<Secret>::all(client.clone()),
            wc().fields(&format!("metadata.name={}", config.secret_name)),
        ),
    )
    .default_backoff()
    .touched_objects();
    let (policies, policy_writer) = reflector::store::<AcrCredentialPolicy>();
    let policy_stream = reflector::reflector(
        policy_writer,
        watcher(Api::<AcrCredentialPolicy>::all(client.clone()), owned()),
    )
    .default_backoff()
    .touched_objects();

    let controller = Controller::new(Api::<AcrRegistryBinding>::all(client.clone()), owned());
    let bindings = controller.store();
    let stores = Stores {
        bindings: bindings.clone(),
        policies: policies.clone(),
        namespaces: namespaces.clone(),
        service_accounts: service_accounts.clone(),
        secrets: secrets.clone(),
    };
    let reporter = Reporter {
        controller: context::CONTROLLER_NAME.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let tokens = Arc::new(TokenManager::new(fetcher, clock.clone()));
    let ctx = Arc::new(Context::new(
        client.clone(),
        config.clone(),
        stores,
        tokens,
        recorder,
        clock,
    ));

    let name = config.secret_name.clone();
    let m_ns = {
        let (b, n, s, name) = (
            bindings.clone(),
            namespaces.clone(),
            secrets.clone(),
            name.clone(),
        );
        move |ns: Namespace| bindings_for_namespace(&b, &n, &s, &name, &ns.name_any())
    };
    let m_sa = {
        let (b, n, s, name) = (
            bindings.clone(),
            namespaces.clone(),
            secrets.clone(),
            name.clone(),
        );
        move |sa: ServiceAccount| match sa.namespace() {
            Some(ns) => bindings_for_namespace(&b, &n, &s, &name, &ns),
            None => Vec::new(),
        }
    };
    let m_secret = {
        let (b, n, s, name) = (
            bindings.clone(),
            namespaces.clone(),
            secrets.clone(),
            name.clone(),
        );
        move |secret: Secret| {
            let mut refs = match secret.namespace() {
                Some(ns) => bindings_for_namespace(&b, &n, &s, &name, &ns),
                None => Vec::new(),
            };
            refs.extend(
                secret::owner_bindings(&secret)
                    .into_iter()
                    .map(|o| ObjectRef::new(&o)),
            );
            refs
        }
    };
    let m_policy = {
        let b = bindings.clone();
        move |p: AcrCredentialPolicy| {
            let policy = p.name_any();
            b.state()
                .iter()
                .filter(|x| x.spec.policy_name() == policy)
                .map(|x| ObjectRef::from_obj(&**x))
                .collect::<Vec<_>>()
        }
    };

    let binding_controller = controller
        .watches_stream(ns_stream, m_ns)
        .watches_stream(sa_stream, m_sa)
        .watches_stream(secret_stream, m_secret)
        .watches_stream(policy_stream, m_policy)
        // 200 ms debounce. kube-runtime restarts the debounce timer on every new trigger, so a
        // steady stream of namespace and ServiceAccount events postpones reconciles until the
        // stream pauses: the benchmark's new-namespace latency is up to the length of a burst
        // (p99 10 s for 10 new namespaces a second over 10 s). With 20 ms or none, that goes
        // away (p99 104 ms), but controller tests then intermittently saw a binding that was
        // never reconciled (after start and after a restart); until that is understood the
        // longer, well-tested debounce stays.
        .with_config(
            kube::runtime::controller::Config::default().debounce(Duration::from_millis(200)),
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(binding::reconcile, binding::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "binding controller event");
            }
        });
    let translator = {
        let (client, legacy, shutdown) = (
            client.clone(),
            config.legacy_configmap.clone(),
            shutdown.clone(),
        );
        async move {
            if let Some(legacy) = legacy {
                legacy_sync::run_translator(client, legacy, shutdown).await;
            }
        }
    };
    let policy_controller = Controller::new(Api::<AcrCredentialPolicy>::all(client), owned())
        .graceful_shutdown_on(shutdown)
        .run(policy::reconcile, policy::error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "policy controller event");
            }
        });
    tracing::info!(secret = %config.secret_name, "controller started");
    futures::join!(binding_controller, policy_controller, translator);
    tracing::info!("controller stopped");
}
