//! What a token is, as every layer speaks of it (client-free): the request that obtains one,
//! the key several bindings share it under, the token as held, a failure, and what one look at
//! the token manager did. The manager itself is `cluster::tokens`.
//!
//! A token is shared per (registry, credential chain): [`chain_key`] describes the chain that
//! obtains the credentials (never a secret), so two policies share a token exactly when they
//! share that chain.

use std::time::Duration;

use jiff::Timestamp;

use crate::cloud::credentials::ProviderConfig;
use crate::cloud::registry::Registry;
use crate::sensitive::Sensitive;

/// What identifies one shared token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    /// [`Registry::key`]: the instance id or `personal:<region>`.
    pub registry: String,
    /// [`chain_key`] of the credential chain: how credentials are obtained (never a secret).
    pub chain: String,
}

/// Everything needed to obtain a token.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub registry: Registry,
    pub provider: ProviderConfig,
    /// Whether the registry's domains must be discovered (the binding lists none).
    pub discover_domains: bool,
    pub renew_before: Duration,
}

impl TokenRequest {
    /// The key this request shares a token under.
    pub fn key(&self) -> TokenKey {
        TokenKey {
            registry: self.registry.key(),
            chain: chain_key(&self.provider),
        }
    }
}

/// A stable, non-secret description of a credential chain: everything that makes two chains
/// obtain different credentials (paths, ARNs, names, session names, durations), never a secret.
/// It keys both the token cache and the fetcher's credential providers, so two policies share a
/// token exactly when they share the chain that obtains it.
pub fn chain_key(config: &ProviderConfig) -> String {
    use crate::cloud::credentials::SourceConfig as S;
    let base = match &config.source {
        S::ManagedRole { token_file } => format!("managedRole:{}", token_file.display()),
        S::WorkerRole { role_name } => {
            format!("workerRole:{}", role_name.as_deref().unwrap_or("*"))
        }
        S::Rrsa {
            role_arn,
            oidc_provider_arn,
            token_file,
            session_name,
        } => format!(
            "rrsa:{role_arn}:{oidc_provider_arn}:{}:{session_name}",
            token_file.display()
        ),
        S::AccessKey(r) => format!(
            "accessKey:{}/{}:{}:{}",
            r.namespace, r.name, r.access_key_id_key, r.access_key_secret_key
        ),
    };
    match &config.assume_role {
        None => base,
        Some(hop) => format!(
            "{base}+assumeRole:{}:{}:{}:{}s",
            hop.role_arn,
            hop.session_name,
            hop.external_id.as_deref().unwrap_or(""),
            hop.duration.as_secs()
        ),
    }
}

/// A token as the manager holds it.
#[derive(Clone, Debug)]
pub struct HeldToken {
    pub username: String,
    pub password: Sensitive<String>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub renew_at: Timestamp,
    /// Discovered registry domains (empty unless discovery was asked for).
    pub domains: Vec<String>,
}

impl HeldToken {
    /// Whether the token still works at `now`.
    pub fn valid_at(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

/// A recorded failure (message safe to show: cloud Code, message and RequestId, no secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFailure {
    pub at: Timestamp,
    pub reason: &'static str,
    pub message: String,
}

/// What happened during one look at the token manager, for Events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// Nothing: the cached token was served.
    None,
    /// The first token for this key was issued.
    Issued,
    /// A newer token replaced the current one.
    Renewed,
    /// A token was obtained after failures.
    Recovered,
    /// The cloud call failed.
    Failed,
}

/// The answer of the token manager to one request.
#[derive(Clone, Debug)]
pub struct TokenOutcome {
    /// The last good token, if any (it may have expired: check [`HeldToken::valid_at`]).
    pub token: Option<HeldToken>,
    /// The latest failure since the last success.
    pub failure: Option<TokenFailure>,
    /// Consecutive failures.
    pub failures: u32,
    pub activity: Activity,
    /// When the caller should look again (renewal due, retry due or expiry).
    pub next_check: Timestamp,
}
