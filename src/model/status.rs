//! Binding status: the pure builders of every status a binding reconcile writes, from what it
//! observed ([`binding_status`]) or, before the slow stages, from the new generation alone
//! ([`reconciling_status`]). [`Verdict`] and [`time`] serve the policy's builder too. Sending
//! is `binding::status`'s.
//!
//! [`binding_status`] is a short sequence of steps: a blocked binding reports its [`Blocker`];
//! otherwise [`token_issued`], [`secrets_synced`] and [`service_accounts_bound`] each give a
//! [`Verdict`], [`ready`], [`stalled`] and [`reconciling`] are derived from those,
//! [`renewal_paced`] says how a renewal wave under way fits the write budget, and
//! [`latest_failure`] is recorded. Each step is a plain function with its own unit test.
//!
//! Conditions keep their `lastTransitionTime` unless their status changes (see
//! [`set_condition`]); times are whole seconds, so an unchanged status compares equal and is
//! not written again. Messages carry cloud error codes and RequestIds, never a secret.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::token::{HeldToken, TokenFailure};
use super::wave::WavePace;
use crate::api::conditions::{
    NewCondition, reasons, remove_condition, set_condition, status as st, types,
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
    /// [`super::adopt::token_digest`] of `token`, recorded so a restart can recognise it.
    pub token_digest: Option<String>,
    pub token_failure: Option<TokenFailure>,
    pub domains: Vec<String>,
    pub namespaces_selected: usize,
    pub namespaces_synced: usize,
    pub namespace_failures: Vec<NamespaceFailure>,
    pub service_accounts_selected: usize,
    pub service_accounts_bound: usize,
    /// Messages of ServiceAccount patches that failed.
    pub service_account_failures: Vec<String>,
    /// `status.rotation` after this reconcile ([`super::rotation::handled`]); `None` keeps the
    /// previous one.
    pub rotation: Option<crate::api::RotationStatus>,
    /// The renewal wave this reconcile paced, if one is under way.
    pub renewal: Option<WavePace>,
}

/// One condition's verdict before it is written: `True`/`False`, a reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Verdict {
    pub fn new(ok: bool, reason: &'static str, message: String) -> Self {
        Self {
            ok,
            reason,
            message,
        }
    }

    /// The condition of this type, at this generation, that says this verdict.
    pub fn condition(&self, type_: &'static str, generation: Option<i64>) -> NewCondition<'static> {
        NewCondition {
            type_,
            status: if self.ok { st::TRUE } else { st::FALSE },
            reason: self.reason,
            message: self.message.clone(),
            observed_generation: generation,
        }
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

/// The status a binding should have, given its previous status and this observation: a blocked
/// binding reports its blocker; otherwise the three observed conditions are built, `Ready`,
/// `Stalled` and `Reconciling` are derived from them, and the latest failure is recorded.
pub fn binding_status(
    previous: Option<&AcrRegistryBindingStatus>,
    obs: &BindingObservation,
    now: Timestamp,
) -> AcrRegistryBindingStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = obs.generation;
    status.registry = Some(obs.registry.clone());
    if let Some(blocker) = &obs.blocker {
        set_blocked_conditions(&mut status.conditions, blocker, obs.generation, now);
        record_failure(
            &mut status.last_failure,
            Some(blocker_failure(blocker, now)),
        );
        return status;
    }
    let token = token_issued(obs, now);
    let secrets = secrets_synced(obs);
    let accounts = service_accounts_bound(obs);
    let ready = ready(obs, &token, &secrets, &accounts);
    let stalled = stalled(obs, now);
    let reconciling = reconciling(&ready, stalled.is_some());
    write_counts(&mut status, obs);
    if let Some(rotation) = &obs.rotation {
        status.rotation = Some(rotation.clone());
    }
    let (g, now_t) = (obs.generation, time(now));
    let conditions = &mut status.conditions;
    for (type_, verdict) in [
        (types::TOKEN_ISSUED, &token),
        (types::SECRETS_SYNCED, &secrets),
        (types::SERVICE_ACCOUNTS_BOUND, &accounts),
        (types::READY, &ready),
    ] {
        set_condition(conditions, verdict.condition(type_, g), now_t.clone());
    }
    set_while(conditions, types::STALLED, stalled.as_ref(), g, &now_t);
    set_while(
        conditions,
        types::RECONCILING,
        reconciling.as_ref(),
        g,
        &now_t,
    );
    if let Some(pace) = &obs.renewal {
        let verdict = renewal_paced(pace);
        set_condition(
            conditions,
            verdict.condition(types::RENEWAL_PACED, g),
            now_t,
        );
    }
    record_failure(&mut status.last_failure, latest_failure(obs, now));
    status
}

/// A blocked binding: the three observed conditions are `Unknown` (not attempted), `Ready=False`
/// and `Stalled=True` name the blocker — every blocker waits for a change of the binding or its
/// policy, which is terminal for kstatus — and `Reconciling` goes.
fn set_blocked_conditions(
    conditions: &mut Vec<Condition>,
    blocker: &Blocker,
    g: Option<i64>,
    now: Timestamp,
) {
    let now_t = time(now);
    for type_ in [
        types::TOKEN_ISSUED,
        types::SECRETS_SYNCED,
        types::SERVICE_ACCOUNTS_BOUND,
    ] {
        let not_attempted = NewCondition {
            type_,
            status: st::UNKNOWN,
            reason: blocker.reason,
            message: format!("not attempted: {}", blocker.message),
            observed_generation: g,
        };
        set_condition(conditions, not_attempted, now_t.clone());
    }
    let verdict = Verdict::new(false, blocker.reason, blocker.message.clone());
    set_condition(
        conditions,
        verdict.condition(types::READY, g),
        now_t.clone(),
    );
    let verdict = Verdict::new(true, blocker.reason, blocker.message.clone());
    set_condition(conditions, verdict.condition(types::STALLED, g), now_t);
    remove_condition(conditions, types::RECONCILING);
}

/// `RenewalPaced`: whether the renewal wave fits the write budget, or goes over it to keep
/// every token's margin. Whole writes per second, so one wave says one thing.
pub fn renewal_paced(pace: &WavePace) -> Verdict {
    let (n, window) = (pace.namespaces, pace.window.as_secs());
    let needed = pace.needed().ceil();
    match pace.over_budget() {
        false => Verdict::new(
            true,
            reasons::WITHIN_BUDGET,
            format!(
                "renewal rewrites of {n} namespaces spread over {window} s ({needed:.0} writes/s), within the write budget of {:.0} writes/s",
                pace.budget
            ),
        ),
        true => Verdict::new(
            false,
            reasons::RENEWAL_OVER_BUDGET,
            format!(
                "renewing {n} namespaces within {window} s (before the old token has half its renewBefore left) needs {needed:.0} writes/s, over the write budget of {:.0} writes/s: the controller writes over budget rather than let a token near expiry; raise the write budget or renewBefore",
                pace.budget
            ),
        ),
    }
}

/// `TokenIssued`: whether the binding holds a valid token, and how renewal is going.
pub fn token_issued(obs: &BindingObservation, now: Timestamp) -> Verdict {
    let valid = obs.token.as_ref().filter(|t| t.valid_at(now));
    match (valid, &obs.token_failure, &obs.token) {
        (Some(t), None, _) => Verdict::new(
            true,
            reasons::TOKEN_ISSUED,
            format!(
                "token valid until {}, renewal at {}",
                time(t.expires_at).0,
                time(t.renew_at).0
            ),
        ),
        (Some(t), Some(f), _) => Verdict::new(
            true,
            reasons::RENEWAL_FAILING,
            format!(
                "Degraded: renewal failing, the current token stays valid until {}: {}",
                time(t.expires_at).0,
                f.message
            ),
        ),
        (None, Some(f), Some(t)) => Verdict::new(
            false,
            reasons::TOKEN_EXPIRED,
            format!(
                "the token expired at {} and renewal fails: {}",
                time(t.expires_at).0,
                f.message
            ),
        ),
        (None, Some(f), None) => {
            Verdict::new(false, reasons::TOKEN_REQUEST_FAILED, f.message.clone())
        }
        (None, None, _) => Verdict::new(false, reasons::PROGRESSING, "no token yet".to_owned()),
    }
}

/// `SecretsSynced`: whether every selected namespace holds the current pull Secret.
pub fn secrets_synced(obs: &BindingObservation) -> Verdict {
    let (sel, synced) = (obs.namespaces_selected, obs.namespaces_synced);
    let failures = &obs.namespace_failures;
    if sel == 0 {
        // Selecting nothing is not an error (a selector waiting for its first namespace);
        // selecting only namespaces the policy forbids is.
        return match failures.first() {
            Some(f) => Verdict::new(
                false,
                if f.reason == reasons::NAMESPACE_NOT_ALLOWED {
                    reasons::NAMESPACE_NOT_ALLOWED
                } else {
                    reasons::SECRET_SYNC_FAILED
                },
                format!("no usable namespace: {}", summarize(failures)),
            ),
            None => Verdict::new(
                true,
                reasons::NO_NAMESPACES_SELECTED,
                "the namespace selection matches no namespace; nothing to write".to_owned(),
            ),
        };
    }
    match failures.first() {
        None if synced >= sel => Verdict::new(
            true,
            reasons::SECRETS_SYNCED,
            format!("{synced}/{sel} namespaces hold the current pull Secret"),
        ),
        None => Verdict::new(
            false,
            reasons::PROGRESSING,
            format!("{synced}/{sel} namespaces synced; waiting for a valid registry token"),
        ),
        Some(first) => Verdict::new(
            false,
            match first.reason.as_str() {
                reasons::SECRET_OWNED_BY_OTHERS => reasons::SECRET_OWNED_BY_OTHERS,
                reasons::NAMESPACE_NOT_ALLOWED => reasons::NAMESPACE_NOT_ALLOWED,
                _ => reasons::SECRET_SYNC_FAILED,
            },
            format!("{synced}/{sel} namespaces synced; {}", summarize(failures)),
        ),
    }
}

/// `ServiceAccountsBound`: whether every selected ServiceAccount references the pull Secret.
pub fn service_accounts_bound(obs: &BindingObservation) -> Verdict {
    let (sel, bound) = (obs.service_accounts_selected, obs.service_accounts_bound);
    match obs.service_account_failures.first() {
        None if bound >= sel => Verdict::new(
            true,
            reasons::SERVICE_ACCOUNTS_BOUND,
            format!("{bound}/{sel} ServiceAccounts reference the pull Secret"),
        ),
        Some(detail) => Verdict::new(
            false,
            reasons::SERVICE_ACCOUNT_PATCH_FAILED,
            format!("{bound}/{sel} ServiceAccounts bound; {detail}"),
        ),
        None => Verdict::new(
            false,
            reasons::PROGRESSING,
            format!("{bound}/{sel} ServiceAccounts bound; waiting for the pull Secret"),
        ),
    }
}

/// `Ready` (pods in every selected namespace can pull), derived from the three others: the
/// first one that is not `True` explains it; a failing renewal or an empty selection is worth
/// saying even when all are `True`.
pub fn ready(
    obs: &BindingObservation,
    token: &Verdict,
    secrets: &Verdict,
    accounts: &Verdict,
) -> Verdict {
    let ok = token.ok && secrets.ok && accounts.ok;
    let explained_by = if !token.ok {
        token
    } else if !secrets.ok {
        secrets
    } else if !accounts.ok {
        accounts
    } else if token.reason == reasons::RENEWAL_FAILING {
        token
    } else if obs.namespaces_selected == 0 {
        secrets
    } else {
        return Verdict::new(
            true,
            reasons::RECONCILED,
            format!(
                "{}/{} namespaces and {}/{} ServiceAccounts hold a token valid until {}",
                obs.namespaces_synced,
                obs.namespaces_selected,
                obs.service_accounts_bound,
                obs.service_accounts_selected,
                obs.token
                    .as_ref()
                    .map(|t| time(t.expires_at).0.to_string())
                    .unwrap_or_default()
            ),
        );
    };
    Verdict::new(ok, explained_by.reason, explained_by.message.clone())
}

/// kstatus `Stalled=True` for problems only a change can fix: a selected namespace the policy
/// forbids, or a registry instance the cloud does not know while no token is valid.
pub fn stalled(obs: &BindingObservation, now: Timestamp) -> Option<Verdict> {
    let not_allowed: Vec<NamespaceFailure> = obs
        .namespace_failures
        .iter()
        .filter(|f| f.reason == reasons::NAMESPACE_NOT_ALLOWED)
        .cloned()
        .collect();
    if !not_allowed.is_empty() {
        return Some(Verdict::new(
            true,
            reasons::NAMESPACE_NOT_ALLOWED,
            summarize(&not_allowed),
        ));
    }
    let token_valid = obs.token.as_ref().is_some_and(|t| t.valid_at(now));
    obs.token_failure
        .as_ref()
        .filter(|f| f.reason == reasons::NOT_FOUND && !token_valid)
        .map(|f| Verdict::new(true, reasons::NOT_FOUND, f.message.clone()))
}

/// kstatus `Reconciling=True` while the binding is not Ready only because something is on its
/// way (and it is not stalled).
pub fn reconciling(ready: &Verdict, stalled: bool) -> Option<Verdict> {
    (!ready.ok && !stalled && ready.reason == reasons::PROGRESSING)
        .then(|| Verdict::new(true, reasons::PROGRESSING, ready.message.clone()))
}

/// Sets a kstatus condition while it holds and removes it otherwise.
fn set_while(
    conditions: &mut Vec<Condition>,
    type_: &'static str,
    verdict: Option<&Verdict>,
    g: Option<i64>,
    now_t: &Time,
) {
    match verdict {
        Some(v) => {
            set_condition(conditions, v.condition(type_, g), now_t.clone());
        }
        None => {
            remove_condition(conditions, type_);
        }
    }
}

/// The token times, domains and namespace and ServiceAccount counts of the observation.
fn write_counts(status: &mut AcrRegistryBindingStatus, obs: &BindingObservation) {
    status.token = obs.token.as_ref().map(|t| TokenStatus {
        issued_at: Some(time(t.issued_at)),
        expires_at: Some(time(t.expires_at)),
        renew_at: Some(time(t.renew_at)),
        digest: obs.token_digest.clone(),
    });
    status.domains = obs.domains.clone();
    status.namespaces = Some(NamespacesStatus::new(
        obs.namespaces_selected,
        obs.namespaces_synced,
        obs.namespace_failures.clone(),
    ));
    status.service_accounts = Some(ServiceAccountsStatus {
        selected: i32::try_from(obs.service_accounts_selected).unwrap_or(i32::MAX),
        bound: i32::try_from(obs.service_accounts_bound).unwrap_or(i32::MAX),
    });
}

fn blocker_failure(blocker: &Blocker, now: Timestamp) -> FailureRecord {
    FailureRecord {
        time: time(now),
        reason: blocker.reason.to_owned(),
        message: blocker.message.clone(),
    }
}

/// The most recent failure of this reconcile: the token's, else the first namespace's, else the
/// first ServiceAccount's.
pub fn latest_failure(obs: &BindingObservation, now: Timestamp) -> Option<FailureRecord> {
    let token = obs.token_failure.as_ref().map(|f| FailureRecord {
        time: time(f.at),
        reason: f.reason.to_owned(),
        message: f.message.clone(),
    });
    token
        .or_else(|| {
            obs.namespace_failures.first().map(|f| FailureRecord {
                time: time(now),
                reason: f.reason.clone(),
                message: format!("{}: {}", f.name, f.message),
            })
        })
        .or_else(|| {
            obs.service_account_failures.first().map(|m| FailureRecord {
                time: time(now),
                reason: reasons::SERVICE_ACCOUNT_PATCH_FAILED.to_owned(),
                message: m.clone(),
            })
        })
}

/// Keeps the last failure after recovery; a failure with the same reason and message keeps
/// its first time.
fn record_failure(last: &mut Option<FailureRecord>, failure: Option<FailureRecord>) {
    let Some(failure) = failure else { return };
    let same = last
        .as_ref()
        .is_some_and(|f| f.reason == failure.reason && f.message == failure.message);
    if !same {
        *last = Some(failure);
    }
}

/// The status to write when a reconcile starts on a generation the status does not reflect yet
/// (a new binding or a spec change): `observedGeneration` moves on and the conditions say the
/// work is in flight ([`start_generation`]). `None` when the status already describes this
/// generation.
pub fn reconciling_status(
    previous: Option<&AcrRegistryBindingStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<AcrRegistryBindingStatus> {
    if previous.is_some_and(|p| p.observed_generation == generation) {
        return None;
    }
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    start_generation(&mut status.conditions, generation, now);
    Some(status)
}

/// The conditions of either kind while a new generation is being converged (the Flux
/// convention): `Reconciling=True`, and `Ready=Unknown` (reason `Progressing`) at that
/// generation, so nothing reads the old generation's `Ready=True` as the new spec's (`kubectl
/// wait --for=condition=Ready` waits for the pass's own verdict); a `Stalled` verdict about the
/// old spec goes. The other conditions keep the generation they describe until the pass
/// decides them.
pub fn start_generation(conditions: &mut Vec<Condition>, generation: Option<i64>, now: Timestamp) {
    let now_t = time(now);
    let message = match generation {
        Some(g) => format!("reconciling generation {g}"),
        None => "reconciling".to_owned(),
    };
    remove_condition(conditions, types::STALLED);
    set_condition(
        conditions,
        NewCondition {
            type_: types::READY,
            status: st::UNKNOWN,
            reason: reasons::PROGRESSING,
            message: message.clone(),
            observed_generation: generation,
        },
        now_t.clone(),
    );
    set_condition(
        conditions,
        Verdict::new(true, reasons::PROGRESSING, message).condition(types::RECONCILING, generation),
        now_t,
    );
}

#[cfg(test)]
mod tests;
