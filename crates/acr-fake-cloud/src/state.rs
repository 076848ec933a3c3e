//! The fake cloud's mutable state: issued credentials, used nonces, faults and the request log.
//!
//! Everything sits behind one mutex that is never held across an `await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::scenario::{Account, Role, Scenario};

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Root {
        account: String,
    },
    User {
        account: String,
        name: String,
    },
    Role {
        account: String,
        role: String,
        session: String,
    },
}

impl Principal {
    pub fn account(&self) -> &str {
        match self {
            Self::Root { account } | Self::User { account, .. } | Self::Role { account, .. } => {
                account
            }
        }
    }

    /// The identity's ARN (for roles, the role itself, which trust policies name).
    pub fn arn(&self) -> String {
        match self {
            Self::Root { account } => format!("acs:ram::{account}:root"),
            Self::User { account, name } => format!("acs:ram::{account}:user/{name}"),
            Self::Role { account, role, .. } => format!("acs:ram::{account}:role/{role}"),
        }
    }
}

/// Temporary credentials the fake issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_key_id: String,
    pub secret: String,
    pub security_token: String,
    pub expires_at: jiff::Timestamp,
    pub account: String,
    pub role: String,
    pub session: String,
}

/// A fault applied to matching requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// `product:Action` (e.g. `sts:AssumeRole`, `cr:GetAuthorizationToken`,
    /// `cr-personal:GetAuthorizationToken`, `ecs:metadata`) or `*`.
    pub api: String,
    /// Only requests whose claimed AccessKeyId (or `anonymous`) is this.
    #[serde(default)]
    pub caller: Option<String>,
    /// Apply to this many requests, then vanish; absent: until cleared.
    #[serde(default)]
    pub times: Option<u32>,
    #[serde(flatten)]
    pub kind: FaultKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum FaultKind {
    /// Answer with this error envelope. `{request}` in `message` is replaced by the request's
    /// parameters and security token header (`k=v&...`), as the real service echoes its string
    /// to sign (SecurityToken included) in `SignatureDoesNotMatch`.
    #[serde(rename_all = "camelCase")]
    Error {
        status: u16,
        code: String,
        #[serde(default)]
        message: Option<String>,
    },
    /// Answer `Throttling.User` with `x-acs-retry-after` (milliseconds).
    #[serde(rename_all = "camelCase")]
    Throttle { retry_after_ms: u64 },
    /// Delay the answer.
    #[serde(rename_all = "camelCase")]
    Latency { ms: u64 },
}

/// A full outage until a point in time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outage {
    pub until: jiff::Timestamp,
    /// `unavailable`: 503 `ServiceUnavailable`; `hang`: no answer until the window ends.
    #[serde(default)]
    pub mode: OutageMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OutageMode {
    #[default]
    Unavailable,
    Hang,
}

/// One served request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub time: jiff::Timestamp,
    pub api: String,
    /// The AccessKeyId the request claimed, `anonymous`, or `metadata`.
    pub caller: String,
    /// The authenticated identity (principal ARN), when authentication succeeded.
    pub identity: Option<String>,
    pub status: u16,
    /// The error code, for failures.
    pub code: Option<String>,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub scenario: Scenario,
    pub issued: HashMap<String, Issued>,
    pub nonces: HashMap<(String, String), jiff::Timestamp>,
    pub metadata_tokens: HashMap<String, jiff::Timestamp>,
    pub metadata_creds: Option<String>,
    /// Registry passwords issued, with their expiry and registry.
    pub registry_tokens: HashMap<String, crate::realm::RegistryCredential>,
    pub faults: Vec<Fault>,
    pub outage: Option<Outage>,
    pub log: Vec<LogEntry>,
    pub clock_offset: jiff::SignedDuration,
    /// Text put inside every secret issued from now on (STS AccessKeySecret and SecurityToken,
    /// registry passwords), so a test can search everything the controller emits for it.
    pub marker: String,
}

/// Shared state.
#[derive(Debug, Default)]
pub struct State {
    pub inner: Mutex<Inner>,
}

/// How long nonces are remembered (the freshness window).
pub const NONCE_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_secs(15 * 60);

impl Inner {
    pub fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
            .checked_add(self.clock_offset)
            .unwrap_or_else(|_| jiff::Timestamp::now())
    }

    pub fn account(&self, id: &str) -> Option<&Account> {
        self.scenario.accounts.iter().find(|a| a.id == id)
    }

    pub fn role(&self, account: &str, name: &str) -> Option<&Role> {
        self.account(account)?.roles.iter().find(|r| r.name == name)
    }

    /// Records a nonce; false when it was already used within the window.
    pub fn use_nonce(&mut self, key_id: &str, nonce: &str) -> bool {
        let now = self.now();
        self.nonces
            .retain(|_, t| now.duration_since(*t) < NONCE_WINDOW);
        self.nonces
            .insert((key_id.to_string(), nonce.to_string()), now)
            .is_none()
    }

    /// Whether `principal` may perform `action` on `resource`.
    pub fn allowed(&self, principal: &Principal, action: &str, resource: &str) -> bool {
        let permissions: &[String] = match principal {
            Principal::Root { .. } => return true,
            Principal::User { account, name } => self
                .account(account)
                .and_then(|a| a.users.iter().find(|u| &u.name == name))
                .map_or(&[], |u| u.permissions.as_slice()),
            Principal::Role { account, role, .. } => self
                .role(account, role)
                .map_or(&[], |r| r.permissions.as_slice()),
        };
        permissions
            .iter()
            .any(|p| permission_matches(p, action, resource))
    }

    /// Issues STS credentials for a role.
    pub fn issue(
        &mut self,
        account: &str,
        role: &str,
        session: &str,
        lifetime: jiff::SignedDuration,
    ) -> Issued {
        let now = self.now();
        let issued = Issued {
            access_key_id: format!("STS.{}", random_token(20)),
            secret: format!("{}{}", self.marker, random_token(40)),
            security_token: format!("CAIS{}{}", self.marker, random_token(120)),
            expires_at: now.checked_add(lifetime).unwrap_or(now),
            account: account.into(),
            role: role.into(),
            session: session.into(),
        };
        self.issued
            .insert(issued.access_key_id.clone(), issued.clone());
        issued
    }

    /// Request counts per (api, caller).
    pub fn counts(&self) -> BTreeMap<(String, String), usize> {
        let mut out = BTreeMap::new();
        for e in &self.log {
            *out.entry((e.api.clone(), e.caller.clone())).or_insert(0) += 1;
        }
        out
    }
}

/// `*`, `cr:*`, `cr:GetAuthorizationToken` or `cr:GetAuthorizationToken:<resource>`.
pub fn permission_matches(permission: &str, action: &str, resource: &str) -> bool {
    if permission == "*" {
        return true;
    }
    let (perm_action, perm_resource) =
        match permission.splitn(3, ':').collect::<Vec<_>>().as_slice() {
            [product, act, res] => (format!("{product}:{act}"), Some(*res)),
            _ => (permission.to_string(), None),
        };
    let action_ok = perm_action == action
        || perm_action
            .strip_suffix('*')
            .is_some_and(|prefix| action.starts_with(prefix));
    action_ok && perm_resource.is_none_or(|r| r == "*" || r == resource)
}

/// Random alphanumeric text.
pub fn random_token(len: usize) -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

/// A request id in Alibaba's UUID form.
pub fn request_id() -> String {
    let h = hex::encode_upper(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions() {
        assert!(permission_matches("*", "cr:GetAuthorizationToken", "cri-a"));
        assert!(permission_matches(
            "cr:*",
            "cr:ListInstanceEndpoint",
            "cri-a"
        ));
        assert!(permission_matches(
            "cr:GetAuthorizationToken",
            "cr:GetAuthorizationToken",
            "cri-a"
        ));
        assert!(permission_matches(
            "cr:GetAuthorizationToken:cri-a",
            "cr:GetAuthorizationToken",
            "cri-a"
        ));
        assert!(!permission_matches(
            "cr:GetAuthorizationToken:cri-b",
            "cr:GetAuthorizationToken",
            "cri-a"
        ));
        assert!(!permission_matches(
            "cr:ListInstanceEndpoint",
            "cr:GetAuthorizationToken",
            "cri-a"
        ));
        assert!(!permission_matches(
            "sts:*",
            "cr:GetAuthorizationToken",
            "cri-a"
        ));
    }

    #[test]
    fn nonces_are_single_use() {
        let mut inner = Inner::default();
        assert!(inner.use_nonce("ak", "n1"));
        assert!(!inner.use_nonce("ak", "n1"));
        assert!(inner.use_nonce("other", "n1"));
    }

    #[test]
    fn request_ids_look_real() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }
}
