//! `kubectl acr renew`: requests a rotation now by setting
//! [`ROTATION_REQUESTED_AT`] to the current time on the named bindings, on every binding
//! (`--all`), or on a policy (`--policy`: every binding that uses it). A JSON merge patch of
//! that one annotation, so it needs only `patch` on the objects; the controller does the rest.
//! With `--wait`, it then reads the bindings until each one's `status.rotation` records the
//! request as handled (a fresh token in its Secrets), as `flux reconcile` waits.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Wait until the controller has handled the request on every binding it reaches.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (e.g. `90s`, `5m`).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_timeout, requires = "wait")]
    pub timeout: Duration,
    /// How to reach the cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    crate::api::duration::parse(s).ok_or_else(|| format!("not a duration: {s:?} (e.g. 90s, 5m)"))
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
    let value = request_value(now);
    let bindings: Api<AcrRegistryBinding> = Api::all(client.clone());
    if let Some(policy) = &args.policy {
        let api: Api<AcrCredentialPolicy> = Api::all(client);
        annotate(&api, KIND_POLICIES, policy, &patch).await?;
        // Say which bindings that reaches; reading them needs only `list`.
        let users = match bindings.list(&ListParams::default()).await {
            Ok(list) => {
                let mut names: Vec<String> = list
                    .items
                    .iter()
                    .filter(|b| b.spec.policy_name() == policy.as_str())
                    .map(ResourceExt::name_any)
                    .collect();
                names.sort();
                Some(names)
            }
            Err(_) => None,
        };
        let reached = match users.as_deref() {
            None => String::new(),
            Some([]) => " (no binding uses it)".to_owned(),
            Some(names) => format!(" (bindings: {})", names.join(", ")),
        };
        write_out(
            out,
            &format!("Manually triggered rotation for AcrCredentialPolicy {policy}{reached}\n"),
        )?;
        if !args.wait {
            return Ok(ExitCode::SUCCESS);
        }
        let users = match users {
            Some(users) => users,
            None => bindings
                .list(&ListParams::default())
                .await
                .map_err(|e| kube_error(e, "list", KIND_BINDINGS, None))?
                .items
                .iter()
                .filter(|b| b.spec.policy_name() == policy.as_str())
                .map(ResourceExt::name_any)
                .collect(),
        };
        let handled = wait_handled(
            &bindings,
            users,
            &value,
            Handled::Policy,
            args.timeout,
            out,
            err,
        )
        .await?;
        return Ok(exit(!handled));
    }
    let api = bindings;
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
    let mut requested = Vec::new();
    for name in &names {
        match annotate(&api, KIND_BINDINGS, name, &patch).await {
            Ok(()) => {
                requested.push(name.clone());
                write_out(
                    out,
                    &format!("Manually triggered rotation for AcrRegistryBinding {name}\n"),
                )?
            }
            Err(e) => {
                failed = true;
                write_out(err, &format!("error: {e}\n"))?;
            }
        }
    }
    if args.wait {
        let handled = wait_handled(
            &api,
            requested,
            &value,
            Handled::Binding,
            args.timeout,
            out,
            err,
        )
        .await?;
        failed |= !handled;
    }
    Ok(exit(failed))
}

fn exit(failed: bool) -> ExitCode {
    match failed {
        true => ExitCode::from(EXIT_FAILURE),
        false => ExitCode::SUCCESS,
    }
}

/// Which request `status.rotation` must record as handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// The binding's own (`lastHandledRequest`).
    Binding,
    /// Its policy's (`lastHandledPolicyRequest`).
    Policy,
}

/// Whether `binding`'s status records the request `value` (of kind `which`) as handled.
pub fn handled(binding: &AcrRegistryBinding, value: &str, which: Handled) -> bool {
    let rotation = binding.status.as_ref().and_then(|s| s.rotation.as_ref());
    let recorded = rotation.and_then(|r| match which {
        Handled::Binding => r.last_handled_request.as_deref(),
        Handled::Policy => r.last_handled_policy_request.as_deref(),
    });
    recorded == Some(value)
}

/// Reads the bindings `names` every second until each one records `value` as handled, saying
/// so per binding with its new expiry; false when `timeout` passes first.
async fn wait_handled(
    api: &Api<AcrRegistryBinding>,
    mut names: Vec<String>,
    value: &str,
    which: Handled,
    timeout: Duration,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<bool, CliError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut waiting = Vec::new();
        for name in names {
            let binding = api
                .get(&name)
                .await
                .map_err(|e| kube_error(e, "get", KIND_BINDINGS, Some(&name)))?;
            if handled(&binding, value, which) {
                let expires = binding
                    .status
                    .as_ref()
                    .and_then(|s| s.token.as_ref())
                    .and_then(|t| t.expires_at.as_ref())
                    .map(|t| format!(", token valid until {}", t.0))
                    .unwrap_or_default();
                write_out(
                    out,
                    &format!("AcrRegistryBinding {name} rotated{expires}\n"),
                )?;
            } else {
                waiting.push(name);
            }
        }
        if waiting.is_empty() {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            write_out(
                err,
                &format!(
                    "error: timed out after {} waiting for the rotation of {}\n",
                    crate::api::duration::format(timeout),
                    waiting.join(", ")
                ),
            )?;
            return Ok(false);
        }
        names = waiting;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
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
    fn waiting_looks_for_the_very_value_in_the_right_field() {
        let mut b: AcrRegistryBinding = serde_yaml::from_str(
            "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrRegistryBinding\nmetadata: {name: web}\nspec: {registry: {}, namespaces: {all: true}}\n",
        )
        .unwrap();
        assert!(!handled(&b, "v1", Handled::Binding));
        b.status = Some(crate::api::AcrRegistryBindingStatus {
            rotation: Some(crate::api::RotationStatus {
                last_handled_request: Some("v1".into()),
                last_handled_policy_request: Some("p1".into()),
                last_rotated_at: None,
            }),
            ..Default::default()
        });
        assert!(handled(&b, "v1", Handled::Binding));
        assert!(!handled(&b, "v2", Handled::Binding));
        assert!(!handled(&b, "v1", Handled::Policy));
        assert!(handled(&b, "p1", Handled::Policy));
        assert_eq!(parse_timeout("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_timeout("soon").is_err());
    }

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
