//! `acr-fake-cloud`: runs the strict fake Alibaba Cloud (STS, CR 2018-12-01, CR 2016-06-07,
//! ECS metadata) on a loopback port for the sandbox and manual testing.
//!
//! It loads a scenario file (YAML or JSON, see `acr_fake_cloud::scenario`),
//! listens, prints `listening on http://127.0.0.1:<port>` and optionally writes that base URL
//! to `--address-file`, then serves until SIGINT/SIGTERM. Faults and the request log are
//! controlled over HTTP under `/__fake/` (see `acr_fake_cloud::control`).

use std::net::SocketAddr;
use std::path::PathBuf;

use acr_fake_cloud::{FakeCloud, Scenario};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "acr-fake-cloud",
    about = "A strict fake of the Alibaba Cloud APIs used by acr-credential-controller"
)]
struct Args {
    /// Scenario file (YAML or JSON).
    #[arg(long, env = "ACR_FAKE_SCENARIO")]
    scenario: PathBuf,
    /// Address to listen on; must be a loopback address. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write the base URL (`http://127.0.0.1:<port>`) to this file once listening.
    #[arg(long)]
    address_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("acr-fake-cloud: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if !args.listen.ip().is_loopback() {
        return Err(format!(
            "--listen {} is not a loopback address; the fake only serves this machine",
            args.listen
        ));
    }
    let scenario = Scenario::load(&args.scenario).map_err(|e| e.to_string())?;
    let fake = FakeCloud::start_on(scenario, args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let base = fake.base_url().as_str().trim_end_matches('/').to_string();
    if let Some(path) = &args.address_file {
        std::fs::write(path, format!("{base}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    println!("listening on {base}");
    wait_for_signal().await;
    drop(fake);
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
