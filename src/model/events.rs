//! The Events the controller publishes: every Event reason and action as a constant (a reason
//! that is also a condition reason comes from [`crate::api::conditions::reasons`], one a cloud
//! failure gives from [`crate::cloud::error::reasons`]), and the pure builder of a binding's
//! token Event from what the token manager did.

use jiff::Timestamp;
use kube::runtime::events::EventType;

use super::status::time;
use super::token::{Activity, HeldToken, TokenOutcome};
use crate::api::conditions;

/// Event reasons (the `reason` of an events.k8s.io Event) that are not condition reasons:
/// token Events, the translator's Events, and the reasons a failed reconcile is reported with
/// ([`crate::cluster::Error::reason`], also its metric label). CamelCase, stable.
pub mod reasons {
    /// A binding's registry token was renewed before it expired.
    pub const TOKEN_RENEWED: &str = "TokenRenewed";
    /// A binding's registry token was obtained again after failures.
    pub const TOKEN_RECOVERED: &str = "TokenRecovered";
    /// A fresh registry token was obtained on request (`acrcredentials.io/rotation-requested-at`)
    /// and goes into every pull Secret of the binding.
    pub const TOKEN_ROTATED: &str = "TokenRotated";
    /// The legacy ConfigMap translated with a warning.
    pub const TRANSLATION_WARNING: &str = "TranslationWarning";
    /// A translated object could not be applied.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// An object the legacy ConfigMap no longer yields could not be deleted.
    pub const PRUNE_FAILED: &str = "PruneFailed";
    /// The Secret for a translated inline AccessKey is missing and could not be written.
    pub const ACCESS_KEY_SECRET_MISSING: &str = "AccessKeySecretMissing";
    /// The Secret the translation wrote for an inline AccessKey was deleted: nothing uses it.
    pub const ACCESS_KEY_SECRET_DELETED: &str = "AccessKeySecretDeleted";
    /// An object of a translated name exists and was not created by the translation.
    pub const NAME_CLASH: &str = "NameClash";
    /// A translated object someone else has taken over is left alone.
    pub const TAKEN_OVER: &str = "TakenOver";
    /// A reconcile failed on a Kubernetes API call.
    pub const KUBERNETES_API_ERROR: &str = "KubernetesApiError";
    /// A reconcile failed on an object without a field it needs.
    pub const MISSING_FIELD: &str = "MissingField";
    /// A reconcile gave up on an object that kept changing under it.
    pub const CONFLICT: &str = "Conflict";
    /// A reconcile took longer than `--reconcile-timeout-seconds`.
    pub const RECONCILE_TIMEOUT: &str = "ReconcileTimeout";
}

/// Event actions (the `action` of an events.k8s.io Event).
pub mod actions {
    /// Checking a spec (and its policy).
    pub const VALIDATE: &str = "Validate";
    /// Requesting a binding's first token.
    pub const ISSUE_TOKEN: &str = "IssueToken";
    /// Renewing a binding's token.
    pub const RENEW_TOKEN: &str = "RenewToken";
    /// Rotating a binding's token on request.
    pub const ROTATE_TOKEN: &str = "RotateToken";
    /// Writing a binding's pull Secrets and ServiceAccount entries.
    pub const SYNC: &str = "Sync";
    /// A reconcile of a binding or a policy (its failure, by the error's reason).
    pub const RECONCILE: &str = "Reconcile";
    /// Translating the legacy ConfigMap.
    pub const TRANSLATE: &str = "Translate";
}

/// One Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// The Event that says what the token manager did for a binding of registry `registry`, if
/// anything; `now` decides whether a failing renewal still serves a valid token.
pub fn token_event(registry: &str, outcome: &TokenOutcome, now: Timestamp) -> Option<Note> {
    let times = outcome
        .token
        .as_ref()
        .map(|t| {
            format!(
                "valid until {}, renewal at {}",
                time(t.expires_at).0,
                time(t.renew_at).0
            )
        })
        .unwrap_or_default();
    let normal = |reason, action, note| {
        Some(Note {
            type_: EventType::Normal,
            reason,
            action,
            note,
        })
    };
    match outcome.activity {
        Activity::None => None,
        Activity::Issued => normal(
            conditions::reasons::TOKEN_ISSUED,
            actions::ISSUE_TOKEN,
            format!("registry token for {registry} issued, {times}"),
        ),
        Activity::Renewed => normal(
            reasons::TOKEN_RENEWED,
            actions::RENEW_TOKEN,
            format!("registry token for {registry} renewed, {times}"),
        ),
        Activity::Recovered => normal(
            reasons::TOKEN_RECOVERED,
            actions::RENEW_TOKEN,
            format!("registry token for {registry} obtained again after failures, {times}"),
        ),
        Activity::Failed => Some(failed(registry, outcome, now)),
    }
}

/// The Event saying a binding's token for `registry` was rotated on request (`requests`
/// names the request values, see [`super::rotation::Requests::describe`]): the new expiry.
pub fn rotated_event(registry: &str, requests: &str, token: &HeldToken) -> Note {
    Note {
        type_: EventType::Normal,
        reason: reasons::TOKEN_ROTATED,
        action: actions::ROTATE_TOKEN,
        note: format!(
            "registry token for {registry} rotated as requested by {requests}, valid until {}, renewal at {}",
            time(token.expires_at).0,
            time(token.renew_at).0
        ),
    }
}

/// The Warning for a failed token request, saying whether the current token still serves.
fn failed(registry: &str, outcome: &TokenOutcome, now: Timestamp) -> Note {
    let failure = outcome
        .failure
        .as_ref()
        .map(|f| f.message.clone())
        .unwrap_or_default();
    let still = outcome
        .token
        .as_ref()
        .filter(|t| t.valid_at(now))
        .map(|t| {
            format!(
                "Degraded: the current token stays valid until {}. ",
                time(t.expires_at).0
            )
        })
        .unwrap_or_default();
    let reason = outcome
        .failure
        .as_ref()
        .map(|f| f.reason)
        .unwrap_or(conditions::reasons::TOKEN_REQUEST_FAILED);
    Note {
        type_: EventType::Warning,
        reason,
        action: actions::RENEW_TOKEN,
        note: format!(
            "{still}registry token request for {registry} failed ({} in a row): {failure}",
            outcome.failures
        ),
    }
}

#[cfg(test)]
mod tests;
