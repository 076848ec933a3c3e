//! `kubectl acr renew`: requests a rotation now by setting
//! [`ROTATION_REQUESTED_AT`] to the current time on the named bindings, on every binding
//! (`--all`), or on a policy (`--policy`: every binding that uses it). A JSON merge patch of
//! that one annotation, so it needs only `patch` on the objects; the controller does the rest.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{FIELD_MANAGER, KIND_BINDINGS, KIND_POLICIES, kube_error, write_out};
use crate::api::rotation::ROTATION_REQUESTED_AT;
use crate::api::{AcrCredentialPolicy, AcrRegistryBinding};
use crate::cli::args::KubeArgs;
use crate::cli::{CliError, EXIT_FAILURE};

/// Arguments of `kubectl acr renew`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["names", "policy", "all"]))]
pub struct RenewArgs {
    /// Bindings to rotate.
    #[arg(value_name = "BINDING")]
    pub names: Vec<String>,
    /// Rotate every binding that uses this AcrCredentialPolicy (the annotation goes on the
    /// policy).
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// Rotate every binding.
    #[arg(long)]
    pub all: bool,
    /// With --all: only bindings whose labels match this selector.
    #[arg(short = 'l', long, value_name = "SELECTOR", conflicts_with_all = ["names", "policy"])]
    pub selector: Option<String>,
    /// How to reach the cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// The merge patch that requests a rotation at `now`: only the one annotation.
pub fn request_patch(now: Timestamp) -> serde_json::Value {
    serde_json::json!({"metadata": {"annotations": {ROTATION_REQUESTED_AT: request_value(now)}}})
}

/// The annotation's value for a request at `now`: RFC 3339 with the fraction of a second, so
/// two requests in the same second still differ.
pub fn request_value(now: Timestamp) -> String {
    format!("{now:.9}")
}

/// Sets the annotation and says what it asked for, one line per object, like `cmctl renew`.
pub async fn run(
    args: &RenewArgs,
    now: Timestamp,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let client = args.kube.client().await?;
    let patch = request_patch(now);
    if let Some(policy) = &args.policy {
        let api: Api<AcrCredentialPolicy> = Api::all(client.clone());
        annotate(&api, KIND_POLICIES, policy, &patch).await?;
        // Say which bindings that reaches; reading them needs only `list`.
        let bindings: Api<AcrRegistryBinding> = Api::all(client);
        let users = match bindings.list(&ListParams::default()).await {
            Ok(list) => {
                let mut names: Vec<String> = list
                    .items
                    .iter()
                    .filter(|b| b.spec.policy_name() == policy.as_str())
                    .map(ResourceExt::name_any)
                    .collect();
                names.sort();
                match names.len() {
                    0 => " (no binding uses it)".to_owned(),
                    _ => format!(" (bindings: {})", names.join(", ")),
                }
            }
            Err(_) => String::new(),
        };
        write_out(
            out,
            &format!("Manually triggered rotation for AcrCredentialPolicy {policy}{users}\n"),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let api: Api<AcrRegistryBinding> = Api::all(client);
    let names = if args.all {
        let mut params = ListParams::default();
        if let Some(selector) = &args.selector {
            params = params.labels(selector);
        }
        let list = api
            .list(&params)
            .await
            .map_err(|e| kube_error(e, "list", KIND_BINDINGS, None))?;
        list.items.iter().map(ResourceExt::name_any).collect()
    } else {
        args.names.clone()
    };
    if names.is_empty() {
        write_out(err, "No resources found\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for name in &names {
        match annotate(&api, KIND_BINDINGS, name, &patch).await {
            Ok(()) => write_out(
                out,
                &format!("Manually triggered rotation for AcrRegistryBinding {name}\n"),
            )?,
            Err(e) => {
                failed = true;
                write_out(err, &format!("error: {e}\n"))?;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Merge-patches `name` with `patch`.
async fn annotate<K>(
    api: &Api<K>,
    plural: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<(), CliError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(patch))
        .await
        .map(drop)
        .map_err(|e| kube_error(e, "patch", plural, Some(name)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_patch_sets_only_the_annotation_to_a_precise_time() {
        let now: Timestamp = "2026-03-01T12:00:00.5Z".parse().unwrap();
        assert_eq!(
            request_patch(now),
            serde_json::json!({"metadata": {"annotations": {
                "acrcredentials.io/rotation-requested-at": "2026-03-01T12:00:00.500000000Z"
            }}})
        );
        // A whole second keeps its fraction: the value is always RFC 3339 with nanoseconds.
        let whole: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        assert_eq!(request_value(whole), "2026-03-01T12:00:00.000000000Z");
        let later = whole + jiff::SignedDuration::from_nanos(1);
        assert_ne!(request_value(whole), request_value(later));
    }
}
