//! What one namespace should become, decided in full before anything is written (pure): the
//! pull Secret to create, update, keep or delete, and for every ServiceAccount whether it
//! should list that Secret. `binding::plan` gathers the inputs (caches, held tokens) and
//! `binding::converge` carries the plan out; what came of it is a [`NamespaceOutcome`].
//!
//! One Secret per namespace holds the auths of every live binding that selects the namespace
//! and holds a valid token ([`super::secret::desired_secret`]). A same-named Secret that is not
//! ours is left alone and no ServiceAccount is bound to it ([`leave_others`]). When no binding
//! selects the namespace any more, our ServiceAccount entries go first and then our Secret. A
//! namespace whose bindings merely lack a valid token right now keeps its Secret as it is:
//! never empty, never rewritten with an expired token.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Resource, ResourceExt};

use super::cached_service_account::CachedServiceAccount;
use super::resolve::Resolved;
use super::secret::{Contribution, desired_secret, is_ours, needs_update};
use super::selection::service_account_selected;
use super::service_accounts::{Entry, entry, is_bound};

/// What happened to the namespace's Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretState {
    /// Ours and current.
    Current,
    /// No binding has a valid token for it yet (or any more); left as it is.
    Waiting,
    /// A same-named Secret that is not ours.
    OwnedByOthers,
    /// No Secret (none is wanted).
    Absent,
}

/// The outcome of converging one namespace.
#[derive(Clone, Debug)]
pub struct NamespaceOutcome {
    pub secret: SecretState,
    /// Bindings whose auths the Secret holds.
    pub contributors: BTreeSet<String>,
    /// Every ServiceAccount of the namespace, as converged.
    pub service_accounts: Vec<ServiceAccountOutcome>,
    /// ServiceAccount patches that failed.
    pub service_account_errors: Vec<String>,
}

/// One ServiceAccount after converging its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountOutcome {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Whether it lists our Secret now.
    pub bound: bool,
}

/// The whole plan for one namespace.
#[derive(Clone, Debug)]
pub struct NamespacePlan {
    pub state: SecretState,
    /// Bindings whose auths the Secret holds once written.
    pub contributors: BTreeSet<String>,
    /// The Secret to create or update; `None` when it is current or none is wanted.
    pub write: Option<SecretWrite>,
    /// Our Secret, to delete once our ServiceAccount entries are gone (nothing selects the
    /// namespace any more).
    pub delete: Option<Arc<Secret>>,
    /// Every ServiceAccount of the namespace, and whether it should list the Secret.
    pub service_accounts: Vec<ServiceAccountStep>,
}

/// A Secret write: what the Secret should be, and the copy it replaces (none: create).
#[derive(Clone, Debug)]
pub struct SecretWrite {
    pub desired: Secret,
    pub existing: Option<Arc<Secret>>,
}

/// One ServiceAccount's part of the plan.
#[derive(Clone, Debug)]
pub struct ServiceAccountStep {
    pub service_account: Arc<CachedServiceAccount>,
    /// Whether it should list our Secret.
    pub wanted: bool,
    /// The binding that asked for injection at creation and existed when this ServiceAccount
    /// was created (creation times are whole seconds: the same second counts), should we have
    /// to add the entry now: the webhook was down, skipped it or was not called.
    pub missed_injection: Option<String>,
}

impl NamespacePlan {
    /// Whether `step`'s ServiceAccount lists our Secret `secret` after its patch: `wrote` is
    /// whether a patch was sent, `None` when the patch failed. Next to someone else's Secret,
    /// whatever the cached copy lists.
    pub fn bound_after(
        &self,
        step: &ServiceAccountStep,
        secret: &str,
        wrote: Option<bool>,
    ) -> bool {
        let sa = &step.service_account;
        match wrote {
            // Ours now, or an entry someone else added and we leave alone.
            Some(_) if self.state != SecretState::OwnedByOthers => {
                step.wanted || entry(&**sa, secret) == Entry::Others
            }
            _ => is_bound(&**sa, secret),
        }
    }
}

impl ServiceAccountStep {
    /// The outcome, given whether it is bound now.
    pub fn outcome(&self, bound: bool) -> ServiceAccountOutcome {
        ServiceAccountOutcome {
            name: self.service_account.name_any(),
            labels: self.service_account.labels().clone(),
            bound,
        }
    }
}

/// The plan for `namespace`, whose pull Secret `secret_name` is `existing` (the cached copy or
/// our own last write; ours or absent, see [`leave_others`] otherwise), selected by `selecting`
/// whose valid tokens make `contributions`, holding `service_accounts`.
pub fn plan_namespace(
    secret_name: &str,
    namespace: &str,
    existing: Option<Arc<Secret>>,
    selecting: &[&Resolved],
    contributions: &[Contribution],
    service_accounts: &[Arc<CachedServiceAccount>],
) -> NamespacePlan {
    let contributors: BTreeSet<String> = contributions.iter().map(|c| c.binding.clone()).collect();
    let desired = desired_secret(secret_name, namespace, contributions);
    let state = plan_secret(existing.is_some(), desired.is_some(), !selecting.is_empty());
    let present = matches!(state, SecretState::Current | SecretState::Waiting)
        && (existing.is_some() || desired.is_some());
    let service_accounts = service_accounts
        .iter()
        .map(|sa| {
            let name = sa.name_any();
            let selected_by =
                |b: &&&Resolved| service_account_selected(&b.service_accounts, &name, sa.labels());
            let wanted = present
                && sa.meta().deletion_timestamp.is_none()
                && selecting.iter().any(|b| selected_by(&b));
            ServiceAccountStep {
                service_account: sa.clone(),
                wanted,
                missed_injection: wanted.then(|| missed_injection(sa, selecting)).flatten(),
            }
        })
        .collect();
    let delete = match state {
        SecretState::Absent => existing.clone(),
        _ => None,
    };
    let write = desired
        .filter(|d| existing.as_ref().is_none_or(|e| needs_update(e, d)))
        .map(|desired| SecretWrite {
            desired,
            existing: existing.clone(),
        });
    NamespacePlan {
        state,
        contributors,
        write,
        delete,
        service_accounts,
    }
}

/// A same-named Secret that is not ours: leave it alone and bind no ServiceAccount to it; still
/// remove entries we recorded earlier (no binding can want them).
pub fn leave_others(service_accounts: &[Arc<CachedServiceAccount>]) -> NamespacePlan {
    NamespacePlan {
        state: SecretState::OwnedByOthers,
        contributors: BTreeSet::new(),
        write: None,
        delete: None,
        service_accounts: service_accounts
            .iter()
            .map(|sa| ServiceAccountStep {
                service_account: sa.clone(),
                wanted: false,
                missed_injection: None,
            })
            .collect(),
    }
}

/// Whether the Secret found in the namespace is someone else's (then [`leave_others`]).
pub fn others_secret(existing: Option<&Secret>) -> bool {
    existing.is_some_and(|s| !is_ours(s))
}

/// What becomes of our Secret (the cached one is ours or absent): current when a Secret is
/// wanted; otherwise left waiting while some binding selects the namespace, absent when none
/// does.
pub fn plan_secret(exists: bool, desired: bool, selected: bool) -> SecretState {
    match (exists, desired) {
        (_, true) => SecretState::Current,
        (true, false) if selected => SecretState::Waiting,
        (true, false) => SecretState::Absent,
        (false, false) if !selected => SecretState::Absent,
        (false, false) => SecretState::Waiting,
    }
}

/// The binding whose injection at creation this ServiceAccount missed, if any (see
/// [`ServiceAccountStep::missed_injection`]).
fn missed_injection(sa: &CachedServiceAccount, selecting: &[&Resolved]) -> Option<String> {
    let created = sa.meta().creation_timestamp.as_ref().map(|t| t.0)?;
    let name = sa.name_any();
    selecting
        .iter()
        .find(|b| {
            b.inject_on_create
                && b.created_at.is_some_and(|at| created >= at)
                && service_account_selected(&b.service_accounts, &name, sa.labels())
        })
        .map(|b| b.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_secret_keeps_a_selected_namespace_waiting_and_lets_an_unselected_one_go() {
        // (exists, desired, selected) -> state
        let cases = [
            ((false, true, true), SecretState::Current),
            ((true, true, true), SecretState::Current),
            ((true, true, false), SecretState::Current),
            ((true, false, true), SecretState::Waiting),
            ((false, false, true), SecretState::Waiting),
            ((true, false, false), SecretState::Absent),
            ((false, false, false), SecretState::Absent),
        ];
        for ((exists, desired, selected), want) in cases {
            assert_eq!(
                plan_secret(exists, desired, selected),
                want,
                "exists={exists} desired={desired} selected={selected}"
            );
        }
    }
}
