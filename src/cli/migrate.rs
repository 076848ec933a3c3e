//! `acr-credential-controller migrate`: translate the legacy ConfigMap into CRs.
//!
//! The ConfigMap and token-mode flags are spelled as `run`'s live translation spells them
//! (`--legacy-configmap`, `--legacy-token-mode`); the cluster flags are the shared
//! [`KubeArgs`] (`--kubeconfig`, `--context`).

use std::{io::Write, process::ExitCode};

use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::args::KubeArgs;
use super::{CliError, EXIT_PROBLEMS, input};
use crate::legacy::{self, TokenMode, TranslateOptions};

/// The legacy add-on's `tokenMode`. Values are the kebab-case of its words (`worker-role` for
/// its and the CRD's `workerRole`, which is accepted too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TokenModeArg {
    /// The ACK managed add-on role (tokenMode auto; credential source managedRole).
    Auto,
    /// The cluster's worker RAM role (tokenMode workerRole; credential source workerRole).
    #[value(alias = "workerRole")]
    WorkerRole,
}

impl TokenModeArg {
    /// The translation's token mode.
    pub fn mode(self) -> TokenMode {
        match self {
            TokenModeArg::Auto => TokenMode::Auto,
            TokenModeArg::WorkerRole => TokenMode::WorkerRole,
        }
    }
}

/// Options of `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The ConfigMap manifest to translate; `-` reads stdin.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE",
        required_unless_present = "from_cluster",
        conflicts_with = "from_cluster"
    )]
    pub file: Option<String>,

    /// Read the ConfigMap from the cluster (`--kubeconfig`, `--context`; default: the current
    /// kubeconfig context, or in-cluster).
    #[arg(long)]
    pub from_cluster: bool,

    /// With --from-cluster: the ConfigMap to read, as NAMESPACE/NAME.
    // `--configmap`: the old spelling, still accepted.
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        default_value = "kube-system/acr-configuration",
        requires = "from_cluster",
        alias = "configmap"
    )]
    pub legacy_configmap: String,

    /// How the legacy add-on obtained credentials (its tokenMode install option). When not
    /// given, auto is assumed and a warning says so.
    // `--token-mode`: the old spelling, still accepted.
    #[arg(long, value_enum, value_name = "MODE", alias = "token-mode")]
    pub legacy_token_mode: Option<TokenModeArg>,

    #[command(flatten)]
    pub kube: KubeArgs,

    /// Only check the ConfigMap: print warnings and errors, no manifests.
    #[arg(long)]
    pub check: bool,
}

/// Translates and prints. Exit 1 when the ConfigMap has errors.
pub async fn run(
    args: &MigrateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let (source, cm) = match &args.file {
        Some(path) => (path.clone(), configmap_from_file(path)?),
        None => (
            args.legacy_configmap.clone(),
            configmap_from_cluster(&args.kube, &args.legacy_configmap).await?,
        ),
    };
    let options = TranslateOptions {
        token_mode: args.legacy_token_mode.map(TokenModeArg::mode),
        // Objects for Git: never marked as translated, so the controller never prunes them.
        label_as_translated: false,
    };
    let stderr_io = |source| CliError::Io {
        path: "stderr".to_owned(),
        source,
    };
    match legacy::translate_configmap(&cm, &options) {
        Err(errors) => {
            for e in &errors.0 {
                writeln!(err, "error: {source}: {e}").map_err(stderr_io)?;
            }
            writeln!(err, "{} error(s); nothing was translated", errors.0.len())
                .map_err(stderr_io)?;
            Ok(ExitCode::from(EXIT_PROBLEMS))
        }
        Ok(t) => {
            for w in &t.warnings {
                writeln!(err, "warning: {w}").map_err(stderr_io)?;
            }
            if args.check {
                writeln!(
                    err,
                    "{source}: translates to {} AcrCredentialPolicy and {} AcrRegistryBinding object(s)",
                    t.policies.len(),
                    t.bindings.len()
                )
                .map_err(stderr_io)?;
            } else {
                out.write_all(legacy::render_yaml(&t)?.as_bytes())
                    .map_err(|source| CliError::Io {
                        path: "stdout".to_owned(),
                        source,
                    })?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn configmap_from_file(path: &str) -> Result<ConfigMap, CliError> {
    let text = input::read(path)?;
    let docs = input::documents(path, &text)?;
    let manifest = |message: String| CliError::Manifest {
        path: path.to_owned(),
        message,
    };
    let [(_, doc)] = docs.as_slice() else {
        return Err(manifest(format!(
            "expected one ConfigMap manifest, found {} documents",
            docs.len()
        )));
    };
    if doc.get("kind").and_then(|k| k.as_str()) != Some("ConfigMap") {
        return Err(manifest(
            "expected a ConfigMap manifest (kind: ConfigMap)".to_owned(),
        ));
    }
    serde_json::from_value(doc.clone()).map_err(|e| manifest(format!("not a valid ConfigMap: {e}")))
}

async fn configmap_from_cluster(kube: &KubeArgs, reference: &str) -> Result<ConfigMap, CliError> {
    let Some((namespace, name)) = reference.split_once('/') else {
        return Err(CliError::Manifest {
            path: reference.to_owned(),
            message: "--legacy-configmap takes NAMESPACE/NAME".to_owned(),
        });
    };
    let client = kube.client().await?;
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    api.get(name).await.map_err(|source| CliError::Kube {
        context: format!("cannot read ConfigMap {namespace}/{name}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use clap::Parser;

    use super::TokenModeArg;
    use crate::cli::{Cli, Command};

    fn parse(words: &[&str]) -> super::MigrateArgs {
        let cli = Cli::try_parse_from(["acr-credential-controller", "migrate"].iter().chain(words))
            .unwrap();
        let Command::Migrate(args) = cli.command else {
            panic!("not migrate")
        };
        args
    }

    #[test]
    fn flags_are_spelled_as_runs_and_the_old_spellings_stay_accepted() {
        for words in [
            [
                "--from-cluster",
                "--legacy-configmap",
                "a/b",
                "--legacy-token-mode",
                "worker-role",
            ],
            [
                "--from-cluster",
                "--configmap",
                "a/b",
                "--token-mode",
                "workerRole",
            ],
        ] {
            let args = parse(&words);
            assert_eq!(args.legacy_configmap, "a/b");
            assert_eq!(args.legacy_token_mode, Some(TokenModeArg::WorkerRole));
        }
    }

    #[test]
    fn from_cluster_takes_the_shared_kubeconfig_flags() {
        let args = parse(&["--from-cluster", "--kubeconfig", "/k", "--context", "c"]);
        assert_eq!(
            args.kube.kubeconfig.as_deref(),
            Some(std::path::Path::new("/k"))
        );
        assert_eq!(args.kube.context.as_deref(), Some("c"));
    }
}
