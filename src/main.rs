//! The `acr-credential-controller` binary: parses the command line and hands over to
//! [`acr_credential_controller::cli`].

use std::process::ExitCode;

use acr_credential_controller::cli::Cli;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.run(&mut std::io::stdout().lock(), &mut std::io::stderr().lock())
        .await
}
