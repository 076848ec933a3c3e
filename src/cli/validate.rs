//! `acr-credential-controller validate`: check CR manifests offline with the same rules the API
//! server (schema and CEL) and the controller apply, and point out fields the server would drop.

use std::{io::Write, process::ExitCode};

use clap::Args;
use serde_json::Value;

use super::{CliError, EXIT_PROBLEMS, input};
use crate::api::{
    AcrCredentialPolicy, AcrRegistryBinding, GROUP, VERSION, crd, schema_check, validate_binding,
    validate_policy,
};

/// Options of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Manifest files (multi-document YAML); `-` reads stdin. Objects of other kinds are
    /// skipped.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<String>,
}

/// Checks every AcrRegistryBinding and AcrCredentialPolicy; exit 1 on any problem.
pub fn run(
    args: &ValidateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let crds = crd::crds();
    let schema = |i: usize| {
        crds.get(i)
            .and_then(crd::schema_json)
            .unwrap_or(Value::Null)
    };
    let (policy_schema, binding_schema) = (schema(0), schema(1));
    let api_version = format!("{GROUP}/{VERSION}");

    let mut checked = 0;
    let mut problems = Vec::new();
    for path in &args.files {
        let text = input::read(path)?;
        for (index, doc) in input::documents(path, &text)? {
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
            let version = doc
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("<unnamed>");
            let is_ours = version.starts_with(&format!("{GROUP}/"));
            let (schema, code) = match kind {
                "AcrRegistryBinding" if is_ours => (&binding_schema, Kind::Binding),
                "AcrCredentialPolicy" if is_ours => (&policy_schema, Kind::Policy),
                _ => continue,
            };
            checked += 1;
            let at = format!("{path}: {kind}/{name} (document {index})");
            if version != api_version {
                problems.push(format!(
                    "{at}: apiVersion: {version} is not served; use {api_version}"
                ));
                continue;
            }
            if doc.pointer("/metadata/name").is_none() {
                problems.push(format!("{at}: metadata.name: Required value"));
            }
            let report = schema_check::check(schema, &doc);
            for field in report.unknown_fields {
                problems.push(format!(
                    "{at}: {field}: unknown field; the API server would drop it silently"
                ));
            }
            match code.validate(doc) {
                Ok(()) => {}
                // Not decodable: the schema violations say why, with paths.
                Err(None) => problems.extend(
                    report
                        .violations
                        .iter()
                        .map(|v| format!("{at}: {}: {}", v.path, v.message)),
                ),
                Err(Some(errors)) => problems.extend(errors.iter().map(|e| format!("{at}: {e}"))),
            }
        }
    }
    let io = |path: &str| {
        let path = path.to_owned();
        move |source| CliError::Io { path, source }
    };
    for p in &problems {
        writeln!(out, "{p}").map_err(io("stdout"))?;
    }
    writeln!(
        err,
        "{checked} object(s) checked, {} problem(s)",
        problems.len()
    )
    .map_err(io("stderr"))?;
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEMS)
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Binding,
    Policy,
}

impl Kind {
    /// `Err(None)`: does not decode; `Err(Some(..))`: the code rules' findings.
    fn validate(self, doc: Value) -> Result<(), Option<Vec<crate::api::FieldError>>> {
        match self {
            Kind::Binding => {
                let b: AcrRegistryBinding = serde_json::from_value(doc).map_err(|_| None)?;
                validate_binding(&b.spec).map_err(Some)
            }
            Kind::Policy => {
                let p: AcrCredentialPolicy = serde_json::from_value(doc).map_err(|_| None)?;
                validate_policy(&p.spec).map_err(Some)
            }
        }
    }
}
