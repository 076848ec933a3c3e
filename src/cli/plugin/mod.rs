//! The `kubectl acr` plugin: the same binary, run under the name `kubectl-acr` (a link or a copy,
//! which is how kubectl and krew find plugins), parses this command tree instead of the
//! controller's. `acr-credential-controller kubectl …` reaches the same tree without the link.
//!
//! - `status`: one line per binding, from the bindings' status (needs `list`/`get`).
//! - `renew`: requests a rotation with the [`crate::api::rotation`] annotation (needs `patch`).
//! - `explain`: why a namespace or ServiceAccount has, or has not, the pull Secret: per binding,
//!   each step decided by the reconciler's and the webhook's own functions (needs `get`/`list`,
//!   and the pull Secret's metadata).
//! - `output`: tables, relative times and the `-o` choice.
//!
//! It uses the user's kubeconfig (`--kubeconfig`, `--context`, `KUBECONFIG`), never the
//! controller's rights.

pub mod explain;
pub mod output;
pub mod renew;
pub mod status;

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use super::CliError;

/// The file name the binary answers to as a kubectl plugin (kubectl runs `kubectl-acr` for
/// `kubectl acr`); the krew manifest installs the binary under this name.
pub const PLUGIN_BIN: &str = "kubectl-acr";

/// The field manager of the plugin's writes (it shows in `managedFields` and audit logs).
pub const FIELD_MANAGER: &str = "kubectl-acr";

/// The bindings' resource, as RBAC and error messages name it.
pub const KIND_BINDINGS: &str = "acrregistrybindings.acrcredentials.io";
/// The policies' resource, as RBAC and error messages name it.
pub const KIND_POLICIES: &str = "acrcredentialpolicies.acrcredentials.io";

/// Whether the binary was started as the plugin: its file name, without a `.exe` or other
/// extension, is [`PLUGIN_BIN`].
pub fn invoked_as_plugin(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_stem()
        .is_some_and(|stem| stem == PLUGIN_BIN)
}

/// `kubectl acr`: see the status of AcrRegistryBindings, request token rotations and explain
/// why a namespace has or lacks the pull Secret, with your own kubeconfig.
#[derive(Debug, Parser)]
#[command(name = PLUGIN_BIN, bin_name = "kubectl acr", version, long_about = None)]
pub struct PluginCli {
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// The plugin's commands under `acr-credential-controller kubectl`.
#[derive(Debug, Args)]
pub struct PluginArgs {
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// The plugin's commands.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// One line per AcrRegistryBinding: Ready, registry, namespaces synced/selected, when the
    /// token expires and is renewed, and the first namespace that failed and why.
    Status(status::StatusArgs),
    /// Request a rotation now: a fresh registry token in every pull Secret of the bindings
    /// named, of every binding (--all), or of every binding using a policy (--policy).
    Renew(renew::RenewArgs),
    /// Why NAMESPACE (or NAMESPACE/SERVICEACCOUNT) has, or has not, the pull Secret: for every
    /// binding, each step the controller and its webhook decide, and the verdict.
    Explain(explain::ExplainArgs),
}

impl PluginCli {
    /// Runs the chosen command, writing results to `out` and diagnostics to `err`.
    pub async fn run(self, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
        self.verb.run(out, err).await
    }
}

impl Verb {
    /// Runs the command; errors go to `err` with the CLI's failure exit code.
    pub async fn run(self, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
        let now = jiff::Timestamp::now();
        let result = match &self {
            Verb::Status(args) => status::run(args, now, out, err).await,
            Verb::Renew(args) => renew::run(args, now, out, err).await,
            Verb::Explain(args) => explain::run(args, out, err).await,
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                // Nothing more useful can be done if stderr itself fails.
                let _ = writeln!(err, "error: {e}");
                ExitCode::from(super::EXIT_FAILURE)
            }
        }
    }
}

/// Writes `text` to `to`.
fn write_out(to: &mut dyn Write, text: &str) -> Result<(), CliError> {
    to.write_all(text.as_bytes())
        .map_err(|source| CliError::Io {
            path: "-".into(),
            source,
        })
}

/// A failed request as the user needs to read it: which right is missing (403), which object
/// does not exist (404), otherwise what the API server said.
fn kube_error(e: kube::Error, verb: &str, resource: &str, name: Option<&str>) -> CliError {
    let object = match name {
        Some(name) => format!("{resource} \"{name}\""),
        None => resource.to_owned(),
    };
    let message = match &e {
        kube::Error::Api(status) if status.code == 403 => format!(
            "cannot {verb} {object}: forbidden: your kubeconfig's user needs the \"{verb}\" \
             right on {resource} (the API server said: {})",
            status.message
        ),
        kube::Error::Api(status) if status.code == 404 && name.is_some() => {
            format!("{object} not found")
        }
        kube::Error::Api(status) if status.code == 404 => format!(
            "{resource}: the server does not know it (are the CRDs installed?): {}",
            status.message
        ),
        kube::Error::Api(status) => format!("cannot {verb} {object}: {}", status.message),
        other => format!("cannot {verb} {object}: {other}"),
    };
    CliError::Request(message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::cli::Cli;

    #[test]
    fn the_plugin_answers_to_its_file_name_on_any_platform() {
        for argv0 in [
            "kubectl-acr",
            "/home/me/.krew/bin/kubectl-acr",
            "kubectl-acr.exe",
            "./bin/kubectl-acr.exe",
        ] {
            assert!(invoked_as_plugin(OsStr::new(argv0)), "{argv0}");
        }
        for argv0 in [
            "acr-credential-controller",
            "/usr/bin/acr-credential-controller",
            "kubectl",
            "kubectl-acr-other",
        ] {
            assert!(!invoked_as_plugin(OsStr::new(argv0)), "{argv0}");
        }
    }

    #[test]
    fn both_entry_points_parse_the_same_commands() {
        let plugin = PluginCli::try_parse_from([
            "kubectl-acr",
            "status",
            "-o",
            "json",
            "--context",
            "prod",
            "-l",
            "team=web",
        ])
        .unwrap();
        let Verb::Status(status) = plugin.verb else {
            panic!("not status")
        };
        assert_eq!(status.output, output::Format::Json);
        assert_eq!(status.kube.context.as_deref(), Some("prod"));
        assert_eq!(status.selector.as_deref(), Some("team=web"));

        let cli = Cli::try_parse_from([
            "acr-credential-controller",
            "kubectl",
            "renew",
            "--policy",
            "default",
        ])
        .unwrap();
        let crate::cli::Command::Kubectl(PluginArgs {
            verb: Verb::Renew(renew),
        }) = cli.command
        else {
            panic!("not kubectl renew")
        };
        assert_eq!(renew.policy.as_deref(), Some("default"));
    }

    #[test]
    fn renew_takes_exactly_one_kind_of_target() {
        let parse = |args: &[&str]| {
            PluginCli::try_parse_from(std::iter::once("kubectl-acr").chain(args.iter().copied()))
        };
        assert!(parse(&["renew"]).is_err());
        assert!(parse(&["renew", "a", "--all"]).is_err());
        assert!(parse(&["renew", "--all", "--policy", "p"]).is_err());
        assert!(parse(&["renew", "a", "-l", "x=y"]).is_err());
        assert!(parse(&["renew", "-l", "x=y"]).is_err());
        assert!(parse(&["renew", "a", "b"]).is_ok());
        assert!(parse(&["renew", "--all", "-l", "x=y"]).is_ok());
        assert!(parse(&["renew", "--policy", "p"]).is_ok());
        assert!(parse(&["status", "a", "-l", "x=y"]).is_err());
        assert!(parse(&["status", "-o", "yaml"]).is_err());
    }

    #[test]
    fn missing_rights_and_objects_are_named() {
        let api = |code: u16, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: message.to_owned(),
                ..Default::default()
            }))
        };
        let e = kube_error(api(403, "no"), "patch", KIND_BINDINGS, Some("web"));
        let text = e.to_string();
        assert!(
            text.contains("\"patch\" right on acrregistrybindings.acrcredentials.io"),
            "{text}"
        );
        assert!(text.contains("the API server said: no"), "{text}");
        let e = kube_error(api(404, "gone"), "get", KIND_BINDINGS, Some("web"));
        assert_eq!(
            e.to_string(),
            "acrregistrybindings.acrcredentials.io \"web\" not found"
        );
    }
}
