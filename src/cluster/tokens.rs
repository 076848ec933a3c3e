//! The token manager: one registry token per (registry, credential chain), shared by every
//! binding and namespace that needs it. What a token is (request, key, held token, outcome) is
//! the model's ([`crate::model::token`]); this file keeps them and decides when to ask again.
//!
//! - Concurrent demands for one key coalesce: the entry's lock is held across the cloud call, so
//!   the second caller waits and then reads the token the first one obtained.
//! - Renewal is due at `expiresAt − renewBefore` minus a little jitter ([`renew_at`]); when
//!   `renewBefore` is not shorter than the token's life, halfway through it.
//! - A failure schedules the next attempt with exponential backoff, capped well below the time
//!   the current token has left ([`retry_delay`]); until then callers get the last good token
//!   (while it is valid) and the failure. Once no valid token is held the doubling starts again
//!   from [`BASE_RETRY`]: the quick attempts before expiry say little about how long the cloud
//!   will stay down, and without a token every minute counts.
//! - A rotation on request ([`TokenManager::rotate`]) asks for a fresh token whether or not
//!   renewal is due, under the same lock, so it single-flights with every other demand for the
//!   key. The entry remembers which requests (opaque ids) its token answers: a caller whose
//!   requests are all answered gets the token another caller obtained for them, so the bindings
//!   of one policy that share a token answer the policy's request with one cloud call. Other
//!   bindings sharing the key are not told: their next pass serves the new token from the cache
//!   (renewal of the new one is not due) and writes it into their Secrets, no cloud call.
//! - Time comes from the injected [`Clock`]; unit tests drive it by hand.
//!
//! The cloud is reached through [`TokenFetcher`], so the manager is tested without a network;
//! [`CloudFetcher`] ([`fetcher`]) is the production implementation over [`crate::cloud`].

pub mod fetcher;
pub mod schedule;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::cloud::CloudError;
use crate::cloud::clock::Clock;
use crate::cloud::credentials::ProviderConfig;
use crate::cloud::registry::RegistryToken;
pub use crate::model::token::{
    Activity, HeldToken, TokenFailure, TokenKey, TokenOutcome, TokenRequest, chain_key,
};
pub use fetcher::{CloudFetcher, TokenFetcher};
pub use schedule::{
    ADOPT_CLOCK_SKEW, BASE_RETRY, MAX_JITTER, MAX_RETRY, MAX_TOKEN_LIFETIME, plausible_lifetime,
    renew_at, retry_delay,
};
/// How many answered rotation requests an entry remembers (the oldest are forgotten).
pub const MAX_ANSWERED: usize = 64;

#[derive(Default)]
struct Entry {
    current: Option<HeldToken>,
    failure: Option<TokenFailure>,
    failures: u32,
    /// Consecutive failures while no valid token was held (they set the backoff then).
    failures_without_token: u32,
    next_attempt: Option<Timestamp>,
    domains: Option<Vec<String>>,
    /// Rotation requests the current token answers (or an earlier one, since replaced).
    answered: std::collections::VecDeque<String>,
}

/// Holds every token the controller distributes.
pub struct TokenManager {
    fetcher: Arc<dyn TokenFetcher>,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<Entry>>>>,
    jitter: bool,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager").finish_non_exhaustive()
    }
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

impl TokenManager {
    pub fn new(fetcher: Arc<dyn TokenFetcher>, clock: Arc<dyn Clock>) -> Self {
        Self {
            fetcher,
            clock,
            entries: Mutex::new(HashMap::new()),
            jitter: true,
        }
    }

    /// Turns renewal jitter off (deterministic unit tests).
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    fn entry(&self, key: &TokenKey) -> Arc<tokio::sync::Mutex<Entry>> {
        let mut map = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(key.clone()).or_default().clone()
    }

    /// Adopts a token obtained before (by an earlier run of the controller, read back from a
    /// pull Secret it wrote) when nothing is held for `req` yet, so a restart costs no cloud
    /// call and no Secret rewrite. Expired tokens are ignored, and so are tokens no cloud
    /// issues: living longer than [`MAX_TOKEN_LIFETIME`], or issued later than now (beyond
    /// [`ADOPT_CLOCK_SKEW`]). Returns whether it was adopted.
    pub async fn adopt(
        &self,
        req: &TokenRequest,
        token: RegistryToken,
        issued_at: Timestamp,
        domains: Option<Vec<String>>,
    ) -> bool {
        let now = self.clock.now();
        if token.expires_at <= now || !plausible_lifetime(issued_at, token.expires_at, now) {
            return false;
        }
        let entry = self.entry(&req.key());
        let mut e = entry.lock().await;
        if e.current.is_some() {
            return false;
        }
        e.current = Some(self.held(req, token, issued_at.min(now)));
        if req.discover_domains && e.domains.is_none() {
            e.domains = domains;
        }
        true
    }

    /// For a credential chain ([`chain_key`]): the latest failure of any of its tokens (when that token has
    /// no valid successor), and whether any of its tokens is valid now. Entries busy with a
    /// cloud call are skipped.
    pub fn chain_health(&self, chain: &str) -> (Option<TokenFailure>, bool) {
        let now = self.clock.now();
        let entries: Vec<Arc<tokio::sync::Mutex<Entry>>> = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(k, _)| k.chain == chain)
            .map(|(_, e)| e.clone())
            .collect();
        let mut failure: Option<TokenFailure> = None;
        let mut any_valid = false;
        for entry in entries {
            let Ok(e) = entry.try_lock() else { continue };
            any_valid |= e.current.as_ref().is_some_and(|t| t.valid_at(now));
            if let Some(f) = &e.failure
                && failure.as_ref().is_none_or(|g| f.at > g.at)
            {
                failure = Some(f.clone());
            }
        }
        (failure, any_valid)
    }

    /// When the credentials behind `provider` expire, as far as they have been obtained.
    pub fn credentials_expire_at(&self, provider: &ProviderConfig) -> Option<Timestamp> {
        self.fetcher.credentials_expire_at(provider)
    }

    /// Forgets the tokens (and the fetcher's cached credentials) that no live binding uses any
    /// more, so memory does not grow with every registry and credential chain ever seen. `live` holds
    /// the requests of every live binding.
    pub fn retain(&self, live: &[TokenRequest]) {
        let keys: std::collections::HashSet<TokenKey> =
            live.iter().map(TokenRequest::key).collect();
        let removed = {
            let mut map = self
                .entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = map.len();
            map.retain(|k, _| keys.contains(k));
            before - map.len()
        };
        let providers: Vec<&ProviderConfig> = live.iter().map(|r| &r.provider).collect();
        self.fetcher.retain(&providers);
        if removed > 0 {
            tracing::debug!(removed, "tokens no binding uses any more forgotten");
        }
    }

    /// How many tokens are held or being obtained.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a token is held for `key` (valid or not).
    pub async fn holds(&self, key: &TokenKey) -> bool {
        let entry = self.entry(key);
        let guard = entry.lock().await;
        guard.current.is_some()
    }

    /// The token currently held for `key`, without any cloud call.
    pub async fn peek(&self, key: &TokenKey) -> Option<HeldToken> {
        let entry = self.entry(key);
        let guard = entry.lock().await;
        guard.current.clone().map(|mut t| {
            if let Some(d) = &guard.domains {
                t.domains = d.clone();
            }
            t
        })
    }

    /// A token for `req`: the held one while renewal is not due, otherwise a fresh one (or the
    /// held one and the failure, when the cloud fails or the retry is not due yet).
    pub async fn get(&self, req: &TokenRequest) -> TokenOutcome {
        let entry = self.entry(&req.key());
        let mut e = entry.lock().await;
        let now = self.clock.now();
        let renewal_due = e.current.as_ref().is_none_or(|t| now >= t.renew_at);
        let retry_due = e.next_attempt.is_none_or(|at| now >= at);
        let domains_missing = req.discover_domains && e.domains.is_none();
        let mut activity = Activity::None;
        if (renewal_due || domains_missing) && retry_due {
            activity = self.refresh(&mut e, req, now, renewal_due).await;
        }
        outcome(&e, activity, now)
    }

    /// A fresh token for the rotation requests `requests` (opaque ids, see
    /// [`crate::model::rotation::Requests::ids`]), whether or not renewal is due; when every
    /// one of them is answered already (another binding sharing the token asked first), the
    /// token obtained for them, or a newer one. A failed attempt, or one whose retry is not due
    /// yet, answers nothing (the next pass asks again). Returns the outcome and whether the
    /// token it holds answers `requests`.
    pub async fn rotate(&self, req: &TokenRequest, requests: &[String]) -> (TokenOutcome, bool) {
        let entry = self.entry(&req.key());
        let mut e = entry.lock().await;
        let now = self.clock.now();
        let answered = e.current.is_some() && requests.iter().all(|r| e.answered.contains(r));
        let retry_due = e.next_attempt.is_none_or(|at| now >= at);
        let mut activity = Activity::None;
        if !answered && retry_due {
            activity = self.refresh(&mut e, req, now, true).await;
            if activity != Activity::Failed {
                for r in requests {
                    if !e.answered.contains(r) {
                        e.answered.push_back(r.clone());
                    }
                }
                while e.answered.len() > MAX_ANSWERED {
                    e.answered.pop_front();
                }
            }
        }
        let done = answered || (retry_due && activity != Activity::Failed);
        (outcome(&e, activity, now), done)
    }

    async fn refresh(
        &self,
        e: &mut Entry,
        req: &TokenRequest,
        now: Timestamp,
        renewal_due: bool,
    ) -> Activity {
        // The token and the domains are independent calls: make them at once.
        let want_domains = req.discover_domains && e.domains.is_none();
        let result = futures::try_join!(
            async {
                match renewal_due {
                    true => self.fetcher.token(req).await.map(Some),
                    false => Ok(None),
                }
            },
            async {
                match want_domains {
                    true => self.fetcher.domains(req).await.map(Some),
                    false => Ok::<_, CloudError>(None),
                }
            },
        );
        match result {
            Ok((token, domains)) => {
                if let Some(d) = domains {
                    e.domains = Some(d);
                }
                match token {
                    Some(token) => self.record_token(e, req, token, now),
                    None => Activity::None,
                }
            }
            Err(err) => {
                // The backoff counts from the failure, not from the start of the attempt: the
                // cloud client's inline retries (and a throttled answer's retry-after) may have
                // taken longer than the delay itself.
                record_failure(e, req, &err, self.clock.now().max(now));
                Activity::Failed
            }
        }
    }

    /// Holds a fresh token issued at `now`, clears the failures, and says what happened.
    fn record_token(
        &self,
        e: &mut Entry,
        req: &TokenRequest,
        token: RegistryToken,
        now: Timestamp,
    ) -> Activity {
        let held = self.held(req, token, now);
        let activity = if e.failures > 0 {
            Activity::Recovered
        } else if e.current.is_some() {
            Activity::Renewed
        } else {
            Activity::Issued
        };
        tracing::info!(registry = %req.registry.key(), expires_at = %held.expires_at, renew_at = %held.renew_at, "registry token obtained");
        e.current = Some(held);
        e.failure = None;
        e.failures = 0;
        e.failures_without_token = 0;
        e.next_attempt = None;
        activity
    }

    /// A token held from `issued_at`, due for renewal at its (jittered) renewal time.
    fn held(&self, req: &TokenRequest, token: RegistryToken, issued_at: Timestamp) -> HeldToken {
        let fraction = if self.jitter {
            rand::random::<f64>()
        } else {
            0.0
        };
        HeldToken {
            username: token.username,
            password: token.password,
            issued_at,
            expires_at: token.expires_at,
            renew_at: renew_at(issued_at, token.expires_at, req.renew_before, fraction),
            domains: Vec::new(),
        }
    }
}

/// Counts a failed request and schedules the next attempt: backed off by the number of
/// failures and the time the held token has left, and no sooner than a throttle asks.
fn record_failure(e: &mut Entry, req: &TokenRequest, err: &CloudError, now: Timestamp) {
    e.failures = e.failures.saturating_add(1);
    let left = e
        .current
        .as_ref()
        .map(|t| t.expires_at.duration_since(now))
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero());
    let backoff_failures = match left {
        Some(_) => e.failures,
        None => {
            e.failures_without_token = e.failures_without_token.saturating_add(1);
            e.failures_without_token
        }
    };
    let mut delay = retry_delay(backoff_failures, left);
    if let CloudError::Throttled {
        retry_after: Some(after),
        ..
    } = err
    {
        delay = delay.max(*after);
    }
    e.next_attempt = now.checked_add(signed(delay)).ok();
    tracing::warn!(registry = %req.registry.key(), failures = e.failures, retry_in = ?delay, error = %err, "registry token request failed");
    e.failure = Some(TokenFailure {
        at: now,
        reason: err.reason(),
        message: err.to_string(),
    });
}

/// What the entry holds now, after `activity`.
fn outcome(e: &Entry, activity: Activity, now: Timestamp) -> TokenOutcome {
    TokenOutcome {
        token: e.current.clone().map(|mut t| {
            if let Some(d) = &e.domains {
                t.domains = d.clone();
            }
            t
        }),
        failure: e.failure.clone(),
        failures: e.failures,
        activity,
        next_check: next_check(e, now),
    }
}

fn next_check(e: &Entry, now: Timestamp) -> Timestamp {
    let mut candidates = Vec::new();
    if let Some(t) = &e.current {
        candidates.push(t.renew_at);
        if t.expires_at > now {
            candidates.push(t.expires_at);
        }
    }
    if let Some(at) = e.next_attempt {
        candidates.push(at);
    }
    candidates
        .into_iter()
        .filter(|t| *t > now)
        .min()
        .unwrap_or_else(|| now.checked_add(SignedDuration::from_secs(5)).unwrap_or(now))
}

#[cfg(test)]
mod tests;
