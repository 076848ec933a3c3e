//! The `acr-credential-controller` binary: parses the command line and hands over to
//! [`acr_credential_controller::cli`]. Started as `kubectl-acr`, it is the `kubectl acr` plugin.

use std::process::ExitCode;

use acr_credential_controller::cli::Cli;
use acr_credential_controller::cli::plugin::{PluginCli, invoked_as_plugin};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args_os()
        .next()
        .is_some_and(|argv0| invoked_as_plugin(&argv0))
    {
        return PluginCli::parse()
            .run(&mut std::io::stdout(), &mut std::io::stderr())
            .await;
    }
    let cli = Cli::parse();
    // Unlocked handles: `run` logs to stderr from worker threads while this future is pending,
    // and a held StderrLock would block them forever.
    cli.run(&mut std::io::stdout(), &mut std::io::stderr())
        .await
}
