//! How the token manager reaches the cloud: the [`TokenFetcher`] trait (so the manager is
//! tested without a network) and [`CloudFetcher`], the production implementation: credential
//! providers cached per credential chain, and the registry token APIs of [`crate::cloud`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use jiff::Timestamp;

use crate::cloud::CloudError;
use crate::cloud::client::CloudClient;
use crate::cloud::credentials::access_key::SecretReader;
use crate::cloud::credentials::{CredentialProvider, ProviderConfig, build_provider};
use crate::cloud::registry::{self, Registry, RegistryToken};
use crate::model::token::{TokenRequest, chain_key};

/// Obtains tokens (and domains) from the cloud.
pub trait TokenFetcher: Send + Sync {
    /// A fresh registry token.
    fn token<'a>(
        &'a self,
        req: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<RegistryToken, CloudError>>;
    /// The registry's domains.
    fn domains<'a>(
        &'a self,
        req: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<Vec<String>, CloudError>>;
    /// When the credentials currently held for `provider` expire, without a cloud call
    /// (`None`: none held, or long-lived).
    fn credentials_expire_at(&self, _provider: &ProviderConfig) -> Option<Timestamp> {
        None
    }
    /// Forgets whatever is cached for credential chains other than `live`.
    fn retain(&self, _live: &[&ProviderConfig]) {}
}

/// The production fetcher: credential providers (cached per credential chain) and the registry
/// token APIs of [`crate::cloud`].
pub struct CloudFetcher {
    client: Arc<CloudClient>,
    secrets: Arc<dyn SecretReader>,
    /// Keyed by [`chain_key`], as the token cache is.
    providers: Mutex<HashMap<String, Arc<CredentialProvider>>>,
}

impl CloudFetcher {
    pub fn new(client: Arc<CloudClient>, secrets: Arc<dyn SecretReader>) -> Self {
        Self {
            client,
            secrets,
            providers: Mutex::new(HashMap::new()),
        }
    }

    fn providers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CredentialProvider>>> {
        self.providers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn provider(&self, config: &ProviderConfig) -> Arc<CredentialProvider> {
        self.providers()
            .entry(chain_key(config))
            .or_insert_with(|| build_provider(config, self.client.clone(), self.secrets.clone()))
            .clone()
    }
}

impl TokenFetcher for CloudFetcher {
    fn token<'a>(
        &'a self,
        req: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<RegistryToken, CloudError>> {
        Box::pin(async move {
            let provider = self.provider(&req.provider);
            registry::fetch_token(&self.client, &provider, &req.registry).await
        })
    }

    fn domains<'a>(
        &'a self,
        req: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<Vec<String>, CloudError>> {
        Box::pin(async move {
            match &req.registry {
                Registry::Personal { region } => Ok(registry::personal_domains(region)),
                Registry::Enterprise {
                    region,
                    instance_id,
                } => {
                    let provider = self.provider(&req.provider);
                    registry::discover_domains(&self.client, &provider, region, instance_id).await
                }
            }
        })
    }

    fn credentials_expire_at(&self, config: &ProviderConfig) -> Option<Timestamp> {
        self.providers().get(&chain_key(config))?.cached_expiry()
    }

    fn retain(&self, live: &[&ProviderConfig]) {
        let keep: std::collections::HashSet<String> = live.iter().map(|c| chain_key(c)).collect();
        self.providers().retain(|k, _| keep.contains(k));
    }
}
