//! `acr-credential-controller crd`: print the CRDs, or write one file per CRD.

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::Args;

use super::CliError;
use crate::api::crd;

/// Options of `crd`.
#[derive(Debug, Args)]
pub struct CrdArgs {
    /// Leave out the CEL rules (x-kubernetes-validations), for Kubernetes before 1.25.
    #[arg(long)]
    pub no_cel: bool,

    /// Write one file per CRD into this directory (as committed under crds/) instead of
    /// printing them.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// Prints or writes the CRDs.
pub fn run(args: &CrdArgs, out: &mut dyn Write) -> Result<ExitCode, CliError> {
    let crds = if args.no_cel {
        crd::crds_without_cel()
    } else {
        crd::crds()
    };
    let io = |path: String| move |source| CliError::Io { path, source };
    match &args.output_dir {
        None => {
            let docs: Vec<String> = crds.iter().map(crd::to_yaml).collect::<Result<_, _>>()?;
            out.write_all(docs.join("---\n").as_bytes())
                .map_err(io("-".to_owned()))?;
        }
        Some(dir) => {
            for c in &crds {
                let path = dir.join(crd::file_name(c));
                std::fs::write(&path, crd::to_yaml(c)?).map_err(io(path.display().to_string()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
