//! `acr-credential-controller doctor`: walk one binding's credential chain and say where it
//! breaks.
//!
//! The binding, its policy and (for `accessKey`) the Secret come from manifest files (`-f`) or
//! from the cluster of the current kubeconfig context. The walk itself
//! ([`crate::cloud::doctor::walk`]) does what the controller does: credentials from the
//! source, the optional AssumeRole hop, the registry token, the domains; it prints each step's
//! outcome, principal, endpoint and expiry, and the cloud's exact error with a hint. Nothing
//! secret is printed. Exit 0 when every step works, 1 when one fails or the objects are invalid, 2
//! when the check itself could not run (unreadable file, no cluster).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use serde_json::Value;

use super::args::{CloudArgs, KubeArgs};
use super::{CliError, EXIT_PROBLEMS, input};
use crate::api::{
    AcrCredentialPolicy, AcrRegistryBinding, GROUP, validate_binding, validate_policy,
};
use crate::cloud::credentials::access_key::{KubeSecretReader, SecretReader, StaticSecrets};
use crate::cloud::doctor::{DoctorPlan, walk};
use crate::cloud::{CloudClient, from_api};

/// Options of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Manifest files holding the AcrRegistryBinding, its AcrCredentialPolicy and, for an
    /// accessKey source, the Secret; `-` reads stdin. Without files, everything is read from the
    /// cluster of the current kubeconfig context.
    #[arg(short = 'f', long = "filename", value_name = "FILE", num_args = 1..)]
    pub files: Vec<String>,

    /// Name of the AcrRegistryBinding to check. May be left out when the files hold exactly one.
    #[arg(long, value_name = "NAME")]
    pub binding: Option<String>,

    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// The objects to check.
struct Objects {
    binding: AcrRegistryBinding,
    policy: AcrCredentialPolicy,
    secrets: Option<StaticSecrets>,
    origin: String,
}

fn manifest_error(path: &str, message: impl Into<String>) -> CliError {
    CliError::Manifest {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn from_files(args: &DoctorArgs) -> Result<Objects, CliError> {
    let mut bindings = Vec::new();
    let mut policies = Vec::new();
    let secrets = StaticSecrets::new();
    let mut any_secret = false;
    for path in &args.files {
        let text = input::read(path)?;
        for (index, doc) in input::documents(path, &text)? {
            let kind = doc
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let version = doc
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let ours = version.starts_with(&format!("{GROUP}/"));
            let bad = |e: serde_json::Error| {
                manifest_error(path, format!("document {index}: {kind}: {e}"))
            };
            match kind.as_str() {
                "AcrRegistryBinding" if ours => {
                    bindings.push(serde_json::from_value::<AcrRegistryBinding>(doc).map_err(bad)?)
                }
                "AcrCredentialPolicy" if ours => {
                    policies.push(serde_json::from_value::<AcrCredentialPolicy>(doc).map_err(bad)?)
                }
                "Secret" if version == "v1" => {
                    let secret = serde_json::from_value::<Secret>(doc).map_err(bad)?;
                    let mut data: BTreeMap<String, Vec<u8>> = secret
                        .data
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    for (k, v) in secret.string_data.clone().unwrap_or_default() {
                        data.insert(k, v.into_bytes());
                    }
                    let pairs: Vec<(String, String)> = data
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                        .collect();
                    let borrowed: Vec<(&str, &str)> = pairs
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let ns = secret.namespace().unwrap_or_else(|| "default".into());
                    secrets.insert(&ns, &secret.name_any(), &borrowed);
                    any_secret = true;
                }
                _ => {}
            }
        }
    }
    let files = args.files.join(", ");
    let binding = match (&args.binding, bindings.len()) {
        (Some(name), _) => bindings
            .into_iter()
            .find(|b| b.name_any() == *name)
            .ok_or_else(|| manifest_error(&files, format!("no AcrRegistryBinding named {name}")))?,
        (None, 1) => bindings.remove(0),
        (None, 0) => return Err(manifest_error(&files, "no AcrRegistryBinding found")),
        (None, n) => {
            return Err(manifest_error(
                &files,
                format!("{n} AcrRegistryBindings found; choose one with --binding"),
            ));
        }
    };
    let policy_name = binding.spec.policy_name().to_owned();
    let policy = policies
        .into_iter()
        .find(|p| p.name_any() == policy_name)
        .ok_or_else(|| {
            manifest_error(
                &files,
                format!("no AcrCredentialPolicy named {policy_name} (used by the binding)"),
            )
        })?;
    Ok(Objects {
        binding,
        policy,
        secrets: any_secret.then_some(secrets),
        origin: files,
    })
}

async fn from_cluster(args: &DoctorArgs) -> Result<Objects, CliError> {
    let Some(name) = &args.binding else {
        return Err(manifest_error(
            "cluster",
            "--binding NAME is required when reading from the cluster",
        ));
    };
    let client = args.kube.client().await?;
    let bindings: Api<AcrRegistryBinding> = Api::all(client.clone());
    let binding = bindings.get(name).await.map_err(|source| CliError::Kube {
        context: format!("reading AcrRegistryBinding {name}"),
        source,
    })?;
    let policy_name = binding.spec.policy_name().to_owned();
    let policies: Api<AcrCredentialPolicy> = Api::all(client);
    let policy = policies
        .get(&policy_name)
        .await
        .map_err(|source| CliError::Kube {
            context: format!("reading AcrCredentialPolicy {policy_name}"),
            source,
        })?;
    Ok(Objects {
        binding,
        policy,
        secrets: None,
        origin: "cluster".into(),
    })
}

fn cloud_client(args: &DoctorArgs, region: &str) -> Result<CloudClient, String> {
    CloudClient::new(args.cloud.cloud_config(region)?).map_err(|e| e.to_string())
}

/// Runs the check and prints the report.
pub async fn run(
    args: &DoctorArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let stdout_io = |source| CliError::Io {
        path: "stdout".into(),
        source,
    };
    let stderr_io = |source| CliError::Io {
        path: "stderr".into(),
        source,
    };
    let objects = if args.files.is_empty() {
        from_cluster(args).await?
    } else {
        from_files(args)?
    };
    let binding_name = objects.binding.name_any();
    let policy_name = objects.policy.name_any();

    let mut problems: Vec<String> = Vec::new();
    if let Err(errors) = validate_binding(&objects.binding.spec) {
        problems.extend(
            errors
                .iter()
                .map(|e| format!("AcrRegistryBinding/{binding_name}: {e}")),
        );
    }
    if let Err(errors) = validate_policy(&objects.policy.spec) {
        problems.extend(
            errors
                .iter()
                .map(|e| format!("AcrCredentialPolicy/{policy_name}: {e}")),
        );
    }
    // As the controller does: the binding's region, else the default region (--region).
    let region = objects
        .binding
        .spec
        .registry
        .region
        .clone()
        .unwrap_or_else(|| args.cloud.region.clone());
    let provider = match from_api::provider_config(&objects.policy.spec, &args.cloud.token_files())
    {
        Ok(p) => Some(p),
        Err(e) => {
            problems.push(format!("AcrCredentialPolicy/{policy_name}: {e}"));
            None
        }
    };
    let client = match cloud_client(args, &region) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(e);
            None
        }
    };
    let (Some(provider), Some(client), true) = (provider, client, problems.is_empty()) else {
        return report_problems(&problems, err).map_err(stderr_io);
    };

    let secrets: Arc<dyn SecretReader> = match objects.secrets {
        Some(s) => Arc::new(s),
        None if matches!(
            provider.source,
            crate::cloud::credentials::SourceConfig::AccessKey(_)
        ) =>
        {
            Arc::new(KubeSecretReader::new(args.kube.client().await?))
        }
        None => Arc::new(StaticSecrets::new()),
    };
    let plan = DoctorPlan {
        context: vec![
            (
                "binding".into(),
                format!("{binding_name} (from {})", objects.origin),
            ),
            ("policy".into(), policy_name),
            ("region".into(), region.clone()),
        ],
        source: provider.source,
        assume_role: provider.assume_role,
        registry: from_api::registry(&objects.binding.spec.registry, &region),
        domains: objects.binding.spec.registry.domains.clone(),
    };
    let report = walk(Arc::new(client), secrets, &plan).await;
    out.write_all(report.render().as_bytes())
        .map_err(stdout_io)?;
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEMS)
    })
}

fn report_problems(problems: &[String], err: &mut dyn Write) -> std::io::Result<ExitCode> {
    for p in problems {
        writeln!(err, "error: {p}")?;
    }
    writeln!(
        err,
        "the chain was not walked: fix the problems above first"
    )?;
    Ok(ExitCode::from(EXIT_PROBLEMS))
}
