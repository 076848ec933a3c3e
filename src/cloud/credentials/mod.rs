//! Credential sources and the caching provider in front of them.
//!
//! A [`CredentialSource`] knows how to obtain one set of [`Credentials`] (AccessKeyId,
//! AccessKeySecret, optional SecurityToken, optional expiry) plus their principal: a stable,
//! non-secret string saying who they act as (`accessKey:<AccessKeyId>`, `rrsa:<roleArn>`,
//! `…+assumeRole:<roleArn>`), which logs and `doctor` show. A [`CredentialProvider`] caches what its source returned until
//! shortly before expiry, and makes concurrent callers share one refresh.
//!
//! Sources: [`managed_role`] (ACK add-on token file), [`worker_role`] (ECS metadata),
//! [`rrsa`] (OIDC token file + `AssumeRoleWithOIDC`), [`access_key`] (a Kubernetes Secret),
//! and the optional [`assume_role`] hop on top of any of them. [`ProviderConfig`] mirrors the
//! policy's `spec.source` / `spec.assumeRole`, and [`build_provider`] turns it into a provider.

pub mod access_key;
pub mod assume_role;
pub mod managed_role;
pub mod rrsa;
pub mod worker_role;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::client::CloudClient;
use super::clock::Clock;
use super::error::CloudError;
pub use super::keypair::Credentials;

/// Something that can produce credentials.
pub trait CredentialSource: Send + Sync {
    /// A description of the source itself, known before any fetch (`rrsa:<roleArn>`, `accessKey:<ns>/<name>`).
    fn describe(&self) -> String;
    /// Obtains fresh credentials.
    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CloudError>>;
}

/// The longest margin before expiry at which cached credentials are refreshed.
pub const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(180);

/// Whether credentials obtained at `obtained_at` and expiring at `expires_at` must be
/// refreshed at `now`: inside the last fifth of their lifetime, at most [`MAX_REFRESH_MARGIN`]
/// before expiry. Credentials without expiry are refreshed after `static_ttl`.
pub fn needs_refresh(
    now: jiff::Timestamp,
    obtained_at: jiff::Timestamp,
    expires_at: Option<jiff::Timestamp>,
    static_ttl: Duration,
) -> bool {
    match expires_at {
        None => now.duration_since(obtained_at).as_secs_f64() >= static_ttl.as_secs_f64(),
        Some(exp) => {
            let lifetime = exp.duration_since(obtained_at).as_secs_f64().max(0.0);
            let margin = (lifetime / 5.0).min(MAX_REFRESH_MARGIN.as_secs_f64());
            exp.duration_since(now).as_secs_f64() <= margin
        }
    }
}

struct Cached {
    creds: Credentials,
    obtained_at: jiff::Timestamp,
}

/// Caches a source's credentials and coalesces concurrent refreshes.
pub struct CredentialProvider {
    source: Box<dyn CredentialSource>,
    clock: Arc<dyn Clock>,
    /// How long credentials without an expiry (AccessKeys) are reused before the source is asked again.
    static_ttl: Duration,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for CredentialProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialProvider")
            .field("source", &self.source.describe())
            .finish()
    }
}

impl CredentialProvider {
    pub fn new(source: Box<dyn CredentialSource>, clock: Arc<dyn Clock>) -> Self {
        Self {
            source,
            clock,
            static_ttl: Duration::from_secs(30),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// Sets how long credentials without expiry are reused (default 30 s).
    pub fn with_static_ttl(mut self, ttl: Duration) -> Self {
        self.static_ttl = ttl;
        self
    }

    /// What the source is (no fetch needed).
    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// Valid credentials: cached ones, or freshly fetched when near expiry. Concurrent callers
    /// wait for one fetch instead of starting their own.
    pub async fn credentials(&self) -> Result<Credentials, CloudError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        if let Some(c) = cache.as_ref()
            && !needs_refresh(now, c.obtained_at, c.creds.expires_at, self.static_ttl)
        {
            return Ok(c.creds.clone());
        }
        let creds = self.source.fetch().await?;
        tracing::debug!(principal = %creds.principal, expires_at = ?creds.expires_at, "fetched credentials");
        *cache = Some(Cached {
            creds: creds.clone(),
            obtained_at: now,
        });
        Ok(creds)
    }

    /// When the cached credentials expire, without fetching: `None` when nothing is cached yet,
    /// the cache is busy with a refresh, or the credentials are long-lived AccessKeys.
    pub fn cached_expiry(&self) -> Option<jiff::Timestamp> {
        self.cache.try_lock().ok()?.as_ref()?.creds.expires_at
    }

    /// Drops cached credentials (e.g. after the cloud said they expired).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }
}

/// Where credentials come from, mirroring the policy's `spec.source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceConfig {
    ManagedRole {
        token_file: PathBuf,
    },
    WorkerRole {
        role_name: Option<String>,
    },
    Rrsa {
        role_arn: String,
        oidc_provider_arn: String,
        token_file: PathBuf,
        session_name: String,
    },
    AccessKey(access_key::SecretRef),
}

/// The optional cross-account hop, mirroring the policy's `spec.assumeRole`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleConfig {
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    pub duration: Duration,
}

/// A policy-like description of how to get credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub source: SourceConfig,
    pub assume_role: Option<AssumeRoleConfig>,
}

/// Default location of the ACK add-on token file.
pub const DEFAULT_MANAGED_TOKEN_FILE: &str = "/var/addon/token-config";
/// Default location of the RRSA projected token.
pub const DEFAULT_RRSA_TOKEN_FILE: &str = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token";

/// Where the token files of the file-based sources are mounted: settings of the process, not of
/// a policy (a policy's own `rrsa.tokenFile` wins over `rrsa`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFiles {
    /// The ACK add-on token file (managedRole).
    pub managed: PathBuf,
    /// The projected ServiceAccount token (rrsa).
    pub rrsa: PathBuf,
}

impl Default for TokenFiles {
    fn default() -> Self {
        Self {
            managed: DEFAULT_MANAGED_TOKEN_FILE.into(),
            rrsa: DEFAULT_RRSA_TOKEN_FILE.into(),
        }
    }
}

/// Builds the provider chain for `config`.
pub fn build_provider(
    config: &ProviderConfig,
    client: Arc<CloudClient>,
    secrets: Arc<dyn access_key::SecretReader>,
) -> Arc<CredentialProvider> {
    let clock = client.clock().clone();
    let source: Box<dyn CredentialSource> = match &config.source {
        SourceConfig::ManagedRole { token_file } => Box::new(managed_role::ManagedRoleSource::new(
            token_file.clone(),
            clock.clone(),
        )),
        SourceConfig::WorkerRole { role_name } => Box::new(worker_role::WorkerRoleSource::new(
            client.clone(),
            role_name.clone(),
        )),
        SourceConfig::Rrsa {
            role_arn,
            oidc_provider_arn,
            token_file,
            session_name,
        } => Box::new(rrsa::RrsaSource::new(
            client.clone(),
            rrsa::RrsaConfig {
                role_arn: role_arn.clone(),
                oidc_provider_arn: oidc_provider_arn.clone(),
                token_file: token_file.clone(),
                session_name: session_name.clone(),
                duration: Duration::from_secs(3600),
            },
        )),
        SourceConfig::AccessKey(secret_ref) => Box::new(access_key::AccessKeySource::new(
            secrets,
            secret_ref.clone(),
        )),
    };
    let base = Arc::new(CredentialProvider::new(source, clock.clone()));
    match &config.assume_role {
        None => base,
        Some(hop) => Arc::new(CredentialProvider::new(
            Box::new(assume_role::AssumeRoleSource::new(
                client,
                base,
                hop.clone(),
            )),
            clock,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::clock::ManualClock;
    use crate::sensitive::Sensitive;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn refresh_window() {
        let obtained = t("2024-01-01T00:00:00Z");
        let exp = Some(t("2024-01-01T01:00:00Z"));
        let ttl = Duration::from_secs(30);
        assert!(!needs_refresh(
            t("2024-01-01T00:56:59Z"),
            obtained,
            exp,
            ttl
        ));
        assert!(needs_refresh(t("2024-01-01T00:57:00Z"), obtained, exp, ttl));
        // Short-lived credentials refresh in their last fifth.
        let short = Some(t("2024-01-01T00:01:00Z"));
        assert!(!needs_refresh(
            t("2024-01-01T00:00:47Z"),
            obtained,
            short,
            ttl
        ));
        assert!(needs_refresh(
            t("2024-01-01T00:00:48Z"),
            obtained,
            short,
            ttl
        ));
        assert!(needs_refresh(
            t("2024-01-01T00:00:31Z"),
            obtained,
            None,
            ttl
        ));
        assert!(!needs_refresh(
            t("2024-01-01T00:00:29Z"),
            obtained,
            None,
            ttl
        ));
    }

    struct Counting {
        calls: Arc<AtomicUsize>,
        clock: Arc<ManualClock>,
    }

    impl CredentialSource for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CloudError>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Credentials {
                    access_key_id: format!("STS.{n}"),
                    access_key_secret: Sensitive::new("s".into()),
                    security_token: Some(Sensitive::new("t".into())),
                    expires_at: Some(
                        self.clock
                            .now()
                            .checked_add(jiff::SignedDuration::from_secs(3600))
                            .unwrap(),
                    ),
                    principal: "counting".into(),
                })
            })
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_cache_until_near_expiry() {
        let clock = ManualClock::new(t("2024-01-01T00:00:00Z"));
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = Arc::new(CredentialProvider::new(
            Box::new(Counting {
                calls: calls.clone(),
                clock: clock.clone(),
            }),
            clock.clone(),
        ));
        let results = futures::future::join_all((0..8).map(|_| {
            let p = provider.clone();
            async move { p.credentials().await.unwrap().access_key_id }
        }))
        .await;
        assert!(results.iter().all(|id| id == "STS.0"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(provider.cached_expiry(), Some(t("2024-01-01T01:00:00Z")));
        clock.advance(jiff::SignedDuration::from_secs(3000));
        assert_eq!(provider.credentials().await.unwrap().access_key_id, "STS.0");
        clock.advance(jiff::SignedDuration::from_secs(500));
        assert_eq!(provider.credentials().await.unwrap().access_key_id, "STS.1");
        provider.invalidate().await;
        assert_eq!(provider.cached_expiry(), None);
        assert_eq!(provider.credentials().await.unwrap().access_key_id, "STS.2");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials {
            access_key_id: "LTAIid".into(),
            access_key_secret: Sensitive::new("topsecret".into()),
            security_token: Some(Sensitive::new("tokensecret".into())),
            expires_at: None,
            principal: "accessKey:LTAIid".into(),
        };
        let s = format!("{c:?}");
        assert!(
            !s.contains("topsecret") && !s.contains("tokensecret"),
            "{s}"
        );
        assert!(s.contains("LTAIid"));
    }
}
