//! The optional `assumeRole` hop: `sts:AssumeRole` on top of any other source.
//!
//! The base provider supplies (cached) credentials; this source exchanges them for the target
//! role's, with the configured duration, session name and external id. When STS says the
//! base credentials themselves have expired, the base cache is dropped and the hop is tried
//! once more with fresh ones.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{AssumeRoleConfig, CredentialProvider, CredentialSource, Credentials};
use crate::cloud::client::CloudClient;
use crate::cloud::error::CloudError;
use crate::cloud::sts::AssumeRoleRequest;

/// Assumes a role with the base provider's credentials.
pub struct AssumeRoleSource {
    client: Arc<CloudClient>,
    base: Arc<CredentialProvider>,
    config: AssumeRoleConfig,
}

impl AssumeRoleSource {
    pub fn new(
        client: Arc<CloudClient>,
        base: Arc<CredentialProvider>,
        config: AssumeRoleConfig,
    ) -> Self {
        Self {
            client,
            base,
            config,
        }
    }

    fn request(&self) -> AssumeRoleRequest {
        AssumeRoleRequest {
            role_arn: self.config.role_arn.clone(),
            session_name: self.config.session_name.clone(),
            duration: self.config.duration,
            external_id: self.config.external_id.clone(),
        }
    }
}

impl CredentialSource for AssumeRoleSource {
    fn describe(&self) -> String {
        format!(
            "{}+assumeRole:{}",
            self.base.describe(),
            self.config.role_arn
        )
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CloudError>> {
        Box::pin(async move {
            let mut base = self.base.credentials().await?;
            let assumed = match self.client.assume_role(&base, &self.request()).await {
                Err(e) if e.is_expired_credentials() => {
                    self.base.invalidate().await;
                    base = self.base.credentials().await?;
                    self.client.assume_role(&base, &self.request()).await?
                }
                other => other?,
            };
            let mut creds = assumed.credentials;
            creds.principal = format!("{}+assumeRole:{}", base.principal, self.config.role_arn);
            Ok(creds)
        })
    }
}
