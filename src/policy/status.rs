//! The policy's status, built from its spec and what the token manager knows about its
//! credentials (pure): `Ready` from [`policy_ready`], `Stalled` for an invalid spec, the source
//! kind, the credentials' expiry and `observedGeneration`; before that, on a new generation,
//! `Reconciling=True` and `Ready=Unknown` ([`policy_reconciling_status`]).

use crate::api::conditions::{reasons, remove_condition, set_condition, types};
use crate::api::{AcrCredentialPolicy, AcrCredentialPolicyStatus, validate_policy};
use crate::cloud::error::reasons as cloud_reasons;
use crate::model::status::{Verdict, start_generation, time};
use crate::model::token::TokenFailure;

/// What the token manager knows about the credentials of a policy.
#[derive(Clone, Debug, Default)]
pub struct CredentialHealth {
    /// The latest failure of a token request made with this policy's credentials.
    pub failure: Option<TokenFailure>,
    /// Whether some token obtained with them is valid now.
    pub any_valid: bool,
    /// When the credentials currently held expire (`None`: not obtained yet, or long-lived).
    pub expires_at: Option<jiff::Timestamp>,
}

/// The status a policy should have: its source kind and credential expiry, `Ready` from
/// [`policy_ready`], and `Stalled` derived from it.
pub fn policy_status(
    policy: &AcrCredentialPolicy,
    health: &CredentialHealth,
    now: jiff::Timestamp,
) -> AcrCredentialPolicyStatus {
    let mut status = policy.status.clone().unwrap_or_default();
    let g = policy.metadata.generation;
    status.observed_generation = g;
    status.source = policy.spec.source.kind().map(|k| k.as_str().to_owned());
    status.credentials_expire_at = health.expires_at.map(time);
    let ready = policy_ready(policy, health);
    set_condition(
        &mut status.conditions,
        ready.condition(types::READY, g),
        time(now),
    );
    remove_condition(&mut status.conditions, types::RECONCILING);
    match policy_stalled(&ready) {
        Some(stalled) => {
            set_condition(
                &mut status.conditions,
                stalled.condition(types::STALLED, g),
                time(now),
            );
        }
        None => {
            remove_condition(&mut status.conditions, types::STALLED);
        }
    }
    status
}

/// The status to write when a pass starts on a generation the policy's status does not
/// describe yet: `observedGeneration` moves on, `Reconciling=True` and `Ready=Unknown` at the
/// new generation, as a binding's ([`start_generation`]). `None` when it describes it already.
pub fn policy_reconciling_status(
    policy: &AcrCredentialPolicy,
    now: jiff::Timestamp,
) -> Option<AcrCredentialPolicyStatus> {
    let g = policy.metadata.generation;
    let previous = policy.status.as_ref();
    if previous.is_some_and(|p| p.observed_generation == g) {
        return None;
    }
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = g;
    start_generation(&mut status.conditions, g, now);
    Some(status)
}

/// A policy's `Ready`: its spec is valid and token requests with its credentials do not fail
/// for a reason about the credentials themselves.
pub fn policy_ready(policy: &AcrCredentialPolicy, health: &CredentialHealth) -> Verdict {
    match validate_policy(&policy.spec) {
        Ok(()) => match &health.failure {
            Some(f) if cloud_reasons::about_credentials(f.reason) => Verdict::new(
                false,
                reasons::CREDENTIALS_FAILED,
                format!(
                    "{}registry token requests with these credentials fail: {}",
                    if health.any_valid {
                        "some tokens are still valid, but "
                    } else {
                        ""
                    },
                    f.message
                ),
            ),
            _ => Verdict::new(
                true,
                reasons::RECONCILED,
                "the policy is valid; bindings using it report their tokens".to_owned(),
            ),
        },
        Err(errors) => Verdict::new(
            false,
            reasons::INVALID_SPEC,
            format!(
                "invalid spec: {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
    }
}

/// An invalid spec is terminal until the policy changes (kstatus `Stalled`); failing
/// credentials may recover on their own, so they only make the policy not Ready.
pub fn policy_stalled(ready: &Verdict) -> Option<Verdict> {
    (ready.reason == reasons::INVALID_SPEC)
        .then(|| Verdict::new(true, ready.reason, ready.message.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::find_condition;

    fn policy(yaml: &str) -> AcrCredentialPolicy {
        serde_yaml::from_str(yaml).unwrap()
    }

    const VALID: &str = "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialPolicy\nmetadata: {name: p, generation: 3}\nspec: {source: {workerRole: {}}}\n";

    #[test]
    fn valid_policy_is_ready_until_its_credentials_fail() {
        let now: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let p = policy(VALID);
        let s = policy_status(&p, &CredentialHealth::default(), now);
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.source.as_deref(), Some("workerRole"));
        assert!(crate::api::conditions::is_true(&s.conditions, types::READY));
        let health = CredentialHealth {
            failure: Some(TokenFailure {
                at: now,
                reason: "PermissionDenied",
                message: "sts:AssumeRole failed: NoPermission (HTTP 403): denied [RequestId R9]"
                    .into(),
            }),
            any_valid: false,
            expires_at: None,
        };
        let s = policy_status(&p, &health, now);
        assert_eq!(s.credentials_expire_at, None);
        let ready = find_condition(&s.conditions, types::READY).unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, reasons::CREDENTIALS_FAILED);
        assert!(ready.message.contains("R9"));
    }

    #[test]
    fn a_new_generation_reconciles_until_the_pass_ends() {
        let now: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let mut p = policy(VALID);
        p.status = Some(policy_status(&p, &CredentialHealth::default(), now));
        assert!(policy_reconciling_status(&p, now).is_none());
        p.metadata.generation = Some(4);
        let r = policy_reconciling_status(&p, now).unwrap();
        assert_eq!(r.observed_generation, Some(4));
        let ready = find_condition(&r.conditions, types::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.observed_generation),
            ("Unknown", Some(4))
        );
        assert!(crate::api::conditions::is_true(
            &r.conditions,
            types::RECONCILING
        ));
        p.status = Some(r);
        let done = policy_status(&p, &CredentialHealth::default(), now);
        assert!(find_condition(&done.conditions, types::RECONCILING).is_none());
        assert!(crate::api::conditions::is_true(
            &done.conditions,
            types::READY
        ));
    }

    #[test]
    fn credentials_expiry_is_reported_when_known() {
        let now: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let expires: jiff::Timestamp = "2024-01-01T01:00:00Z".parse().unwrap();
        let health = CredentialHealth {
            expires_at: Some(expires),
            ..CredentialHealth::default()
        };
        let s = policy_status(&policy(VALID), &health, now);
        assert_eq!(s.credentials_expire_at, Some(time(expires)));
        // Long-lived AccessKeys (or nothing obtained yet): the field stays absent.
        let s = policy_status(&policy(VALID), &CredentialHealth::default(), now);
        assert_eq!(s.credentials_expire_at, None);
    }

    #[test]
    fn invalid_policy_is_not_ready() {
        let now: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let p = policy(
            "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialPolicy\nmetadata: {name: p}\nspec: {source: {workerRole: {}, managedRole: {}}}\n",
        );
        let s = policy_status(&p, &CredentialHealth::default(), now);
        let ready = find_condition(&s.conditions, types::READY).unwrap();
        assert_eq!(ready.reason, reasons::INVALID_SPEC);
        let stalled = find_condition(&s.conditions, types::STALLED).unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "InvalidSpec")
        );
        // Fixed: Stalled goes away.
        let mut fixed = policy(VALID);
        fixed.status = Some(s);
        let s = policy_status(&fixed, &CredentialHealth::default(), now);
        assert!(find_condition(&s.conditions, types::STALLED).is_none());
    }
}
