//! Condition types, reasons and the pure helpers that maintain `status.conditions`
//! (the `metav1.Condition` shape, a list-map keyed by `type`).
//!
//! `lastTransitionTime` moves only when a condition's `status` really changes, so watchers
//! (Argo CD, Flux/kstatus, `kubectl wait`) see a stable history.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub mod types {
    /// Summary: the object does what it says. Both kinds.
    pub const READY: &str = "Ready";
    /// A registry token was obtained and is not expired. Bindings.
    pub const TOKEN_ISSUED: &str = "TokenIssued";
    /// Every selected namespace holds a Secret with the current token. Bindings.
    pub const SECRETS_SYNCED: &str = "SecretsSynced";
    /// Every selected ServiceAccount lists the Secret in imagePullSecrets. Bindings.
    pub const SERVICE_ACCOUNTS_BOUND: &str = "ServiceAccountsBound";
    /// kstatus: a terminal problem that retrying will not fix; only a change to the object (or
    /// to what it refers to) helps. Present only while `True`. Both kinds.
    pub const STALLED: &str = "Stalled";
    /// kstatus: the controller is working towards the current generation (first convergence
    /// or a spec change in flight). Present only while `True`. Bindings.
    pub const RECONCILING: &str = "Reconciling";
    /// Whether the last renewal wave fit the write budget (`False`: the controller wrote over
    /// budget to keep every token's margin). Set once the binding's first wave is paced.
    /// Bindings.
    pub const RENEWAL_PACED: &str = "RenewalPaced";
}

/// Condition statuses.
pub mod status {
    /// The condition holds.
    pub const TRUE: &str = "True";
    /// The condition does not hold.
    pub const FALSE: &str = "False";
    /// Not known yet.
    pub const UNKNOWN: &str = "Unknown";
}

/// Condition reasons (the `reason` of a binding's or policy's `status.conditions`; CamelCase,
/// stable: they are API and metric label values). Events that report a condition's change use
/// them too; Event-only reasons are in `model::events::reasons`.
pub mod reasons {
    /// Everything is in place.
    pub const RECONCILED: &str = "Reconciled";
    /// The controller has not finished its first pass over the object.
    pub const PROGRESSING: &str = "Progressing";
    /// The spec breaks a validation rule; the controller waits for a change.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The binding's policy does not exist.
    pub const POLICY_NOT_FOUND: &str = "PolicyNotFound";
    /// The binding's policy exists but is not ready.
    pub const POLICY_NOT_READY: &str = "PolicyNotReady";
    /// The policy's credential source failed (metadata service, RRSA, AccessKey Secret, STS).
    pub const CREDENTIALS_FAILED: &str = "CredentialsFailed";
    /// A token was issued.
    pub const TOKEN_ISSUED: &str = "TokenIssued";
    /// The registry refused or failed the token request.
    pub const TOKEN_REQUEST_FAILED: &str = "TokenRequestFailed";
    /// Renewal is failing but the last token is still valid and still served.
    pub const RENEWAL_FAILING: &str = "RenewalFailing";
    /// The last token expired and no new one could be obtained.
    pub const TOKEN_EXPIRED: &str = "TokenExpired";
    /// All Secrets are current.
    pub const SECRETS_SYNCED: &str = "SecretsSynced";
    /// Some Secrets could not be written.
    pub const SECRET_SYNC_FAILED: &str = "SecretSyncFailed";
    /// A Secret with our name exists but is not ours; it is left alone.
    pub const SECRET_OWNED_BY_OTHERS: &str = "SecretOwnedByOthers";
    /// A selected namespace is outside the policy's allowedNamespaces.
    pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
    /// The selection matches no namespace.
    pub const NO_NAMESPACES_SELECTED: &str = "NoNamespacesSelected";
    /// All selected ServiceAccounts reference the Secret.
    pub const SERVICE_ACCOUNTS_BOUND: &str = "ServiceAccountsBound";
    /// Some ServiceAccounts could not be patched.
    pub const SERVICE_ACCOUNT_PATCH_FAILED: &str = "ServiceAccountPatchFailed";
    /// The cloud says the registry instance (or a role on the way) does not exist.
    pub const NOT_FOUND: &str = "NotFound";
    /// The renewal wave is spread over its window within the write budget.
    pub const WITHIN_BUDGET: &str = "WithinBudget";
    /// The renewal wave needs more writes per second than the write budget allows; the
    /// controller writes over budget rather than let a token near expiry.
    pub const RENEWAL_OVER_BUDGET: &str = "RenewalOverBudget";
}

/// A condition to set; [`set_condition`] fills in `lastTransitionTime`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCondition<'a> {
    /// One of [`types`].
    pub type_: &'a str,
    /// One of [`status`].
    pub status: &'a str,
    /// One of [`reasons`].
    pub reason: &'a str,
    /// For humans.
    pub message: String,
    /// The metadata.generation this condition was computed from.
    pub observed_generation: Option<i64>,
}

/// Sets (adds or updates) one condition. `lastTransitionTime` becomes `now` when the condition
/// is new or its status changed, and is kept otherwise. Returns whether anything changed, so the
/// caller can skip a status write.
pub fn set_condition(conditions: &mut Vec<Condition>, new: NewCondition<'_>, now: Time) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let transition_time = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                now
            };
            let updated = Condition {
                type_: new.type_.to_owned(),
                status: new.status.to_owned(),
                reason: new.reason.to_owned(),
                message: new.message,
                observed_generation: new.observed_generation,
                last_transition_time: transition_time,
            };
            let changed = *existing != updated;
            *existing = updated;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: new.type_.to_owned(),
                status: new.status.to_owned(),
                reason: new.reason.to_owned(),
                message: new.message,
                observed_generation: new.observed_generation,
                last_transition_time: now,
            });
            true
        }
    }
}

/// Removes the condition of this type; returns whether it was there. Used for the kstatus
/// conditions (`Stalled`, `Reconciling`), which are only present while they hold.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// The condition of this type, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of this type is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == status::TRUE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn ready(status: &str, reason: &str, msg: &str) -> NewCondition<'static> {
        NewCondition {
            type_: types::READY,
            status: if status == "True" {
                status::TRUE
            } else {
                status::FALSE
            },
            reason: if reason == "a" {
                reasons::RECONCILED
            } else {
                reasons::TOKEN_EXPIRED
            },
            message: msg.to_owned(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn adds_a_new_condition_with_now_as_transition_time() {
        let mut conds = Vec::new();
        assert!(set_condition(
            &mut conds,
            ready("True", "a", "ok"),
            at("2024-01-01T00:00:00Z")
        ));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, at("2024-01-01T00:00:00Z"));
        assert!(is_true(&conds, types::READY));
    }

    #[test]
    fn same_status_keeps_transition_time_but_updates_message() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            ready("True", "a", "ok"),
            at("2024-01-01T00:00:00Z"),
        );
        assert!(set_condition(
            &mut conds,
            ready("True", "a", "still ok"),
            at("2024-01-02T00:00:00Z")
        ));
        assert_eq!(conds[0].last_transition_time, at("2024-01-01T00:00:00Z"));
        assert_eq!(conds[0].message, "still ok");
    }

    #[test]
    fn identical_condition_reports_no_change() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            ready("True", "a", "ok"),
            at("2024-01-01T00:00:00Z"),
        );
        assert!(!set_condition(
            &mut conds,
            ready("True", "a", "ok"),
            at("2024-01-05T00:00:00Z")
        ));
    }

    #[test]
    fn status_change_moves_transition_time() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            ready("True", "a", "ok"),
            at("2024-01-01T00:00:00Z"),
        );
        assert!(set_condition(
            &mut conds,
            ready("False", "b", "expired"),
            at("2024-01-03T00:00:00Z")
        ));
        assert_eq!(conds[0].last_transition_time, at("2024-01-03T00:00:00Z"));
        assert_eq!(conds[0].reason, reasons::TOKEN_EXPIRED);
        assert!(!is_true(&conds, types::READY));
    }

    #[test]
    fn other_types_are_untouched() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            ready("True", "a", "ok"),
            at("2024-01-01T00:00:00Z"),
        );
        let token = NewCondition {
            type_: types::TOKEN_ISSUED,
            status: status::TRUE,
            reason: reasons::TOKEN_ISSUED,
            message: String::new(),
            observed_generation: None,
        };
        set_condition(&mut conds, token, at("2024-01-02T00:00:00Z"));
        assert_eq!(conds.len(), 2);
        assert_eq!(
            find_condition(&conds, types::READY)
                .unwrap()
                .last_transition_time,
            at("2024-01-01T00:00:00Z")
        );
    }
}
