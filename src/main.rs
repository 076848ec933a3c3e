//! The `acr-credential-controller` binary: parses the command line and hands over to
//! [`acr_credential_controller::cli`].

use std::process::ExitCode;

use acr_credential_controller::cli::Cli;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Unlocked handles: `run` logs to stderr from worker threads while this future is pending,
    // and a held StderrLock would block them forever.
    cli.run(&mut std::io::stdout(), &mut std::io::stderr())
        .await
}
