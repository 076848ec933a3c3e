//! The command line. `main.rs` only parses and dispatches.
//!
//! - One file per subcommand, each with its clap `Args` struct and a `run` function: [`run`],
//!   [`doctor`], [`crd`], [`migrate`], [`validate`]; [`plugin`] holds the `kubectl acr`
//!   plugin's verbs (`kubectl` subcommand, or the binary run as `kubectl-acr`).
//! - Not subcommands: [`args`] (the cloud and cluster flag groups, shared by the subcommands
//!   that talk to the cloud or the cluster), [`webhook`] (`run`'s `--webhook-*` flag group) and
//!   [`input`] (reading manifest files and stdin).
//!
//! To add a subcommand (e.g. `run`, `doctor`): create `src/cli/<name>.rs` with
//! `pub struct <Name>Args` (clap `Args`) and `pub async fn run(args, out, err) -> Result<ExitCode, CliError>`
//! (or a sync one), then add one variant to [`Command`] and one arm to [`Cli::run`].

pub mod args;
pub mod crd;
pub mod doctor;
pub mod input;
pub mod migrate;
pub mod plugin;
pub mod run;
pub mod validate;
pub mod webhook;

use std::{io::Write, process::ExitCode};

use clap::{Parser, Subcommand};

/// Exit code for "the input has problems" (validation or translation errors).
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code for "could not do the job" (unreadable file, no cluster, ...).
pub const EXIT_FAILURE: u8 = 2;

/// Password-free image pulls from Alibaba Cloud Container Registry.
#[derive(Debug, Parser)]
#[command(name = "acr-credential-controller", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crd(crd::CrdArgs),
    /// Translate the legacy acr-configuration ConfigMap into AcrCredentialPolicy and
    /// AcrRegistryBinding manifests.
    Migrate(migrate::MigrateArgs),
    /// Check AcrRegistryBinding and AcrCredentialPolicy manifests offline.
    Validate(validate::ValidateArgs),
    /// Run the controller.
    Run(run::RunArgs),
    /// Walk one binding's credential chain against Alibaba Cloud (source, assume-role, registry
    /// token, domains) and say where it breaks. Never prints a secret.
    Doctor(doctor::DoctorArgs),
    /// The `kubectl acr` plugin's commands (status, renew), with your own kubeconfig. Installed
    /// as `kubectl-acr` (a link to this binary, or krew), the binary runs them directly.
    Kubectl(plugin::PluginArgs),
}

/// Errors of the command line layer.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file (or stdin) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file, or `-` for stdin.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A manifest is not the YAML expected.
    #[error("{path}: {message}")]
    Manifest {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The cluster could not be reached or asked.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The CRDs could not be rendered.
    #[error(transparent)]
    Crd(#[from] crate::api::crd::CrdError),
    /// The cluster refused or failed a request of the `kubectl acr` plugin; the message names
    /// the missing right or object.
    #[error("{0}")]
    Request(String),
    /// YAML output could not be rendered.
    #[error("cannot render YAML: {0}")]
    Render(#[from] serde_yaml::Error),
}

impl CliError {
    /// A stable CamelCase reason.
    pub fn reason(&self) -> &'static str {
        match self {
            CliError::Io { .. } => "IoError",
            CliError::Manifest { .. } => "InvalidManifest",
            CliError::Kube { .. } => "KubeError",
            CliError::Request(_) => "RequestFailed",
            CliError::Crd(e) => e.reason(),
            CliError::Render(_) => "RenderError",
        }
    }
}

impl Cli {
    /// Runs the chosen subcommand, writing results to `out` and diagnostics to `err`.
    pub async fn run(self, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
        let result = match self.command {
            Command::Crd(args) => crd::run(&args, out),
            Command::Migrate(args) => migrate::run(&args, out, err).await,
            Command::Validate(args) => validate::run(&args, out, err),
            Command::Run(args) => run::run(&args, err).await,
            Command::Doctor(args) => doctor::run(&args, out, err).await,
            Command::Kubectl(args) => return args.verb.run(out, err).await,
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                // Nothing more useful can be done if stderr itself fails.
                let _ = writeln!(err, "error: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}
