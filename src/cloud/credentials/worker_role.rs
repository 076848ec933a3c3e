//! `workerRole`: the node's ECS RAM role, from the instance metadata service.
//!
//! Hardened mode first: `PUT /latest/api/token` (TTL header) yields a token sent as
//! `X-aliyun-ecs-metadata-token`; if that fails the request goes on without one, as the SDKs
//! do. Then the role name (`GET /latest/meta-data/ram/security-credentials/`, unless
//! configured) and the credentials (`…/<roleName>`, JSON with `Code == "Success"`).

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{CredentialSource, Credentials};
use crate::cloud::client::CloudClient;
use crate::cloud::error::CloudError;
use crate::cloud::sign::parse_iso8601;
use crate::sensitive::Sensitive;

const KIND: &str = "workerRole";
/// Path of the role-name listing and prefix of the credentials document.
pub const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";
/// Path of the hardened-mode token.
pub const TOKEN_PATH: &str = "/latest/api/token";
/// Token lifetime asked for (the SDKs' value).
pub const TOKEN_TTL_SECONDS: &str = "21600";

/// Parses the credentials document of role `role`.
pub fn parse_credentials(role: &str, body: &str) -> Result<Credentials, CloudError> {
    let bad = |m: &str| CloudError::BadResponse {
        api: "ecs:metadata",
        message: m.to_string(),
    };
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|_| bad("credentials document is not JSON"))?;
    let field = |k: &str| {
        json.get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    if field("Code") != Some("Success") {
        return Err(CloudError::CredentialSource {
            source_kind: KIND,
            message: format!(
                "metadata service answered Code {:?} for role {role:?}",
                field("Code").unwrap_or("")
            ),
        });
    }
    let expiration = field("Expiration").ok_or_else(|| bad("no Expiration"))?;
    Ok(Credentials {
        access_key_id: field("AccessKeyId")
            .ok_or_else(|| bad("no AccessKeyId"))?
            .to_string(),
        access_key_secret: Sensitive::new(
            field("AccessKeySecret")
                .ok_or_else(|| bad("no AccessKeySecret"))?
                .to_string(),
        ),
        security_token: Some(Sensitive::new(
            field("SecurityToken")
                .ok_or_else(|| bad("no SecurityToken"))?
                .to_string(),
        )),
        expires_at: Some(
            parse_iso8601(expiration).ok_or_else(|| bad("Expiration is not an ISO 8601 time"))?,
        ),
        principal: format!("{KIND}:{role}"),
    })
}

/// Reads the node's RAM role credentials from the metadata service.
pub struct WorkerRoleSource {
    client: Arc<CloudClient>,
    role_name: Option<String>,
}

impl WorkerRoleSource {
    pub fn new(client: Arc<CloudClient>, role_name: Option<String>) -> Self {
        Self { client, role_name }
    }

    async fn token(&self) -> Option<String> {
        let result = self
            .client
            .metadata(
                reqwest::Method::PUT,
                TOKEN_PATH,
                &[("X-aliyun-ecs-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)],
            )
            .await;
        match result {
            Ok(token) => Some(token.trim().to_string()),
            Err(e) => {
                tracing::debug!(
                    reason = e.reason(),
                    "metadata token unavailable; continuing without one"
                );
                None
            }
        }
    }
}

impl CredentialSource for WorkerRoleSource {
    fn describe(&self) -> String {
        match &self.role_name {
            Some(r) => format!("{KIND}:{r}"),
            None => KIND.to_string(),
        }
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CloudError>> {
        Box::pin(async move {
            let token = self.token().await;
            let headers: Vec<(&str, &str)> = token
                .iter()
                .map(|t| ("X-aliyun-ecs-metadata-token", t.as_str()))
                .collect();
            let role = match &self.role_name {
                Some(r) => r.clone(),
                None => {
                    let listing = self
                        .client
                        .metadata(reqwest::Method::GET, CREDENTIALS_PATH, &headers)
                        .await?;
                    let role = listing.lines().next().unwrap_or("").trim().to_string();
                    if role.is_empty() {
                        return Err(CloudError::CredentialSource {
                            source_kind: KIND,
                            message: "this ECS instance has no RAM role attached".into(),
                        });
                    }
                    role
                }
            };
            let path = format!("{CREDENTIALS_PATH}{role}");
            let body = self
                .client
                .metadata(reqwest::Method::GET, &path, &headers)
                .await?;
            parse_credentials(&role, &body)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_example() {
        let body = r#"{"AccessKeyId":"STS.XXXX6YSE","AccessKeySecret":"ajXXXXjDU","Expiration":"2017-11-01T05:20:01Z","SecurityToken":"CAISXXXX","LastUpdated":"2017-10-31T23:20:01Z","Code":"Success"}"#;
        let c = parse_credentials("node-role", body).unwrap();
        assert_eq!(c.access_key_id, "STS.XXXX6YSE");
        assert_eq!(c.principal, "workerRole:node-role");
        assert_eq!(c.expires_at.unwrap().to_string(), "2017-11-01T05:20:01Z");
    }

    #[test]
    fn rejects_failure_code_and_missing_fields() {
        assert_eq!(
            parse_credentials("r", r#"{"Code":"Failed"}"#)
                .unwrap_err()
                .reason(),
            "CredentialSourceFailed"
        );
        let e = parse_credentials(
            "r",
            r#"{"Code":"Success","AccessKeyId":"a","AccessKeySecret":"b","Expiration":"2017-11-01T05:20:01Z"}"#,
        );
        assert_eq!(e.unwrap_err().reason(), "BadResponse");
    }
}
