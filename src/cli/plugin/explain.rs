//! `kubectl acr explain NAMESPACE[/SERVICEACCOUNT]`: why a namespace (and a ServiceAccount)
//! has, or has not, the pull Secret: for every binding, each step decided by the very function
//! the reconciler or the webhook decides with ([`steps`]), and the verdict.
//!
//! It reads, with the user's kubeconfig and read rights only: the bindings and policies (`list`,
//! or `get` by name), the namespace and the ServiceAccount(s) (`get`, or `list` without a
//! ServiceAccount), and the pull Secret's metadata only (`get`: a `PartialObjectMetadata`
//! request, so the answer never carries the Secret's data).

pub mod document;
pub mod service_accounts;
pub mod steps;

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, ListParams};
use kube::runtime::reflector;
use kube::runtime::watcher;

use super::output::{self, Format};
use super::{KIND_BINDINGS, KIND_POLICIES, kube_error, write_out};
use crate::api::{AcrCredentialPolicy, AcrRegistryBinding};
use crate::cli::CliError;
use crate::cli::args::KubeArgs;
use crate::model::ResolveConfig;
use crate::runtime::config::DEFAULT_SECRET_NAME;
use crate::webhook::Settings;
use crate::webhook::decide::ALWAYS_EXCLUDED;
use document::{Explanation, Inputs, StepResult};

/// Arguments of `kubectl acr explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The namespace, or a ServiceAccount as NAMESPACE/NAME.
    #[arg(value_name = "NAMESPACE[/SERVICEACCOUNT]", value_parser = parse_target)]
    pub target: Target,
    /// Only this binding (repeatable); without it: every binding.
    #[arg(long = "binding", value_name = "NAME")]
    pub bindings: Vec<String>,
    /// Only bindings whose labels match this selector (e.g. `team=web`).
    #[arg(
        short = 'l',
        long,
        value_name = "SELECTOR",
        conflicts_with = "bindings"
    )]
    pub selector: Option<String>,
    /// The pull Secret's name (the controller's --secret-name).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SECRET_NAME)]
    pub secret_name: String,
    /// The controller's namespace, which its webhook never changes (as kube-system and
    /// kube-node-lease).
    #[arg(long, value_name = "NAMESPACE")]
    pub controller_namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Format,
    /// How to reach the cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// What to explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub service_account: Option<String>,
}

/// `ns` or `ns/sa`.
pub fn parse_target(text: &str) -> Result<Target, String> {
    let (namespace, service_account) = match text.split_once('/') {
        Some((ns, sa)) => (ns, Some(sa)),
        None => (text, None),
    };
    if namespace.is_empty() || service_account.is_some_and(|s| s.is_empty() || s.contains('/')) {
        return Err(format!(
            "{text:?}: expected NAMESPACE or NAMESPACE/SERVICEACCOUNT"
        ));
    }
    Ok(Target {
        namespace: namespace.to_owned(),
        service_account: service_account.map(str::to_owned),
    })
}

/// Reads what the explanation needs and prints it.
pub async fn run(
    args: &ExplainArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let client = args.kube.client().await?;
    let ns = &args.target.namespace;
    let bindings_api: Api<AcrRegistryBinding> = Api::all(client.clone());
    let mut bindings = Vec::new();
    if args.bindings.is_empty() {
        let mut params = ListParams::default();
        if let Some(selector) = &args.selector {
            params = params.labels(selector);
        }
        let list = bindings_api
            .list(&params)
            .await
            .map_err(|e| kube_error(e, "list", KIND_BINDINGS, None))?;
        bindings.extend(list.items);
    } else {
        for name in &args.bindings {
            let b = bindings_api
                .get(name)
                .await
                .map_err(|e| kube_error(e, "get", KIND_BINDINGS, Some(name)))?;
            bindings.push(b);
        }
    }
    let policies: Api<AcrCredentialPolicy> = Api::all(client.clone());
    let policies = policies
        .list(&ListParams::default())
        .await
        .map_err(|e| kube_error(e, "list", KIND_POLICIES, None))?;
    let (store, mut writer) = reflector::store();
    for p in policies.items {
        writer.apply_watcher_event(&watcher::Event::Apply(p));
    }
    let namespace = Api::<Namespace>::all(client.clone())
        .get_opt(ns)
        .await
        .map_err(|e| kube_error(e, "get", "namespaces", Some(ns)))?;
    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let (asked, every) = match &args.target.service_account {
        Some(name) => {
            let sa = sa_api
                .get_opt(name)
                .await
                .map_err(|e| kube_error(e, "get", "serviceaccounts", Some(name)))?;
            (Some(sa), Vec::new())
        }
        None => {
            let list = sa_api
                .list(&ListParams::default())
                .await
                .map_err(|e| kube_error(e, "list", "serviceaccounts", None))?;
            (None, list.items)
        }
    };
    // Metadata only: the Secret's data never leaves the API server.
    let secret = Api::<Secret>::namespaced(client, ns)
        .get_metadata_opt(&args.secret_name)
        .await
        .map_err(|e| kube_error(e, "get", "secrets", Some(&args.secret_name)))?;
    let mut excluded: std::collections::BTreeSet<String> =
        ALWAYS_EXCLUDED.iter().map(|n| (*n).to_owned()).collect();
    excluded.extend(args.controller_namespace.clone());
    let webhook = Settings {
        secret_name: args.secret_name.clone(),
        excluded_namespaces: excluded,
    };
    let resolve = ResolveConfig::default();
    let inputs = Inputs {
        namespace: ns,
        namespace_object: namespace.as_ref(),
        service_account: asked.as_ref().map(Option::as_ref),
        service_account_name: args.target.service_account.as_deref(),
        service_accounts: &every,
        secret: secret.as_ref().map(|s| &s.metadata),
        secret_name: &args.secret_name,
        bindings: &bindings,
        policies: &store,
        resolve: &resolve,
        webhook: &webhook,
    };
    let explanation = steps::explain(&inputs);
    match args.output {
        Format::Json => {
            let text =
                serde_json::to_string_pretty(&explanation).map_err(|e| CliError::Manifest {
                    path: "-".into(),
                    message: format!("cannot render JSON: {e}"),
                })?;
            write_out(out, &format!("{text}\n"))?;
        }
        Format::Table if explanation.bindings.is_empty() => {
            write_out(out, &header(&explanation))?;
            write_out(err, "No bindings found\n")?;
        }
        Format::Table => write_out(out, &table(&explanation))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The step table's headers, in column order.
pub const HEADERS: [&str; 4] = ["STEP", "RESULT", "REASON", "DETAIL"];

/// The lines above the bindings: what is explained, and the pull Secret.
pub fn header(e: &Explanation) -> String {
    let what = match &e.service_account {
        Some(sa) => format!("ServiceAccount {}/{sa}", e.namespace),
        None => format!("Namespace {}", e.namespace),
    };
    let s = &e.secret;
    let secret = match s.managed {
        None => "absent".to_owned(),
        Some(false) => format!(
            "not managed by this controller (written by {})",
            if s.written_by.is_empty() {
                output::NONE.to_owned()
            } else {
                s.written_by.join(", ")
            }
        ),
        Some(true) => {
            let holders = if s.bindings.is_empty() {
                output::NONE.to_owned()
            } else {
                s.bindings.join(", ")
            };
            match &s.expires_at {
                Some(at) => format!("the controller's, auths of {holders}, expires {at}"),
                None => format!("the controller's, auths of {holders}"),
            }
        }
    };
    format!("{what}\nSecret {}: {secret}\n", s.name)
}

/// The explanation for people: the header, then per binding its verdict and its step table
/// (indented), like `cmctl status certificate`.
pub fn table(e: &Explanation) -> String {
    let mut text = header(e);
    for b in &e.bindings {
        text.push('\n');
        text.push_str(&format!(
            "AcrRegistryBinding {} (policy {}): {}\n  {}\n",
            b.name, b.policy, b.verdict, b.message
        ));
        let rows: Vec<Vec<String>> = b
            .steps
            .iter()
            .map(|s| {
                vec![
                    s.step.to_owned(),
                    result_cell(s.result).to_owned(),
                    s.reason.clone(),
                    s.message.clone(),
                ]
            })
            .collect();
        for line in output::table(&HEADERS, &rows).lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

fn result_cell(r: StepResult) -> &'static str {
    match r {
        StepResult::Pass => "Pass",
        StepResult::Fail => "Fail",
        StepResult::Wait => "Wait",
        StepResult::Skip => "Skip",
        StepResult::Info => "Info",
    }
}

#[cfg(test)]
mod tests;
