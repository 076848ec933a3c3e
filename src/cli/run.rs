//! `acr-credential-controller run`: runs the controller until SIGINT/SIGTERM.
//!
//! Connects with `--kubeconfig` (or `KUBECONFIG`), else in-cluster configuration, else
//! `~/.kube/config`. Cloud endpoints derive from `--region` and `--network`; `--cloud-endpoint`
//! points every service at one base URL (the fake cloud), or `--sts-endpoint`, `--cr-endpoint`,
//! `--metadata-endpoint` one at a time. Logs go to stderr as text or JSON, filtered by `RUST_LOG`
//! (default `info`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{CliError, EXIT_FAILURE};
use crate::cloud::endpoints::{Endpoints, Network, parse_base};
use crate::cloud::http::HttpConfig;
use crate::cloud::{CloudConfig, SignatureStyle};
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

/// Which network reaches the Alibaba Cloud APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// Internet endpoints.
    Public,
    /// VPC endpoints.
    Vpc,
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kubeconfig file; without it: in-cluster configuration, then ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Name of the pull Secret written into every selected namespace.
    #[arg(long, env = "ACR_SECRET_NAME", default_value = "acr-credentials")]
    pub secret_name: String,
    /// Region of registries whose binding names none, and of regional endpoints.
    #[arg(long, env = "ACR_REGION", default_value = "cn-hangzhou")]
    pub region: String,
    /// Network used to reach Alibaba Cloud APIs.
    #[arg(long, env = "ACR_NETWORK", value_enum, default_value = "public")]
    pub network: NetworkArg,
    /// One base URL for every cloud service (e.g. the fake cloud: http://127.0.0.1:PORT).
    #[arg(long, env = "ACR_CLOUD_ENDPOINT")]
    pub cloud_endpoint: Option<String>,
    /// Base URL of STS.
    #[arg(long, env = "ACR_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,
    /// Base URL of the Container Registry API.
    #[arg(long, env = "ACR_CR_ENDPOINT")]
    pub cr_endpoint: Option<String>,
    /// Base URL of the ECS metadata service.
    #[arg(long, env = "ACR_METADATA_ENDPOINT")]
    pub metadata_endpoint: Option<String>,
    /// Sign RPC calls with ACS3-HMAC-SHA256 instead of V2.
    #[arg(long, env = "ACR_SIGNATURE_V3")]
    pub signature_v3: bool,
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

/// The cloud configuration the flags describe.
pub fn cloud_config(args: &RunArgs) -> Result<CloudConfig, String> {
    let network = match args.network {
        NetworkArg::Public => Network::Public,
        NetworkArg::Vpc => Network::Vpc,
    };
    let mut endpoints = Endpoints::new(args.region.clone(), network);
    let parse = |flag: &str, v: &str| parse_base(v).map_err(|e| format!("--{flag}: {e}"));
    if let Some(all) = &args.cloud_endpoint {
        endpoints = endpoints.with_all_overridden(&parse("cloud-endpoint", all)?);
    }
    if let Some(v) = &args.sts_endpoint {
        endpoints.overrides.sts = Some(parse("sts-endpoint", v)?);
    }
    if let Some(v) = &args.cr_endpoint {
        endpoints.overrides.cr = Some(parse("cr-endpoint", v)?);
    }
    if let Some(v) = &args.metadata_endpoint {
        endpoints.overrides.metadata = Some(parse("metadata-endpoint", v)?);
    }
    Ok(CloudConfig {
        endpoints,
        http: HttpConfig::default(),
        signature: if args.signature_v3 {
            SignatureStyle::V3
        } else {
            SignatureStyle::V2
        },
    })
}

async fn kube_client(args: &RunArgs) -> Result<kube::Client, CliError> {
    let kube_err = |context: String| move |source| CliError::Kube { context, source };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| CliError::Manifest {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| CliError::Manifest {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| CliError::Manifest {
                path: "(in-cluster or ~/.kube/config)".into(),
                message: e.to_string(),
            })?,
    };
    kube::Client::try_from(config).map_err(kube_err("building the Kubernetes client".into()))
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
    let cloud = match cloud_config(args) {
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
    let client = kube_client(args).await?;
    let config = ControllerConfig {
        legacy_configmap,
        secret_name: args.secret_name.clone(),
        default_region: args.region.clone(),
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
