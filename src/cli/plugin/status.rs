//! `kubectl acr status`: one line per AcrRegistryBinding, read from the bindings' own `status`
//! (so it needs only `get`/`list` on them): Ready, the registry, namespaces synced/selected,
//! when the token expires and is renewed, and the first namespace that failed and why.
//!
//! [`BindingStatus`] is the `-o json` document (one object per binding, every field always
//! present, `null` when unknown); [`table`] renders the same rows for people.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde::Serialize;

use super::output::{self, Format, NONE};
use super::{KIND_BINDINGS, kube_error, write_out};
use crate::api::AcrRegistryBinding;
use crate::api::conditions::{find_condition, reasons, status as condition_status, types};
use crate::cli::CliError;
use crate::cli::args::KubeArgs;

/// Arguments of `kubectl acr status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Bindings to show; without names: every binding.
    #[arg(value_name = "BINDING")]
    pub names: Vec<String>,
    /// Only bindings whose labels match this selector (e.g. `team=web`).
    #[arg(short = 'l', long, value_name = "SELECTOR", conflicts_with = "names")]
    pub selector: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Format,
    /// How to reach the cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// One binding's status, as `-o json` prints it. Field names and meanings are stable.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingStatus {
    /// The binding's name (bindings are cluster-scoped).
    pub name: String,
    /// The AcrCredentialPolicy the binding uses (`default` when it names none).
    pub policy: String,
    /// The Ready condition.
    pub ready: Ready,
    /// `status.registry`: the instance id, or `personal` (with its region).
    pub registry: Option<String>,
    /// Namespaces selected and holding the current Secret; `null` before the first status.
    pub namespaces: Option<Namespaces>,
    /// When the current token expires (RFC 3339).
    pub expires_at: Option<Time>,
    /// When the controller plans to renew it (RFC 3339).
    pub renew_at: Option<Time>,
    /// The first namespace (by name) that could not be synced, and why.
    pub first_failure: Option<Failure>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The generation the status describes; lower than `generation` while a change is in flight.
    pub observed_generation: Option<i64>,
    /// The rotation requests handled (`status.rotation`); `null` before the first.
    pub rotation: Option<Rotation>,
}

/// The rotation requests a binding has handled (`kubectl acr renew`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// The binding's `acrcredentials.io/rotation-requested-at` value last handled.
    pub last_handled_request: Option<String>,
    /// Its policy's value last handled.
    pub last_handled_policy_request: Option<String>,
    /// When a token was last obtained on request (RFC 3339).
    pub last_rotated_at: Option<Time>,
}

/// The Ready condition; `Unknown` with no reason when the controller has not written one yet.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ready {
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The CamelCase reason, e.g. `Reconciled`.
    pub reason: Option<String>,
    /// The message, for a human.
    pub message: Option<String>,
}

/// Namespace counts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Namespaces {
    /// Namespaces holding the current pull Secret.
    pub synced: i32,
    /// Namespaces the binding selects.
    pub selected: i32,
}

/// One namespace that could not be synced.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    /// The namespace.
    pub namespace: String,
    /// The CamelCase reason, e.g. `SecretOwnedByOthers`.
    pub reason: String,
    /// What went wrong, for a human.
    pub message: String,
    /// How many other namespaces are not synced.
    pub others: i32,
}

/// The table's headers, in column order.
pub const HEADERS: [&str; 7] = [
    "NAME",
    "READY",
    "REGISTRY",
    "NAMESPACES",
    "EXPIRES",
    "RENEWS",
    "FIRST FAILURE",
];

/// Reads the bindings and prints their status.
pub async fn run(
    args: &StatusArgs,
    now: Timestamp,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let api: Api<AcrRegistryBinding> = Api::all(args.kube.client().await?);
    let mut bindings = Vec::new();
    if args.names.is_empty() {
        let mut params = ListParams::default();
        if let Some(selector) = &args.selector {
            params = params.labels(selector);
        }
        let list = api
            .list(&params)
            .await
            .map_err(|e| kube_error(e, "list", KIND_BINDINGS, None))?;
        bindings.extend(list.items);
    } else {
        for name in &args.names {
            let binding = api
                .get(name)
                .await
                .map_err(|e| kube_error(e, "get", KIND_BINDINGS, Some(name)))?;
            bindings.push(binding);
        }
    }
    let rows = rows(&bindings);
    match args.output {
        Format::Json => {
            let text = serde_json::to_string_pretty(&rows).map_err(|e| CliError::Manifest {
                path: "-".into(),
                message: format!("cannot render JSON: {e}"),
            })?;
            write_out(out, &format!("{text}\n"))?;
        }
        Format::Table if rows.is_empty() => write_out(err, "No resources found\n")?,
        Format::Table => write_out(out, &table(&rows, now))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The status rows of `bindings`, by name.
pub fn rows(bindings: &[AcrRegistryBinding]) -> Vec<BindingStatus> {
    let mut rows: Vec<BindingStatus> = bindings.iter().map(row).collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// One binding's status row.
pub fn row(binding: &AcrRegistryBinding) -> BindingStatus {
    let status = binding.status.clone().unwrap_or_default();
    let ready = match find_condition(&status.conditions, types::READY) {
        Some(c) => Ready {
            status: c.status.clone(),
            reason: Some(c.reason.clone()),
            message: Some(c.message.clone()),
        },
        None => Ready {
            status: condition_status::UNKNOWN.to_owned(),
            reason: None,
            message: None,
        },
    };
    let namespaces = status.namespaces.as_ref();
    let first_failure = namespaces.and_then(|n| {
        let first = n.failed.first()?;
        let listed = i32::try_from(n.failed.len()).unwrap_or(i32::MAX);
        let unsynced = listed.max(n.selected.saturating_sub(n.synced));
        Some(Failure {
            namespace: first.name.clone(),
            reason: first.reason.clone(),
            message: first.message.clone(),
            others: unsynced.saturating_sub(1),
        })
    });
    let token = status.token.as_ref();
    BindingStatus {
        name: binding.name_any(),
        policy: binding.spec.policy_name().to_owned(),
        ready,
        registry: status.registry.clone(),
        namespaces: namespaces.map(|n| Namespaces {
            synced: n.synced,
            selected: n.selected,
        }),
        expires_at: token.and_then(|t| t.expires_at.clone()),
        renew_at: token.and_then(|t| t.renew_at.clone()),
        first_failure,
        generation: binding.metadata.generation,
        observed_generation: status.observed_generation,
        rotation: status.rotation.map(|r| Rotation {
            last_handled_request: r.last_handled_request,
            last_handled_policy_request: r.last_handled_policy_request,
            last_rotated_at: r.last_rotated_at,
        }),
    }
}

/// The rows as a table, times relative to `now`.
pub fn table(rows: &[BindingStatus], now: Timestamp) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                ready_cell(&r.ready),
                r.registry.clone().unwrap_or_else(|| NONE.to_owned()),
                r.namespaces.as_ref().map_or_else(
                    || NONE.to_owned(),
                    |n| format!("{}/{}", n.synced, n.selected),
                ),
                output::relative(r.expires_at.as_ref().map(|t| t.0), now),
                output::relative(r.renew_at.as_ref().map(|t| t.0), now),
                r.first_failure.as_ref().map_or_else(
                    || NONE.to_owned(),
                    |f| match f.others {
                        0 => format!("{}: {}", f.namespace, f.reason),
                        n => format!("{}: {} (+{n} more)", f.namespace, f.reason),
                    },
                ),
            ]
        })
        .collect();
    output::table(&HEADERS, &cells)
}

/// `True`, or the status with the reason when it says more than "all is well":
/// `False (PolicyNotFound)`, `True (RenewalFailing)`.
fn ready_cell(ready: &Ready) -> String {
    match ready.reason.as_deref() {
        None | Some("") | Some(reasons::RECONCILED) => ready.status.clone(),
        Some(reason) => format!("{} ({reason})", ready.status),
    }
}

#[cfg(test)]
mod tests;
