//! CR Personal Edition, API 2016-06-07 (ROA): `GET /tokens`.

use super::{RegistryToken, expiry_from_millis};
use crate::cloud::client::CloudClient;
use crate::cloud::error::CloudError;
use crate::cloud::keypair::Credentials;
use crate::sensitive::Sensitive;

/// API version.
pub const VERSION: &str = "2016-06-07";
pub const API: &str = "cr-personal:GetAuthorizationToken";

/// Parses a `GET /tokens` answer (`data.authorizationToken`, `data.tempUserName`, `data.expireDate`).
pub fn parse_token(body: &serde_json::Value) -> Result<RegistryToken, CloudError> {
    let data = body.get("data").ok_or_else(|| CloudError::BadResponse {
        api: API,
        message: "no data object".into(),
    })?;
    let field = |k: &str| {
        data.get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| CloudError::BadResponse {
                api: API,
                message: format!("no data.{k}"),
            })
    };
    Ok(RegistryToken {
        username: field("tempUserName")?.to_string(),
        password: Sensitive::new(field("authorizationToken")?.to_string()),
        expires_at: expiry_from_millis(API, data.get("expireDate"))?,
        request_id: body
            .get("requestId")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    })
}

impl CloudClient {
    /// The region's Personal Edition token.
    pub async fn personal_token(
        &self,
        creds: &Credentials,
        region: &str,
    ) -> Result<RegistryToken, CloudError> {
        let base = self.endpoints().cr(region)?;
        let body = self
            .roa_get(
                API,
                &base,
                "/tokens",
                ("GetAuthorizationToken", VERSION),
                creds,
            )
            .await?;
        parse_token(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_answer() {
        let body = serde_json::json!({"data":{"authorizationToken":"eyJ0aW1lIjoiMTUyNjU0OTc5:0705733****",
            "tempUserName":"cr_temp_user","expireDate":1526549792000i64},"requestId":"94E89857-B994-44B6-9C4F-DBD200E9E272"});
        let t = parse_token(&body).unwrap();
        assert_eq!(t.username, "cr_temp_user");
        assert_eq!(t.expires_at.as_millisecond(), 1526549792000);
        assert_eq!(
            t.request_id.as_deref(),
            Some("94E89857-B994-44B6-9C4F-DBD200E9E272")
        );
    }

    #[test]
    fn missing_fields_are_bad_responses() {
        assert_eq!(
            parse_token(&serde_json::json!({})).unwrap_err().reason(),
            "BadResponse"
        );
        let e =
            parse_token(&serde_json::json!({"data":{"tempUserName":"u","authorizationToken":"p"}}))
                .unwrap_err();
        assert!(e.to_string().contains("expiry"));
    }
}
