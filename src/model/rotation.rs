//! Rotation on demand, decided without a client: the requests a binding carries (its own
//! [`ROTATION_REQUESTED_AT`] annotation and its policy's), whether one is pending against what
//! the binding's `status.rotation` records as handled, the ids under which the token manager
//! remembers which requests a token already answers, and the `status.rotation` that records
//! them. Asking the cloud is `binding::token`'s, through [`crate::cluster::tokens`].
//!
//! A request is pending when its value is set and differs from the value handled last; removing
//! the annotation requests nothing. A binding that has never distributed a token (no
//! `status.token`) rotates nothing: the token it gets now is fresh for it, so its requests are
//! only recorded.

use jiff::Timestamp;
use kube::ResourceExt;

use super::status::time;
use crate::api::rotation::{ROTATION_REQUESTED_AT, requested_rotation};
use crate::api::{
    AcrCredentialPolicy, AcrRegistryBinding, AcrRegistryBindingStatus, RotationStatus,
};

/// The rotation requests that reach one binding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// The binding's UID (requests on the binding are its own).
    pub binding_uid: String,
    /// The binding's [`ROTATION_REQUESTED_AT`] value.
    pub binding: Option<String>,
    /// The policy's name and its [`ROTATION_REQUESTED_AT`] value.
    pub policy: Option<(String, String)>,
}

impl Requests {
    /// The requests of `binding` and of its `policy` (when it exists).
    pub fn of(binding: &AcrRegistryBinding, policy: Option<&AcrCredentialPolicy>) -> Self {
        Requests {
            binding_uid: binding.uid().unwrap_or_default(),
            binding: requested_rotation(&binding.metadata).map(str::to_owned),
            policy: policy.and_then(|p| {
                requested_rotation(&p.metadata).map(|v| (p.name_any(), v.to_owned()))
            }),
        }
    }

    /// Whether any request is set.
    pub fn any(&self) -> bool {
        self.binding.is_some() || self.policy.is_some()
    }

    /// The request values, for a human: `binding <value>`, `policy <name> <value>`.
    pub fn describe(&self, pending: &[Pending]) -> String {
        let mut parts = Vec::new();
        for p in pending {
            match p {
                Pending::Binding => {
                    if let Some(v) = &self.binding {
                        parts.push(format!(
                            "{ROTATION_REQUESTED_AT}={} on the binding",
                            short(v)
                        ));
                    }
                }
                Pending::Policy => {
                    if let Some((name, v)) = &self.policy {
                        parts.push(format!(
                            "{ROTATION_REQUESTED_AT}={} on AcrCredentialPolicy {name}",
                            short(v)
                        ));
                    }
                }
            }
        }
        parts.join(" and ")
    }

    /// The token manager's id of each pending request: the binding's own request is its alone;
    /// a policy's is shared by every binding of the policy, so bindings sharing a token answer
    /// one policy request with one fresh token.
    pub fn ids(&self, pending: &[Pending]) -> Vec<String> {
        pending
            .iter()
            .filter_map(|p| match p {
                Pending::Binding => self
                    .binding
                    .as_ref()
                    .map(|v| format!("binding/{}/{v}", self.binding_uid)),
                Pending::Policy => self
                    .policy
                    .as_ref()
                    .map(|(name, v)| format!("policy/{name}/{v}")),
            })
            .collect()
    }
}

/// An annotation value as Events quote it: at most 64 characters.
fn short(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_owned(),
    }
}

/// Which request is pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    Binding,
    Policy,
}

/// What to do about the requests of one binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: every request set is the one handled last (or none is set).
    Handled,
    /// The binding has not distributed a token yet: record the requests, rotate nothing.
    Record,
    /// Rotate for these requests.
    Rotate(Vec<Pending>),
}

/// Whether the requests of a binding whose status is `status` are pending.
pub fn decide(requests: &Requests, status: Option<&AcrRegistryBindingStatus>) -> Decision {
    let handled = status.and_then(|s| s.rotation.as_ref());
    let mut pending = Vec::new();
    if requests.binding.is_some()
        && requests.binding.as_ref() != handled.and_then(|h| h.last_handled_request.as_ref())
    {
        pending.push(Pending::Binding);
    }
    if let Some((_, v)) = &requests.policy
        && Some(v) != handled.and_then(|h| h.last_handled_policy_request.as_ref())
    {
        pending.push(Pending::Policy);
    }
    if pending.is_empty() {
        return Decision::Handled;
    }
    match status.and_then(|s| s.token.as_ref()) {
        None => Decision::Record,
        Some(_) => Decision::Rotate(pending),
    }
}

/// `status.rotation` once `requests` are handled: their values, and `rotated_at` when a token
/// was obtained for them (else the previous time). `None` when there is nothing to record.
pub fn handled(
    requests: &Requests,
    previous: Option<&RotationStatus>,
    rotated_at: Option<Timestamp>,
) -> Option<RotationStatus> {
    let previous = previous.cloned().unwrap_or_default();
    let status = RotationStatus {
        last_handled_request: requests.binding.clone().or(previous.last_handled_request),
        last_handled_policy_request: requests
            .policy
            .as_ref()
            .map(|(_, v)| v.clone())
            .or(previous.last_handled_policy_request),
        last_rotated_at: rotated_at.map(time).or(previous.last_rotated_at),
    };
    (status != RotationStatus::default()).then_some(status)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::TokenStatus;

    fn requests(binding: Option<&str>, policy: Option<&str>) -> Requests {
        Requests {
            binding_uid: "uid-1".into(),
            binding: binding.map(str::to_owned),
            policy: policy.map(|v| ("p".to_owned(), v.to_owned())),
        }
    }

    fn status(
        handled: Option<&str>,
        policy: Option<&str>,
        token: bool,
    ) -> AcrRegistryBindingStatus {
        AcrRegistryBindingStatus {
            token: token.then(TokenStatus::default),
            rotation: Some(RotationStatus {
                last_handled_request: handled.map(str::to_owned),
                last_handled_policy_request: policy.map(str::to_owned),
                last_rotated_at: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_value_is_pending_the_handled_one_is_not() {
        let s = status(Some("a"), Some("x"), true);
        assert_eq!(
            decide(&requests(Some("a"), Some("x")), Some(&s)),
            Decision::Handled
        );
        assert_eq!(
            decide(&requests(Some("b"), Some("x")), Some(&s)),
            Decision::Rotate(vec![Pending::Binding])
        );
        assert_eq!(
            decide(&requests(Some("a"), Some("y")), Some(&s)),
            Decision::Rotate(vec![Pending::Policy])
        );
        assert_eq!(
            decide(&requests(Some("b"), Some("y")), Some(&s)),
            Decision::Rotate(vec![Pending::Binding, Pending::Policy])
        );
        // Removing an annotation requests nothing.
        assert_eq!(decide(&requests(None, None), Some(&s)), Decision::Handled);
        // Nothing handled yet: any value is pending.
        let fresh = AcrRegistryBindingStatus {
            token: Some(TokenStatus::default()),
            ..Default::default()
        };
        assert_eq!(
            decide(&requests(Some("a"), None), Some(&fresh)),
            Decision::Rotate(vec![Pending::Binding])
        );
    }

    #[test]
    fn a_binding_without_a_token_only_records() {
        let s = status(None, None, false);
        assert_eq!(
            decide(&requests(Some("a"), Some("x")), Some(&s)),
            Decision::Record
        );
        assert_eq!(decide(&requests(Some("a"), None), None), Decision::Record);
        assert_eq!(decide(&requests(None, None), None), Decision::Handled);
    }

    #[test]
    fn ids_are_per_binding_for_its_own_request_and_per_policy_for_the_policy_s() {
        let r = requests(Some("a"), Some("x"));
        assert_eq!(
            r.ids(&[Pending::Binding, Pending::Policy]),
            vec!["binding/uid-1/a".to_owned(), "policy/p/x".to_owned()]
        );
        assert_eq!(r.ids(&[Pending::Policy]), vec!["policy/p/x".to_owned()]);
        assert!(
            r.describe(&[Pending::Policy])
                .contains("AcrCredentialPolicy p")
        );
        let long = requests(Some(&"z".repeat(200)), None);
        let described = long.describe(&[Pending::Binding]);
        assert!(described.contains(&format!("{}…", "z".repeat(64))));
        assert!(!described.contains(&"z".repeat(65)));
    }

    #[test]
    fn handled_records_the_values_and_keeps_what_is_not_set() {
        let at: Timestamp = "2026-01-01T00:00:00.7Z".parse().unwrap();
        let previous = RotationStatus {
            last_handled_request: Some("old".into()),
            last_handled_policy_request: Some("px".into()),
            last_rotated_at: None,
        };
        let h = handled(&requests(Some("new"), None), Some(&previous), Some(at)).unwrap();
        assert_eq!(h.last_handled_request.as_deref(), Some("new"));
        assert_eq!(h.last_handled_policy_request.as_deref(), Some("px"));
        assert_eq!(h.last_rotated_at, Some(time(at)));
        let kept = handled(&requests(Some("new"), None), Some(&h), None).unwrap();
        assert_eq!(kept.last_rotated_at, Some(time(at)));
        assert_eq!(handled(&requests(None, None), None, None), None);
    }
}
