//! `acr-credential-provider`: the kubelet image credential provider for Alibaba Cloud
//! Container Registry (see `acr_credential_controller::provider`).
//!
//! The kubelet starts it with the arguments of its `CredentialProviderConfig` entry
//! (`--config <file>`), writes the request to stdin and reads the response from stdout. Errors
//! go to stderr, one line, with exit status 1; logs go to stderr too (`RUST_LOG`, default warn).

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "acr-credential-provider",
    version,
    about = "Kubelet image credential provider for Alibaba Cloud Container Registry"
)]
struct Args {
    /// The plugin's configuration file (kind AcrCredentialProviderConfig).
    #[arg(long, env = "ACR_CREDENTIAL_PROVIDER_CONFIG")]
    config: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("acr-credential-provider: cannot read the request from stdin: {e}");
        return ExitCode::FAILURE;
    }
    match acr_credential_controller::provider::run(&args.config, &input).await {
        Ok(json) => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{json}").and_then(|()| out.flush()).is_err() {
                eprintln!("acr-credential-provider: cannot write the response to stdout");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("acr-credential-provider: {e}");
            ExitCode::FAILURE
        }
    }
}
