//! `CloudClient`: builds, signs and sends requests to the configured endpoints.
//!
//! Request building is pure ([`super::request`]); the client only adds the injected clock and
//! nonce source and hands the result to the [`Transport`]. RPC APIs are signed with V2 by
//! default or V3 when configured; ROA uses the ROA signature; `AssumeRoleWithOIDC` is sent
//! unsigned, as the service requires.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::clock::{Clock, Nonces, RandomNonces, SystemClock};
use super::endpoints::Endpoints;
use super::error::CloudError;
use super::http::{HttpConfig, Prepared, Transport};
use super::keypair::Credentials;
pub use super::request::RpcCall;
use super::request::{prepare_roa_get, prepare_rpc_anonymous, prepare_rpc_v2, prepare_rpc_v3};

/// Which signature RPC calls use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureStyle {
    /// RPC signature V2 (HMAC-SHA1).
    #[default]
    V2,
    /// ACS3-HMAC-SHA256.
    V3,
}

/// Everything the client needs to know.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    pub endpoints: Endpoints,
    pub http: HttpConfig,
    pub signature: SignatureStyle,
}

/// The client every cloud call goes through.
#[derive(Debug, Clone)]
pub struct CloudClient {
    transport: Transport,
    endpoints: Endpoints,
    signature: SignatureStyle,
    clock: Arc<dyn Clock>,
    nonces: Arc<dyn Nonces>,
}

impl CloudClient {
    /// A client with the system clock and random nonces.
    pub fn new(config: CloudConfig) -> Result<Self, CloudError> {
        Ok(Self {
            transport: Transport::new(config.http)?,
            endpoints: config.endpoints,
            signature: config.signature,
            clock: Arc::new(SystemClock),
            nonces: Arc::new(RandomNonces),
        })
    }

    /// Replaces the clock (e.g. a skewed one in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the nonce source.
    pub fn with_nonces(mut self, nonces: Arc<dyn Nonces>) -> Self {
        self.nonces = nonces;
        self
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The cloud's clock, from the `Date` of its latest answer (see [`Transport::cloud_now`]);
    /// `None` before any dated answer.
    pub fn cloud_now(&self) -> Option<jiff::Timestamp> {
        self.transport.cloud_now()
    }

    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// Calls a signed RPC API and returns its JSON body.
    pub async fn rpc(
        &self,
        base: &Url,
        call: &RpcCall,
        creds: &Credentials,
    ) -> Result<serde_json::Value, CloudError> {
        let answer = self
            .transport
            .call(call.api, || {
                let (now, nonce) = (self.clock.now(), self.nonces.nonce());
                Ok(match self.signature {
                    SignatureStyle::V2 => prepare_rpc_v2(base, call, creds, now, &nonce),
                    SignatureStyle::V3 => prepare_rpc_v3(base, call, creds, now, &nonce),
                })
            })
            .await?;
        parse_json(call.api, &answer.body)
    }

    /// Calls an RPC API without a signature (`AssumeRoleWithOIDC`).
    pub async fn rpc_anonymous(
        &self,
        base: &Url,
        call: &RpcCall,
    ) -> Result<serde_json::Value, CloudError> {
        let answer = self
            .transport
            .call(call.api, || {
                Ok(prepare_rpc_anonymous(
                    base,
                    call,
                    self.clock.now(),
                    &self.nonces.nonce(),
                ))
            })
            .await?;
        parse_json(call.api, &answer.body)
    }

    /// Calls a ROA `GET` API and returns its JSON body.
    pub async fn roa_get(
        &self,
        api: &'static str,
        base: &Url,
        path: &str,
        (action, version): (&str, &str),
        creds: &Credentials,
    ) -> Result<serde_json::Value, CloudError> {
        let answer = self
            .transport
            .call(api, || {
                Ok(prepare_roa_get(
                    base,
                    path,
                    action,
                    version,
                    creds,
                    self.clock.now(),
                    &self.nonces.nonce(),
                ))
            })
            .await?;
        parse_json(api, &answer.body)
    }

    /// A plain-text request to the metadata service (1 s timeout, retried like any call).
    pub async fn metadata(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<String, CloudError> {
        let mut url = self.endpoints.metadata()?;
        url.set_path(path);
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let answer = self
            .transport
            .call("ecs:metadata", || {
                Ok(Prepared {
                    method: method.clone(),
                    url: url.clone(),
                    headers: headers.clone(),
                    body: Vec::new(),
                    timeout: Some(Duration::from_secs(1)),
                })
            })
            .await?;
        String::from_utf8(answer.body).map_err(|_| CloudError::BadResponse {
            api: "ecs:metadata",
            message: "body is not UTF-8".into(),
        })
    }
}

fn parse_json(api: &'static str, body: &[u8]) -> Result<serde_json::Value, CloudError> {
    serde_json::from_slice(body).map_err(|e| CloudError::BadResponse {
        api,
        message: format!("not JSON: {e}"),
    })
}
