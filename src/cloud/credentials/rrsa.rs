//! `rrsa`: pod identity through ACK's RRSA (OIDC).
//!
//! The projected service-account token (audience `sts.aliyuncs.com`) is read afresh from its
//! file on every fetch, because the kubelet rotates it, and exchanged with the unsigned
//! `AssumeRoleWithOIDC` for STS credentials of the configured role.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{CredentialSource, Credentials};
use crate::cloud::client::CloudClient;
use crate::cloud::error::CloudError;
use crate::cloud::sts::OidcRequest;
use crate::sensitive::Sensitive;

/// What RRSA needs.
#[derive(Debug, Clone)]
pub struct RrsaConfig {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    pub token_file: PathBuf,
    pub session_name: String,
    pub duration: Duration,
}

/// Exchanges the pod's OIDC token for STS credentials.
pub struct RrsaSource {
    client: Arc<CloudClient>,
    config: RrsaConfig,
}

impl RrsaSource {
    pub fn new(client: Arc<CloudClient>, config: RrsaConfig) -> Self {
        Self { client, config }
    }
}

impl CredentialSource for RrsaSource {
    fn describe(&self) -> String {
        format!("rrsa:{}", self.config.role_arn)
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CloudError>> {
        Box::pin(async move {
            let path = &self.config.token_file;
            let token = tokio::fs::read_to_string(path).await.map_err(|e| {
                CloudError::CredentialSource {
                    source_kind: "rrsa",
                    message: format!("cannot read the OIDC token file {}: {e}", path.display()),
                }
            })?;
            let token = token.trim();
            if token.is_empty() {
                return Err(CloudError::CredentialSource {
                    source_kind: "rrsa",
                    message: format!("the OIDC token file {} is empty", path.display()),
                });
            }
            let req = OidcRequest {
                role_arn: self.config.role_arn.clone(),
                oidc_provider_arn: self.config.oidc_provider_arn.clone(),
                oidc_token: Sensitive::new(token.to_string()),
                session_name: self.config.session_name.clone(),
                duration: self.config.duration,
            };
            let mut assumed = self.client.assume_role_with_oidc(&req).await?;
            assumed.credentials.principal = self.describe();
            Ok(assumed.credentials)
        })
    }
}
