//! `acr-credential-controller run`: runs the controller until SIGINT/SIGTERM.
//!
//! Cluster and cloud flags are the shared groups of [`super::args`] (`--kubeconfig`, `--region`,
//! `--network`, `--cloud-endpoint`, ...). Logs go to stderr as text or JSON, filtered by
//! `RUST_LOG` (default `info`). Every line carries the spans it was logged in (the task: a
//! watch, the Lease loop, the webhook, the translator; the reconcile: binding or policy name and
//! generation; the namespace being converged): as a `task{..}:reconcile{..}:` prefix in text,
//! as `span` (the innermost) and `spans` (outermost first) objects in JSON.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::args::{CloudArgs, KubeArgs};
use super::{CliError, EXIT_FAILURE};
use crate::cluster::budget::{BudgetConfig, DEFAULT_BURST, DEFAULT_WRITES_PER_SECOND};
use crate::runtime::config::{
    DEFAULT_RECONCILE_TIMEOUT_SECONDS, DEFAULT_RESYNC_SECONDS, DEFAULT_SECRET_NAME,
    MIN_RESYNC_SECONDS,
};
use crate::runtime::leader::{LeaseConfig, LeaseTimings};
use crate::runtime::{self, ControllerConfig, RuntimeError};
use crate::translator::LegacyConfigMap;

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
    #[arg(long, env = "ACR_SECRET_NAME", default_value = DEFAULT_SECRET_NAME)]
    pub secret_name: String,
    /// Longest time between two reconciles of a binding, in seconds (at least 10, as the
    /// chart's schema says).
    #[arg(long, env = "ACR_RESYNC_SECONDS", default_value_t = DEFAULT_RESYNC_SECONDS, value_parser = clap::value_parser!(u64).range(MIN_RESYNC_SECONDS..))]
    pub resync_seconds: u64,
    /// Longest time one reconcile may take, in seconds; past it the reconcile fails and is
    /// retried (nothing can hold a binding's slot for ever).
    #[arg(long, env = "ACR_RECONCILE_TIMEOUT_SECONDS", default_value_t = DEFAULT_RECONCILE_TIMEOUT_SECONDS, value_parser = clap::value_parser!(u64).range(5..))]
    pub reconcile_timeout_seconds: u64,
    /// Only handle bindings and policies with these labels (`key=value,...`), e.g. to run
    /// several controllers side by side.
    #[arg(long, env = "ACR_OBJECT_SELECTOR")]
    pub object_selector: Option<String>,
    /// Translate this legacy acr-configuration ConfigMap (NAMESPACE/NAME, normally
    /// kube-system/acr-configuration) into policies and bindings, live. Off when not given.
    /// `migrate` spells it the same.
    #[arg(long, env = "ACR_LEGACY_CONFIGMAP", value_name = "NAMESPACE/NAME")]
    pub legacy_configmap: Option<String>,
    /// The legacy add-on's tokenMode, for the live translation (not part of the ConfigMap).
    /// When not given, auto is assumed and a warning Event says so. `migrate` spells it the same.
    #[arg(long, env = "ACR_LEGACY_TOKEN_MODE", value_enum, value_name = "MODE")]
    pub legacy_token_mode: Option<super::migrate::TokenModeArg>,
    /// Log format.
    #[arg(long, env = "ACR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Elect a leader on a Lease: only the leader writes; every replica keeps warm caches.
    /// Required with more than one replica.
    #[arg(long, env = "ACR_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(
        long,
        env = "ACR_LEASE_NAME",
        default_value = "acr-credential-controller"
    )]
    pub lease_name: String,
    /// Namespace of the Lease; default: the client's namespace (in-cluster, the Pod's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's name: the Lease's holder, the reporting instance of its Events and the
    /// suffix of its User-Agent; default: the host name.
    // `--identity`: the old spelling, still accepted.
    #[arg(long, env = "POD_NAME", value_name = "NAME", alias = "identity")]
    pub replica_name: Option<String>,
    /// Seconds a Lease holds after its last renewal.
    #[arg(long, env = "ACR_LEASE_DURATION_SECONDS", default_value_t = 15.0)]
    pub lease_duration_seconds: f64,
    /// Seconds a leader keeps leading without a successful renewal.
    #[arg(long, env = "ACR_RENEW_DEADLINE_SECONDS", default_value_t = 10.0)]
    pub renew_deadline_seconds: f64,
    /// Seconds between two attempts to acquire or renew the Lease.
    #[arg(long, env = "ACR_RETRY_PERIOD_SECONDS", default_value_t = 2.0)]
    pub retry_period_seconds: f64,
    /// Writes per second the controller allows itself (Secrets, ServiceAccounts, status), as
    /// a token bucket: urgent writes (new namespaces, repairs, first writes, status) go at once
    /// and take their share; renewal rewrites are spread over the renewal window within what
    /// is left, and go over budget only rather than let a token near expiry. 0: unlimited
    /// (every renewal rewrite at once).
    #[arg(long, env = "ACR_WRITE_BUDGET", value_name = "WRITES_PER_SECOND", default_value_t = DEFAULT_WRITES_PER_SECOND, value_parser = write_budget)]
    pub write_budget: f64,
    /// Writes that may go at once after a quiet spell (the token bucket's size).
    #[arg(long, env = "ACR_WRITE_BURST", default_value_t = DEFAULT_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    pub write_burst: u32,
    /// Address of the plain-HTTP server for /readyz, /livez and /metrics.
    #[arg(long, env = "ACR_PROBE_ADDRESS", default_value = "0.0.0.0:8080")]
    pub probe_address: std::net::SocketAddr,
    #[command(flatten)]
    pub webhook: Box<super::webhook::WebhookArgs>,
}

/// `--write-budget`: a finite number of writes per second, 0 or more.
fn write_budget(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "not a number of writes per second (0 or more): {value}"
        )),
    }
}

/// The election timings the flags describe, validated.
pub fn lease_timings(args: &RunArgs) -> Result<LeaseTimings, String> {
    let secs = |flag: &str, v: f64| {
        Duration::try_from_secs_f64(v).map_err(|_| format!("--{flag}: not a duration: {v}"))
    };
    let timings = LeaseTimings {
        lease_duration: secs("lease-duration-seconds", args.lease_duration_seconds)?,
        renew_deadline: secs("renew-deadline-seconds", args.renew_deadline_seconds)?,
        retry_period: secs("retry-period-seconds", args.retry_period_seconds)?,
    };
    timings.validate().map_err(|e| {
        format!(
            "--lease-duration-seconds {}, --renew-deadline-seconds {}, --retry-period-seconds {}: {e}",
            args.lease_duration_seconds, args.renew_deadline_seconds, args.retry_period_seconds
        )
    })?;
    Ok(timings)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("acr-credential-controller-{}", std::process::id()))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A subscriber set earlier (tests) wins; that is fine.
    let _ = tracing_subscriber::util::SubscriberInitExt::try_init(subscriber(
        format,
        filter,
        std::io::stderr,
        ansi,
    ));
}

/// The subscriber `run` logs through: lines in `format`, filtered by `filter`, to `writer`.
/// JSON lines carry the innermost span (`span`) and every span from the outermost in (`spans`),
/// each with its fields; text lines carry them as a `name{fields}:` prefix.
fn subscriber<W>(
    format: LogFormat,
    filter: tracing_subscriber::EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        ),
    }
}

async fn kube_config(args: &RunArgs, replica: &str) -> Result<kube::Config, CliError> {
    let mut config = args.kube.config().await?;
    // The API server's audit log names the replica behind every write.
    let agent = format!(
        "acr-credential-controller/{} ({replica})",
        env!("CARGO_PKG_VERSION")
    );
    if let Ok(value) = axum::http::HeaderValue::from_str(&agent) {
        config.headers.push((axum::http::header::USER_AGENT, value));
    }
    Ok(config)
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

/// What `run`'s flags ask for, as the runtime takes it: the controller's settings and, with
/// `--leader-elect`, the Lease to hold. `namespace` is the controller's own (the Lease's, the
/// webhook certificate's); `replica` this replica's name. Pure: every flag check is here (the
/// ranges are clap's, at parse time).
pub fn runtime_config(
    args: &RunArgs,
    namespace: &str,
    replica: &str,
) -> Result<(ControllerConfig, Option<LeaseConfig>), String> {
    let resync = Duration::from_secs(args.resync_seconds);
    let legacy_configmap = match args.legacy_configmap.as_deref().map(LegacyConfigMap::parse) {
        None => None,
        Some(Ok(mut legacy)) => {
            legacy.token_mode = args
                .legacy_token_mode
                .map(super::migrate::TokenModeArg::mode);
            legacy.resync = resync;
            Some(legacy)
        }
        Some(Err(message)) => return Err(format!("--legacy-configmap: {message}")),
    };
    let timings = args.leader_elect.then(|| lease_timings(args)).transpose()?;
    let webhook = args.webhook.config(namespace, &args.secret_name)?;
    let config = ControllerConfig {
        legacy_configmap,
        secret_name: args.secret_name.clone(),
        default_region: args.cloud.region.clone(),
        token_files: args.cloud.token_files(),
        resync,
        object_selector: args.object_selector.clone(),
        reconcile_timeout: Duration::from_secs(args.reconcile_timeout_seconds),
        replica_name: Some(replica.to_owned()),
        probe_address: Some(args.probe_address),
        webhook,
        liveness_max_age: runtime::liveness_max_age(timings.as_ref()),
        write_budget: BudgetConfig {
            per_second: args.write_budget,
            burst: args.write_burst,
        },
        ..ControllerConfig::default()
    };
    let lease = timings.map(|timings| LeaseConfig {
        namespace: namespace.to_owned(),
        name: args.lease_name.clone(),
        holder: replica.to_owned(),
        timings,
    });
    Ok((config, lease))
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
    let replica = args.replica_name.clone().unwrap_or_else(host_name);
    let kube_config = kube_config(args, &replica).await?;
    // The controller's own namespace: the Lease's, the webhook certificate's, and one the
    // webhook never mutates.
    let namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| kube_config.default_namespace.clone());
    let (config, lease) = match runtime_config(args, &namespace, &replica) {
        Ok(c) => c,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            return Ok(ExitCode::from(EXIT_FAILURE));
        }
    };
    if lease.is_none() {
        tracing::info!(%replica, "leader election off: this replica writes");
    }
    match runtime::run_replica(kube_config, lease, config, cloud, shutdown_signal()).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(RuntimeError::Kube(source)) => Err(CliError::Kube {
            context: "building the Kubernetes client".into(),
            source,
        }),
        Err(e) => {
            if matches!(e, RuntimeError::LeadershipLost) {
                tracing::error!(%replica, "leadership lost; exiting");
            }
            let _ = writeln!(err, "error: {e}");
            Ok(ExitCode::from(EXIT_FAILURE))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn run_args(flags: &[&str]) -> super::RunArgs {
        let cli = Cli::try_parse_from(
            ["acr-credential-controller", "run", "--leader-elect"]
                .iter()
                .chain(flags),
        )
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        run
    }

    #[test]
    fn lease_timings_that_let_two_replicas_lead_are_refused_naming_the_flags() {
        let args = run_args(&[
            "--lease-duration-seconds",
            "11",
            "--renew-deadline-seconds",
            "10",
            "--retry-period-seconds",
            "2",
        ]);
        let message = super::lease_timings(&args).expect_err("11/10/2 is refused");
        assert!(
            message.starts_with(
                "--lease-duration-seconds 11, --renew-deadline-seconds 10, --retry-period-seconds 2: "
            ),
            "{message}"
        );
        assert!(message.contains("at least"), "{message}");
        assert!(super::lease_timings(&run_args(&[])).is_ok(), "the defaults");
    }

    fn parse(words: &[&str]) -> super::RunArgs {
        let cli =
            Cli::try_parse_from(["acr-credential-controller", "run"].iter().chain(words)).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        run
    }

    #[test]
    fn without_flags_the_settings_are_the_runtime_defaults_and_no_lease_is_held() {
        use crate::runtime::ControllerConfig;
        let (config, lease) = super::runtime_config(&parse(&[]), "acr-system", "replica-0")
            .expect("the defaults are valid");
        let defaults = ControllerConfig::default();
        assert!(lease.is_none(), "no election without --leader-elect");
        assert_eq!(config.secret_name, defaults.secret_name);
        assert_eq!(config.default_region, defaults.default_region);
        assert_eq!(config.resync, defaults.resync);
        assert_eq!(config.reconcile_timeout, defaults.reconcile_timeout);
        assert_eq!(config.liveness_max_age, defaults.liveness_max_age);
        assert_eq!(config.replica_name.as_deref(), Some("replica-0"));
        assert_eq!(config.probe_address, Some("0.0.0.0:8080".parse().unwrap()));
        assert!(config.webhook.is_none() && config.legacy_configmap.is_none());
        assert_eq!(config.write_budget, defaults.write_budget);
    }

    #[test]
    fn the_write_budget_flags_become_the_budget_and_nonsense_is_refused() {
        let (config, _) = super::runtime_config(
            &parse(&["--write-budget", "7.5", "--write-burst", "3"]),
            "acr-system",
            "r",
        )
        .unwrap();
        assert_eq!(config.write_budget.per_second, 7.5);
        assert_eq!(config.write_budget.burst, 3);
        let (unlimited, _) =
            super::runtime_config(&parse(&["--write-budget", "0"]), "acr-system", "r").unwrap();
        assert!(!unlimited.write_budget.limited());
        for bad in [
            ["--write-budget", "-1"],
            ["--write-budget", "inf"],
            ["--write-burst", "0"],
        ] {
            let parsed =
                Cli::try_parse_from(["acr-credential-controller", "run"].iter().chain(&bad));
            assert!(parsed.is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn flags_become_settings_and_the_lease_of_this_replica() {
        let args = run_args(&[
            "--secret-name",
            "pull",
            "--resync-seconds",
            "10",
            "--renew-deadline-seconds",
            "9",
            "--legacy-configmap",
            "kube-system/acr-configuration",
            "--lease-name",
            "l",
        ]);
        let (config, lease) = super::runtime_config(&args, "acr-system", "replica-1").unwrap();
        assert_eq!(config.secret_name, "pull");
        // The translator resyncs with the bindings.
        assert_eq!(config.resync, std::time::Duration::from_secs(10));
        let legacy = config.legacy_configmap.expect("translated live");
        assert_eq!(legacy.resync, config.resync);
        assert_eq!(config.liveness_max_age, std::time::Duration::from_secs(9));
        let lease = lease.expect("--leader-elect holds a Lease");
        assert_eq!(
            (
                lease.namespace.as_str(),
                lease.name.as_str(),
                lease.holder.as_str()
            ),
            ("acr-system", "l", "replica-1")
        );
    }

    /// Lines logged by `subscriber` in `format` inside a reconcile and a namespace span.
    fn logged_in_spans(format: super::LogFormat) -> String {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = buffer.clone();
        let writer = move || Sink(sink.clone());
        let filter = tracing_subscriber::EnvFilter::new("debug");
        let subscriber = super::subscriber(format, filter, writer, false);
        tracing::subscriber::with_default(subscriber, || {
            let reconcile = tracing::info_span!("reconcile", binding = "b1", generation = 3);
            let _r = reconcile.enter();
            let namespace = tracing::info_span!("namespace", namespace = "team-a");
            let _n = namespace.enter();
            tracing::info!(contributors = 1, "pull Secret written");
        });
        let bytes = buffer.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_every_span_with_its_fields_and_text_lines_name_them() {
        let json = logged_in_spans(super::LogFormat::Json);
        let line: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON line");
        assert_eq!(line["fields"]["message"], "pull Secret written", "{line}");
        assert_eq!(
            line["span"],
            serde_json::json!({"name": "namespace", "namespace": "team-a"}),
            "{line}"
        );
        assert_eq!(
            line["spans"],
            serde_json::json!([
                {"name": "reconcile", "binding": "b1", "generation": 3},
                {"name": "namespace", "namespace": "team-a"},
            ]),
            "{line}"
        );
        let text = logged_in_spans(super::LogFormat::Text);
        assert!(
            text.contains(
                "reconcile{binding=\"b1\" generation=3}:namespace{namespace=\"team-a\"}: "
            ) && text.contains("pull Secret written contributors=1"),
            "{text}"
        );
    }

    #[test]
    fn a_resync_below_the_minimum_is_a_range_error_not_a_silent_raise() {
        let e = Cli::try_parse_from(["acr-credential-controller", "run", "--resync-seconds", "9"])
            .expect_err("9 is below the minimum");
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(e.to_string().contains("10.."), "{e}");
        assert_eq!(parse(&["--resync-seconds", "10"]).resync_seconds, 10);
    }

    #[test]
    fn old_spellings_stay_accepted() {
        let args = parse(&["--identity", "replica-2"]);
        assert_eq!(args.replica_name.as_deref(), Some("replica-2"));
    }

    #[test]
    fn a_bad_legacy_configmap_reference_is_refused_naming_the_flag() {
        let args = parse(&["--legacy-configmap", "acr-configuration"]);
        let message = super::runtime_config(&args, "acr-system", "r").unwrap_err();
        assert!(message.starts_with("--legacy-configmap: "), "{message}");
    }
}
