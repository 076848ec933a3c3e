//! `acr-credential-controller run`: runs the controller until SIGINT/SIGTERM.
//!
//! Cluster and cloud flags are the shared groups of [`super::args`] (`--kubeconfig`, `--region`,
//! `--network`, `--cloud-endpoint`, ...). Logs go to stderr as text or JSON, filtered by
//! `RUST_LOG` (default `info`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::args::{CloudArgs, KubeArgs};
use super::{CliError, EXIT_FAILURE};
use crate::controller::legacy_sync::LegacyConfigMap;
use crate::controller::{self, ControllerConfig};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// Name of the pull Secret written into every selected namespace.
    #[arg(long, env = "ACR_SECRET_NAME", default_value = "acr-credentials")]
    pub secret_name: String,
    /// Longest time between two reconciles of a binding, in seconds.
    #[arg(long, env = "ACR_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,
    /// Longest time one reconcile may take, in seconds; past it the reconcile fails and is
    /// retried (nothing can hold a binding's slot for ever).
    #[arg(long, env = "ACR_RECONCILE_TIMEOUT_SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(5..))]
    pub reconcile_timeout_seconds: u64,
    /// Only handle bindings and policies with these labels (`key=value,...`), e.g. to run
    /// several controllers side by side.
    #[arg(long, env = "ACR_OBJECT_SELECTOR")]
    pub object_selector: Option<String>,
    /// Translate this legacy acr-configuration ConfigMap (NAMESPACE/NAME, normally
    /// kube-system/acr-configuration) into policies and bindings, live. Off when not given.
    #[arg(long, env = "ACR_LEGACY_CONFIGMAP", value_name = "NAMESPACE/NAME")]
    pub legacy_configmap: Option<String>,
    /// The legacy add-on's tokenMode, for the live translation (not part of the ConfigMap).
    /// When not given, auto is assumed and a warning Event says so.
    #[arg(long, env = "ACR_LEGACY_TOKEN_MODE", value_enum, value_name = "MODE")]
    pub legacy_token_mode: Option<super::migrate::TokenModeArg>,
    /// Log format.
    #[arg(long, env = "ACR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A subscriber set earlier (tests) wins; that is fine.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutdown signal received; finishing in-flight reconciles");
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown signal received; finishing in-flight reconciles");
}

/// Runs the controller until a shutdown signal.
pub async fn run(args: &RunArgs, err: &mut dyn Write) -> Result<ExitCode, CliError> {
    init_logging(args.log_format);
    let cloud = match args.cloud.cloud_config(&args.cloud.region) {
        Ok(c) => c,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            return Ok(ExitCode::from(EXIT_FAILURE));
        }
    };
    let legacy_configmap = match args.legacy_configmap.as_deref().map(LegacyConfigMap::parse) {
        None => None,
        Some(Ok(mut legacy)) => {
            legacy.token_mode = args
                .legacy_token_mode
                .map(super::migrate::TokenModeArg::mode);
            legacy.resync = Duration::from_secs(args.resync_seconds.max(10));
            Some(legacy)
        }
        Some(Err(message)) => {
            let _ = writeln!(err, "error: --legacy-configmap: {message}");
            return Ok(ExitCode::from(EXIT_FAILURE));
        }
    };
    let client = args.kube.client().await?;
    let config = ControllerConfig {
        legacy_configmap,
        secret_name: args.secret_name.clone(),
        default_region: args.cloud.region.clone(),
        managed_token_file: args.cloud.managed_token_file.clone(),
        resync: Duration::from_secs(args.resync_seconds.max(10)),
        object_selector: args.object_selector.clone(),
        reconcile_timeout: Duration::from_secs(args.reconcile_timeout_seconds),
        ..ControllerConfig::default()
    };
    match controller::run(client, config, cloud, shutdown_signal()).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            Ok(ExitCode::from(EXIT_FAILURE))
        }
    }
}
