//! `acr-credential-provider`: a kubelet image credential provider for ACR.
//!
//! The kubelet runs the plugin for every image matching its `matchImages`, writes a
//! `CredentialProviderRequest` to stdin and reads a `CredentialProviderResponse` from stdout.
//! The plugin maps the image's host to an ACR registry ([`hosts`]), obtains credentials with
//! the node's RAM role or with the pulling Pod's own ServiceAccount token ([`exchange`]), and
//! answers with a registry token cached for its real remaining life minus a margin (counted with
//! the cloud's clock, from the `Date` of its answer, not the node's). No Secret
//! is written anywhere. The same RAM roles and policies serve the controller.
//!
//! - [`protocol`]: the kubelet's request and response types (pure).
//! - [`config`]: the plugin's YAML configuration and its validation (pure).
//! - [`hosts`]: host → registry mapping (pure).
//! - [`exchange`]: credential source → credentials → registry token, and the cache duration.
//!
//! [`answer`] does one call within the configured time budget; errors carry no secret.

pub mod config;
pub mod exchange;
pub mod hosts;
pub mod protocol;

use std::sync::Arc;
use std::time::Duration;

use crate::cloud::endpoints::Endpoints;
use crate::cloud::error::CloudError;
use crate::cloud::http::HttpConfig;
use crate::cloud::{CloudClient, CloudConfig, SignatureStyle};
use config::Config;
use protocol::{AuthConfig, Request, Response};

/// Why the plugin could not answer. Every message is safe to print: no token, key or password.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Request(#[from] protocol::RequestError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<config::ConfigError>),
    #[error(transparent)]
    Host(#[from] hosts::HostError),
    /// The request does not fit the configured credential source (a ServiceAccount token too
    /// many or missing, a missing or bad role annotation).
    #[error("{0}")]
    Source(String),
    /// The cloud refused or failed; `principal` is who asked (the source's description).
    #[error("{}", cloud_message(.principal, .registry, .source))]
    Cloud {
        principal: String,
        registry: String,
        source: Box<CloudError>,
    },
    #[error("no answer from Alibaba Cloud within the {}s budget (timeout in the plugin configuration); check the node's network path to the metadata service, STS and the Container Registry API", .0.as_secs())]
    Timeout(Duration),
    #[error("the registry token for {0} has already expired; check the node's clock")]
    Expired(String),
    #[error("{0}")]
    Io(String),
}

fn cloud_message(principal: &str, registry: &str, e: &CloudError) -> String {
    let mut m = format!("registry token for {registry} with {principal}: {e}");
    if let Some(hint) = e.hint() {
        m.push_str(" (hint: ");
        m.push_str(hint);
        m.push(')');
    }
    m
}

/// The cloud client the configuration describes, with timeouts that fit the budget.
pub fn client(config: &Config) -> Result<Arc<CloudClient>, ProviderError> {
    let mut endpoints = Endpoints::new(config.region.clone(), config.network);
    endpoints.overrides = config.overrides.clone();
    let per_request = config.timeout.min(Duration::from_secs(5));
    let http = HttpConfig {
        connect_timeout: per_request.min(Duration::from_secs(2)),
        request_timeout: per_request,
        max_attempts: 3,
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(2),
    };
    CloudClient::new(CloudConfig {
        endpoints,
        http,
        signature: SignatureStyle::V2,
    })
    .map(Arc::new)
    .map_err(|e| ProviderError::Io(e.to_string()))
}

/// Answers one request: credentials for an ACR host, "no credentials" for any other.
pub async fn answer(
    config: &Config,
    client: &Arc<CloudClient>,
    request: &Request,
) -> Result<Response, ProviderError> {
    let Some(host) = protocol::image_host(&request.image) else {
        return Ok(Response::no_credentials());
    };
    let Some(registry) = hosts::resolve(&host, config)? else {
        return Ok(Response::no_credentials());
    };
    let work = exchange::registry_token(
        config,
        client,
        &registry,
        request.service_account_token.as_ref(),
        &request.service_account_annotations,
    );
    let token = tokio::time::timeout(config.timeout, work)
        .await
        .map_err(|_| ProviderError::Timeout(config.timeout))??;
    let remaining = exchange::remaining_life(token.expires_at, client.now(), client.cloud_now())
        .ok_or_else(|| ProviderError::Expired(registry.key()))?;
    let cache_for = exchange::cache_duration(remaining, config.cache_margin);
    tracing::info!(
        registry = %registry.key(),
        host = %host,
        expires_at = %token.expires_at,
        cache_seconds = cache_for.as_secs(),
        "issued registry credentials"
    );
    Ok(Response::credentials(
        &host,
        AuthConfig {
            username: token.username.clone(),
            password: token.password.expose().clone(),
        },
        cache_for,
    ))
}

/// The whole call: configuration, request, answer, as JSON for stdout.
pub async fn run(config_path: &std::path::Path, stdin: &[u8]) -> Result<String, ProviderError> {
    let config = config::load(config_path).map_err(ProviderError::Config)?;
    let request = protocol::parse_request(stdin)?;
    let client = client(&config)?;
    let response = answer(&config, &client, &request)
        .await?
        .in_version_of(&request);
    serde_json::to_string(&response)
        .map_err(|e| ProviderError::Io(format!("cannot encode the response: {e}")))
}
