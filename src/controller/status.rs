//! Binding and policy status: a pure builder from what one reconcile observed, and the
//! server-side apply of `/status` with our field manager.
//!
//! Conditions keep their `lastTransitionTime` unless their status changes (see
//! [`set_condition`]); times are whole seconds, so an unchanged status compares equal and is
//! not written again. Messages carry cloud error codes and RequestIds, never a secret.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Result;
use super::tokens::{HeldToken, TokenFailure};
use crate::api::conditions::{
    NewCondition, find_condition, reasons, remove_condition, set_condition, status as st, types,
};
use crate::api::{
    AcrRegistryBindingStatus, FailureRecord, NamespaceFailure, NamespacesStatus,
    ServiceAccountsStatus, TokenStatus,
};

/// Whole seconds, so status round-trips unchanged through the API server.
pub fn time(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// A problem that stops the binding before any token is requested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    pub reason: &'static str,
    pub message: String,
}

/// Everything one reconcile of a binding observed.
#[derive(Clone, Debug, Default)]
pub struct BindingObservation {
    pub generation: Option<i64>,
    pub registry: String,
    /// Invalid spec, missing or invalid policy.
    pub blocker: Option<Blocker>,
    pub token: Option<HeldToken>,
    pub token_failure: Option<TokenFailure>,
    pub domains: Vec<String>,
    pub namespaces_selected: usize,
    pub namespaces_synced: usize,
    pub namespace_failures: Vec<NamespaceFailure>,
    pub service_accounts_selected: usize,
    pub service_accounts_bound: usize,
    /// Messages of ServiceAccount patches that failed.
    pub service_account_failures: Vec<String>,
}

fn cond(
    type_: &'static str,
    ok: bool,
    reason: &'static str,
    message: String,
    generation: Option<i64>,
) -> NewCondition<'static> {
    NewCondition {
        type_,
        status: if ok { st::TRUE } else { st::FALSE },
        reason,
        message,
        observed_generation: generation,
    }
}

fn summarize(failures: &[NamespaceFailure]) -> String {
    let shown: Vec<String> = failures
        .iter()
        .take(3)
        .map(|f| format!("{}: {}", f.name, f.message))
        .collect();
    let more = failures.len().saturating_sub(3);
    if more > 0 {
        format!("{} (and {more} more)", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

/// The status a binding should have, given its previous status and this observation.
pub fn binding_status(
    previous: Option<&AcrRegistryBindingStatus>,
    obs: &BindingObservation,
    now: Timestamp,
) -> AcrRegistryBindingStatus {
    let now_t = time(now);
    let g = obs.generation;
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = g;
    status.registry = Some(obs.registry.clone());
    let mut conditions = std::mem::take(&mut status.conditions);

    if let Some(b) = &obs.blocker {
        for t in [
            types::TOKEN_ISSUED,
            types::SECRETS_SYNCED,
            types::SERVICE_ACCOUNTS_BOUND,
        ] {
            set_condition(
                &mut conditions,
                NewCondition {
                    type_: t,
                    status: st::UNKNOWN,
                    reason: b.reason,
                    message: format!("not attempted: {}", b.message),
                    observed_generation: g,
                },
                now_t.clone(),
            );
        }
        set_condition(
            &mut conditions,
            cond(types::READY, false, b.reason, b.message.clone(), g),
            now_t.clone(),
        );
        // Every blocker waits for a change of the binding or its policy: terminal for kstatus.
        set_condition(
            &mut conditions,
            cond(types::STALLED, true, b.reason, b.message.clone(), g),
            now_t.clone(),
        );
        remove_condition(&mut conditions, types::RECONCILING);
        status.conditions = conditions;
        if previous
            .and_then(|p| p.last_failure.as_ref())
            .is_none_or(|f| f.reason != b.reason || f.message != b.message)
        {
            status.last_failure = Some(FailureRecord {
                time: now_t,
                reason: b.reason.to_owned(),
                message: b.message.clone(),
            });
        }
        return status;
    }

    // Token.
    let valid = obs.token.as_ref().filter(|t| t.valid_at(now));
    let (token_ok, token_reason, token_message) = match (valid, &obs.token_failure, &obs.token) {
        (Some(t), None, _) => (
            true,
            reasons::TOKEN_ISSUED,
            format!(
                "token valid until {}, renewal at {}",
                time(t.expires_at).0,
                time(t.renew_at).0
            ),
        ),
        (Some(t), Some(f), _) => (
            true,
            reasons::RENEWAL_FAILING,
            format!(
                "Degraded: renewal failing, the current token stays valid until {}: {}",
                time(t.expires_at).0,
                f.message
            ),
        ),
        (None, Some(f), Some(t)) => (
            false,
            reasons::TOKEN_EXPIRED,
            format!(
                "the token expired at {} and renewal fails: {}",
                time(t.expires_at).0,
                f.message
            ),
        ),
        (None, Some(f), None) => (false, reasons::TOKEN_REQUEST_FAILED, f.message.clone()),
        (None, None, _) => (false, reasons::PROGRESSING, "no token yet".to_owned()),
    };
    set_condition(
        &mut conditions,
        cond(
            types::TOKEN_ISSUED,
            token_ok,
            token_reason,
            token_message.clone(),
            g,
        ),
        now_t.clone(),
    );
    status.token = obs.token.as_ref().map(|t| TokenStatus {
        issued_at: Some(time(t.issued_at)),
        expires_at: Some(time(t.expires_at)),
        renew_at: Some(time(t.renew_at)),
    });
    status.domains = obs.domains.clone();

    // Secrets.
    let sel = obs.namespaces_selected;
    let synced = obs.namespaces_synced;
    let (secrets_ok, secrets_reason, secrets_message) = if sel == 0 {
        // Selecting nothing is not an error (a selector waiting for its first namespace);
        // selecting only namespaces the policy forbids is.
        match obs.namespace_failures.first() {
            Some(f) => (
                false,
                if f.reason == reasons::NAMESPACE_NOT_ALLOWED {
                    reasons::NAMESPACE_NOT_ALLOWED
                } else {
                    reasons::SECRET_SYNC_FAILED
                },
                format!(
                    "no usable namespace: {}",
                    summarize(&obs.namespace_failures)
                ),
            ),
            None => (
                true,
                reasons::NO_NAMESPACES_SELECTED,
                "the namespace selection matches no namespace; nothing to write".to_owned(),
            ),
        }
    } else if synced >= sel && obs.namespace_failures.is_empty() {
        (
            true,
            reasons::SECRETS_SYNCED,
            format!("{synced}/{sel} namespaces hold the current pull Secret"),
        )
    } else if obs.namespace_failures.is_empty() {
        (
            false,
            reasons::PROGRESSING,
            format!("{synced}/{sel} namespaces synced; waiting for a valid registry token"),
        )
    } else {
        let reason = obs
            .namespace_failures
            .first()
            .map(|f| match f.reason.as_str() {
                reasons::SECRET_OWNED_BY_OTHERS => reasons::SECRET_OWNED_BY_OTHERS,
                reasons::NAMESPACE_NOT_ALLOWED => reasons::NAMESPACE_NOT_ALLOWED,
                _ => reasons::SECRET_SYNC_FAILED,
            })
            .unwrap_or(reasons::SECRET_SYNC_FAILED);
        (
            false,
            reason,
            format!(
                "{synced}/{sel} namespaces synced; {}",
                summarize(&obs.namespace_failures)
            ),
        )
    };
    set_condition(
        &mut conditions,
        cond(
            types::SECRETS_SYNCED,
            secrets_ok,
            secrets_reason,
            secrets_message.clone(),
            g,
        ),
        now_t.clone(),
    );
    status.namespaces = Some(NamespacesStatus::new(
        sel,
        synced,
        obs.namespace_failures.clone(),
    ));

    // ServiceAccounts.
    let sa_sel = obs.service_accounts_selected;
    let bound = obs.service_accounts_bound;
    let (sa_ok, sa_reason, sa_message) =
        if bound >= sa_sel && obs.service_account_failures.is_empty() {
            (
                true,
                reasons::SERVICE_ACCOUNTS_BOUND,
                format!("{bound}/{sa_sel} ServiceAccounts reference the pull Secret"),
            )
        } else {
            match obs.service_account_failures.first() {
                Some(detail) => (
                    false,
                    reasons::SERVICE_ACCOUNT_PATCH_FAILED,
                    format!("{bound}/{sa_sel} ServiceAccounts bound; {detail}"),
                ),
                None => (
                    false,
                    reasons::PROGRESSING,
                    format!("{bound}/{sa_sel} ServiceAccounts bound; waiting for the pull Secret"),
                ),
            }
        };
    set_condition(
        &mut conditions,
        cond(
            types::SERVICE_ACCOUNTS_BOUND,
            sa_ok,
            sa_reason,
            sa_message.clone(),
            g,
        ),
        now_t.clone(),
    );
    status.service_accounts = Some(ServiceAccountsStatus {
        selected: i32::try_from(sa_sel).unwrap_or(i32::MAX),
        bound: i32::try_from(bound).unwrap_or(i32::MAX),
    });

    // Ready: pods in every selected namespace can pull.
    let ready = token_ok && secrets_ok && sa_ok;
    let (ready_reason, ready_message) = if !token_ok {
        (token_reason, token_message)
    } else if !secrets_ok {
        (secrets_reason, secrets_message)
    } else if !sa_ok {
        (sa_reason, sa_message)
    } else if token_reason == reasons::RENEWAL_FAILING {
        (token_reason, token_message)
    } else if sel == 0 {
        (secrets_reason, secrets_message)
    } else {
        (
            reasons::RECONCILED,
            format!(
                "{synced}/{sel} namespaces and {bound}/{sa_sel} ServiceAccounts hold a token valid until {}",
                obs.token
                    .as_ref()
                    .map(|t| time(t.expires_at).0.to_string())
                    .unwrap_or_default()
            ),
        )
    };
    set_condition(
        &mut conditions,
        cond(types::READY, ready, ready_reason, ready_message.clone(), g),
        now_t.clone(),
    );
    set_kstatus_conditions(
        &mut conditions,
        obs,
        (ready, ready_reason, &ready_message),
        now,
    );
    status.conditions = conditions;

    // The most recent failure, kept after recovery.
    let failure = obs
        .token_failure
        .as_ref()
        .map(|f| (time(f.at), f.reason.to_owned(), f.message.clone()))
        .or_else(|| {
            obs.namespace_failures.first().map(|f| {
                (
                    now_t.clone(),
                    f.reason.clone(),
                    format!("{}: {}", f.name, f.message),
                )
            })
        })
        .or_else(|| {
            obs.service_account_failures.first().map(|m| {
                (
                    now_t.clone(),
                    reasons::SERVICE_ACCOUNT_PATCH_FAILED.to_owned(),
                    m.clone(),
                )
            })
        });
    if let Some((at, reason, message)) = failure {
        let same = status
            .last_failure
            .as_ref()
            .is_some_and(|f| f.reason == reason && f.message == message);
        if !same {
            status.last_failure = Some(FailureRecord {
                time: at,
                reason,
                message,
            });
        }
    }
    status
}

/// The kstatus conditions after a full reconcile: `Stalled=True` for problems only a change can
/// fix (a selected namespace the policy forbids, a registry instance the cloud does not know),
/// `Reconciling=True` while the binding waits for something that is on its way; both are
/// removed otherwise.
fn set_kstatus_conditions(
    conditions: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    obs: &BindingObservation,
    (ready, ready_reason, ready_message): (bool, &'static str, &str),
    now: Timestamp,
) {
    let g = obs.generation;
    let now_t = time(now);
    let not_allowed: Vec<NamespaceFailure> = obs
        .namespace_failures
        .iter()
        .filter(|f| f.reason == reasons::NAMESPACE_NOT_ALLOWED)
        .cloned()
        .collect();
    let token_valid = obs.token.as_ref().is_some_and(|t| t.valid_at(now));
    let stalled = if !not_allowed.is_empty() {
        Some((reasons::NAMESPACE_NOT_ALLOWED, summarize(&not_allowed)))
    } else {
        obs.token_failure
            .as_ref()
            .filter(|f| f.reason == reasons::NOT_FOUND && !token_valid)
            .map(|f| (reasons::NOT_FOUND, f.message.clone()))
    };
    match stalled {
        Some((reason, message)) => {
            set_condition(
                conditions,
                cond(types::STALLED, true, reason, message, g),
                now_t.clone(),
            );
        }
        None => {
            remove_condition(conditions, types::STALLED);
        }
    }
    let stalled = find_condition(conditions, types::STALLED).is_some();
    if !ready && !stalled && ready_reason == reasons::PROGRESSING {
        set_condition(
            conditions,
            cond(
                types::RECONCILING,
                true,
                reasons::PROGRESSING,
                ready_message.to_owned(),
                g,
            ),
            now_t,
        );
    } else {
        remove_condition(conditions, types::RECONCILING);
    }
}

/// The status to write when a reconcile starts on a generation the status does not reflect yet
/// (a new binding or a spec change): `observedGeneration` moves on, `Reconciling=True` says the
/// work is in flight, a `Stalled` verdict about the old spec goes, and `Ready` is `Unknown` if it
/// was never set. `None` when the status already describes this generation.
pub fn reconciling_status(
    previous: Option<&AcrRegistryBindingStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<AcrRegistryBindingStatus> {
    if previous.is_some_and(|p| p.observed_generation == generation) {
        return None;
    }
    let now_t = time(now);
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    let message = match generation {
        Some(g) => format!("reconciling generation {g}"),
        None => "reconciling".to_owned(),
    };
    remove_condition(&mut status.conditions, types::STALLED);
    if find_condition(&status.conditions, types::READY).is_none() {
        set_condition(
            &mut status.conditions,
            NewCondition {
                type_: types::READY,
                status: st::UNKNOWN,
                reason: reasons::PROGRESSING,
                message: "not reconciled yet".to_owned(),
                observed_generation: generation,
            },
            now_t.clone(),
        );
    }
    set_condition(
        &mut status.conditions,
        cond(
            types::RECONCILING,
            true,
            reasons::PROGRESSING,
            message,
            generation,
        ),
        now_t,
    );
    Some(status)
}

/// Server-side applies `status` to the `/status` subresource of the cluster-scoped object
/// `name` of kind `K`, as field manager `manager`.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, manager: &str, status: &S) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    crate::metrics::write(&K::kind(&()), "status");
    Ok(())
}

#[cfg(test)]
mod tests;
