//! STS 2015-04-01: `AssumeRole` (signed) and `AssumeRoleWithOIDC` (anonymous).
//!
//! API parameters go in a form body, as credentials-go sends them; the common parameters stay
//! in the query. Response parsing is a pure function of the JSON body.

use std::collections::BTreeMap;
use std::time::Duration;

use super::client::{CloudClient, RpcCall};
use super::error::CloudError;
use super::keypair::Credentials;
use super::sign::parse_iso8601;
use crate::sensitive::Sensitive;

/// STS API version.
pub const VERSION: &str = "2015-04-01";

/// Parameters of `AssumeRole`.
#[derive(Debug, Clone)]
pub struct AssumeRoleRequest {
    pub role_arn: String,
    pub session_name: String,
    pub duration: Duration,
    pub external_id: Option<String>,
}

/// Parameters of `AssumeRoleWithOIDC`.
#[derive(Debug, Clone)]
pub struct OidcRequest {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    pub oidc_token: Sensitive<String>,
    pub session_name: String,
    pub duration: Duration,
}

/// What STS returned.
#[derive(Debug, Clone)]
pub struct AssumedRole {
    /// The temporary credentials; `principal` is left for the caller to set.
    pub credentials: Credentials,
    /// `AssumedRoleUser.Arn`.
    pub assumed_role_arn: Option<String>,
    pub request_id: Option<String>,
}

/// Checks a `RoleSessionName`: 2–64 characters of `A–Z a–z 0–9 . @ - _`.
pub fn validate_session_name(name: &str) -> Result<(), CloudError> {
    let ok = (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(CloudError::Config {
            message: format!(
                "role session name {name:?} must be 2-64 characters of letters, digits, '.', '@', '-', '_'"
            ),
        })
    }
}

/// Parses an STS success body into credentials.
pub fn parse_response(
    api: &'static str,
    body: &serde_json::Value,
) -> Result<AssumedRole, CloudError> {
    let bad = |message: &str| CloudError::BadResponse {
        api,
        message: message.to_string(),
    };
    let c = body
        .get("Credentials")
        .ok_or_else(|| bad("no Credentials object"))?;
    let field = |name: &str| {
        c.get(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    let access_key_id = field("AccessKeyId").ok_or_else(|| bad("no Credentials.AccessKeyId"))?;
    let secret = field("AccessKeySecret").ok_or_else(|| bad("no Credentials.AccessKeySecret"))?;
    let token = field("SecurityToken").ok_or_else(|| bad("no Credentials.SecurityToken"))?;
    let expiration = field("Expiration").ok_or_else(|| bad("no Credentials.Expiration"))?;
    let expires_at = parse_iso8601(expiration)
        .ok_or_else(|| bad("Credentials.Expiration is not an ISO 8601 time"))?;
    Ok(AssumedRole {
        credentials: Credentials {
            access_key_id: access_key_id.to_string(),
            access_key_secret: Sensitive::new(secret.to_string()),
            security_token: Some(Sensitive::new(token.to_string())),
            expires_at: Some(expires_at),
            principal: String::new(),
        },
        assumed_role_arn: body
            .pointer("/AssumedRoleUser/Arn")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        request_id: body
            .get("RequestId")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    })
}

impl CloudClient {
    /// `sts:AssumeRole` with `creds`.
    pub async fn assume_role(
        &self,
        creds: &Credentials,
        req: &AssumeRoleRequest,
    ) -> Result<AssumedRole, CloudError> {
        validate_session_name(&req.session_name)?;
        let mut form = BTreeMap::from([
            ("RoleArn".to_string(), req.role_arn.clone()),
            ("RoleSessionName".to_string(), req.session_name.clone()),
            (
                "DurationSeconds".to_string(),
                req.duration.as_secs().to_string(),
            ),
        ]);
        if let Some(ext) = &req.external_id {
            form.insert("ExternalId".into(), ext.clone());
        }
        let call = RpcCall {
            api: "sts:AssumeRole",
            action: "AssumeRole",
            version: VERSION,
            query: BTreeMap::new(),
            form,
        };
        let body = self.rpc(&self.endpoints().sts()?, &call, creds).await?;
        parse_response(call.api, &body)
    }

    /// `sts:AssumeRoleWithOIDC`, unsigned: the OIDC token authenticates.
    pub async fn assume_role_with_oidc(
        &self,
        req: &OidcRequest,
    ) -> Result<AssumedRole, CloudError> {
        validate_session_name(&req.session_name)?;
        let form = BTreeMap::from([
            ("RoleArn".to_string(), req.role_arn.clone()),
            ("OIDCProviderArn".to_string(), req.oidc_provider_arn.clone()),
            ("OIDCToken".to_string(), req.oidc_token.expose().clone()),
            ("RoleSessionName".to_string(), req.session_name.clone()),
            (
                "DurationSeconds".to_string(),
                req.duration.as_secs().to_string(),
            ),
        ]);
        let call = RpcCall {
            api: "sts:AssumeRoleWithOIDC",
            action: "AssumeRoleWithOIDC",
            version: VERSION,
            query: BTreeMap::new(),
            form,
        };
        let body = self.rpc_anonymous(&self.endpoints().sts()?, &call).await?;
        parse_response(call.api, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_response() {
        let body = serde_json::json!({
            "RequestId": "6894B13B-6D71-4EF5-88FA-F32781734A7F",
            "AssumedRoleUser": {"AssumedRoleId": "34458433936495****:alice", "Arn": "acs:ram::123456789012****:role/adminrole/alice"},
            "Credentials": {"AccessKeyId": "STS.L4aBSCSJVMuKg5U1****", "AccessKeySecret": "wyLT****",
                            "SecurityToken": "********", "Expiration": "2015-04-09T11:52:19Z"}
        });
        let r = parse_response("sts:AssumeRole", &body).unwrap();
        assert_eq!(r.credentials.access_key_id, "STS.L4aBSCSJVMuKg5U1****");
        assert_eq!(
            r.credentials.expires_at.unwrap().to_string(),
            "2015-04-09T11:52:19Z"
        );
        assert_eq!(
            r.request_id.as_deref(),
            Some("6894B13B-6D71-4EF5-88FA-F32781734A7F")
        );
        assert_eq!(
            r.assumed_role_arn.as_deref(),
            Some("acs:ram::123456789012****:role/adminrole/alice")
        );
    }

    #[test]
    fn rejects_incomplete_response() {
        let body = serde_json::json!({"Credentials": {"AccessKeyId": "STS.x", "AccessKeySecret": "s", "Expiration": "2015-04-09T11:52:19Z"}});
        let e = parse_response("sts:AssumeRole", &body).unwrap_err();
        assert_eq!(e.reason(), "BadResponse");
        assert!(e.to_string().contains("SecurityToken"));
    }

    #[test]
    fn session_name_rules() {
        assert!(validate_session_name("acr-credential-controller").is_ok());
        assert!(validate_session_name("a").is_err());
        assert!(validate_session_name("has space").is_err());
        assert!(validate_session_name(&"x".repeat(65)).is_err());
    }
}
