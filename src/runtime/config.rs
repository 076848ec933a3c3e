//! The controller's settings ([`ControllerConfig`]), with every default written once: the
//! `run` flags take theirs from here, and the tests start from [`ControllerConfig::default`].
//! The reconcilers get their part ([`ReconcileConfig`]), the webhook and resolving theirs
//! ([`ResolveConfig`]).

use std::time::Duration;

use crate::cluster::budget::BudgetConfig;
use crate::cluster::{CONTROLLER_NAME, Leadership, ReconcileConfig};
use crate::model::ResolveConfig;
use crate::translator::LegacyConfigMap;
use crate::webhook::WebhookConfig;

/// Default name of the pull Secret in every namespace.
pub const DEFAULT_SECRET_NAME: &str = "acr-credentials";
/// Default longest time between two reconciles of a binding, in seconds.
pub const DEFAULT_RESYNC_SECONDS: u64 = 300;
/// The shortest resync period `run` accepts, in seconds (shorter ones are raised to it).
pub const MIN_RESYNC_SECONDS: u64 = 10;
/// Default longest time one reconcile may take, in seconds.
pub const DEFAULT_RECONCILE_TIMEOUT_SECONDS: u64 = 120;
/// Default staleness of the election loop's last pass before `/livez` fails, in seconds.
pub const DEFAULT_LIVENESS_MAX_AGE_SECONDS: u64 = 10;

/// Settings of the controller (from flags).
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Name of the pull Secret in every namespace (default [`DEFAULT_SECRET_NAME`]).
    pub secret_name: String,
    /// Region of registries whose binding names none.
    pub default_region: String,
    /// Where the ACK add-on token and the projected RRSA token are (managedRole and rrsa
    /// sources).
    pub token_files: crate::cloud::credentials::TokenFiles,
    /// Field manager for server-side apply.
    pub field_manager: String,
    /// Longest time between two reconciles of a binding, whatever happens.
    pub resync: Duration,
    /// Optional label selector (`key=value,...`): only bindings and policies matching it are
    /// handled. Lets several controllers share a cluster (shards, parallel tests).
    pub object_selector: Option<String>,
    /// Longest time one reconcile may take (waiting for the caches included); past it, the
    /// reconcile fails and is retried, so nothing can hold an object's slot for ever.
    pub reconcile_timeout: Duration,
    /// The legacy ConfigMap to translate live (`run --legacy-configmap`); `None`: off.
    pub legacy_configmap: Option<LegacyConfigMap>,
    /// Whether this replica leads and may write ([`Leadership::always`] without election).
    pub leadership: Leadership,
    /// This replica's name: the Lease holder, and the reporting instance of its Events; `None`:
    /// the controller's name.
    pub replica_name: Option<String>,
    /// Where to serve `/readyz`, `/livez` and `/metrics`; none without.
    pub probe_address: Option<std::net::SocketAddr>,
    /// How stale the election loop's last pass may be before `/livez` fails.
    pub liveness_max_age: Duration,
    /// The ServiceAccount admission webhook; `None`: off.
    pub webhook: Option<WebhookConfig>,
    /// The write budget (`--write-budget`, `--write-burst`).
    pub write_budget: BudgetConfig,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        let resolve = ResolveConfig::default();
        Self {
            secret_name: DEFAULT_SECRET_NAME.into(),
            default_region: resolve.default_region,
            token_files: resolve.token_files,
            field_manager: CONTROLLER_NAME.into(),
            resync: Duration::from_secs(DEFAULT_RESYNC_SECONDS),
            object_selector: None,
            reconcile_timeout: Duration::from_secs(DEFAULT_RECONCILE_TIMEOUT_SECONDS),
            legacy_configmap: None,
            leadership: Leadership::always(),
            replica_name: None,
            probe_address: None,
            liveness_max_age: Duration::from_secs(DEFAULT_LIVENESS_MAX_AGE_SECONDS),
            webhook: None,
            write_budget: BudgetConfig::default(),
        }
    }
}

impl ControllerConfig {
    /// What resolving a binding needs.
    pub fn resolve(&self) -> ResolveConfig {
        ResolveConfig {
            default_region: self.default_region.clone(),
            token_files: self.token_files.clone(),
        }
    }
}

impl From<ControllerConfig> for ReconcileConfig {
    fn from(config: ControllerConfig) -> Self {
        ReconcileConfig {
            resolve: config.resolve(),
            secret_name: config.secret_name,
            field_manager: config.field_manager,
            resync: config.resync,
            reconcile_timeout: config.reconcile_timeout,
            leadership: config.leadership,
            write_budget: config.write_budget,
        }
    }
}
