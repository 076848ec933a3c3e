//! CR Enterprise Edition, API 2018-12-01 (RPC): `GetAuthorizationToken`, `ListInstanceEndpoint`.

use std::collections::BTreeMap;

use super::{RegistryToken, expiry_from_millis};
use crate::cloud::client::{CloudClient, RpcCall};
use crate::cloud::error::CloudError;
use crate::cloud::keypair::Credentials;
use crate::sensitive::Sensitive;

/// API version.
pub const VERSION: &str = "2018-12-01";

/// One domain of an instance endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointDomain {
    pub domain: String,
    /// `SYSTEM` or `USER`.
    pub kind: String,
}

/// One endpoint (internet or VPC) of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEndpoint {
    /// `internet` or `vpc`.
    pub endpoint_type: String,
    pub enabled: bool,
    pub status: String,
    pub domains: Vec<EndpointDomain>,
}

fn is_success(api: &'static str, body: &serde_json::Value) -> Result<(), CloudError> {
    match body.get("IsSuccess").and_then(|v| v.as_bool()) {
        Some(false) => Err(CloudError::BadResponse {
            api,
            message: format!(
                "IsSuccess is false (Code {:?})",
                body.get("Code").and_then(|v| v.as_str()).unwrap_or("")
            ),
        }),
        _ => Ok(()),
    }
}

/// Parses a `GetAuthorizationToken` answer.
pub fn parse_token(body: &serde_json::Value) -> Result<RegistryToken, CloudError> {
    const API: &str = "cr:GetAuthorizationToken";
    is_success(API, body)?;
    let field = |k: &str| {
        body.get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| CloudError::BadResponse {
                api: API,
                message: format!("no {k}"),
            })
    };
    Ok(RegistryToken {
        username: field("TempUsername")?.to_string(),
        password: Sensitive::new(field("AuthorizationToken")?.to_string()),
        expires_at: expiry_from_millis(API, body.get("ExpireTime"))?,
        request_id: body
            .get("RequestId")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    })
}

/// Parses a `ListInstanceEndpoint` answer.
pub fn parse_endpoints(body: &serde_json::Value) -> Result<Vec<InstanceEndpoint>, CloudError> {
    const API: &str = "cr:ListInstanceEndpoint";
    is_success(API, body)?;
    let list = body
        .get("Endpoints")
        .and_then(|v| v.as_array())
        .ok_or_else(|| CloudError::BadResponse {
            api: API,
            message: "no Endpoints list".into(),
        })?;
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string()
    };
    Ok(list
        .iter()
        .map(|e| InstanceEndpoint {
            endpoint_type: text(e, "EndpointType").to_ascii_lowercase(),
            enabled: e.get("Enable").and_then(|v| v.as_bool()).unwrap_or(false),
            status: text(e, "Status"),
            domains: e
                .get("Domains")
                .and_then(|d| d.as_array())
                .map(|ds| {
                    ds.iter()
                        .map(|d| EndpointDomain {
                            domain: text(d, "Domain"),
                            kind: text(d, "Type"),
                        })
                        .filter(|d| !d.domain.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect())
}

/// Every domain of every enabled endpoint, sorted and without duplicates.
pub fn enabled_domains(endpoints: &[InstanceEndpoint]) -> Vec<String> {
    let mut out: Vec<String> = endpoints
        .iter()
        .filter(|e| e.enabled)
        .flat_map(|e| e.domains.iter().map(|d| d.domain.to_ascii_lowercase()))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn instance_call(
    api: &'static str,
    action: &'static str,
    instance_id: &str,
    extra: &[(&str, &str)],
) -> RpcCall {
    let mut query = BTreeMap::from([("InstanceId".to_string(), instance_id.to_string())]);
    for (k, v) in extra {
        query.insert(k.to_string(), v.to_string());
    }
    RpcCall {
        api,
        action,
        version: VERSION,
        query,
        form: BTreeMap::new(),
    }
}

impl CloudClient {
    /// `cr:GetAuthorizationToken` for an Enterprise instance in `region`.
    pub async fn enterprise_token(
        &self,
        creds: &Credentials,
        region: &str,
        instance_id: &str,
    ) -> Result<RegistryToken, CloudError> {
        let call = instance_call(
            "cr:GetAuthorizationToken",
            "GetAuthorizationToken",
            instance_id,
            &[],
        );
        let body = self
            .rpc(&self.endpoints().cr(region)?, &call, creds)
            .await?;
        parse_token(&body)
    }

    /// `cr:ListInstanceEndpoint` (registry module) for an Enterprise instance.
    pub async fn list_instance_endpoints(
        &self,
        creds: &Credentials,
        region: &str,
        instance_id: &str,
    ) -> Result<Vec<InstanceEndpoint>, CloudError> {
        let call = instance_call(
            "cr:ListInstanceEndpoint",
            "ListInstanceEndpoint",
            instance_id,
            &[("ModuleName", "Registry")],
        );
        let body = self
            .rpc(&self.endpoints().cr(region)?, &call, creds)
            .await?;
        parse_endpoints(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_token_answer() {
        let body = serde_json::json!({"RequestId":"E069EB86-E6AD-4A98-ADDE-0E993390239A","ExpireTime":1571242083000i64,
            "Code":"success","IsSuccess":true,"TempUsername":"temp_user_cr","AuthorizationToken":"shaunadadakks:uuczxnjcyeyhd"});
        let t = parse_token(&body).unwrap();
        assert_eq!(t.username, "temp_user_cr");
        assert_eq!(t.password.expose(), "shaunadadakks:uuczxnjcyeyhd");
        assert_eq!(t.expires_at.as_millisecond(), 1571242083000);
        assert!(!format!("{t:?}").contains("shaunad"));
    }

    #[test]
    fn is_success_false_is_an_error() {
        let body = serde_json::json!({"IsSuccess":false,"Code":"INSTANCE_NOT_EXIST"});
        let e = parse_token(&body).unwrap_err();
        assert!(e.to_string().contains("INSTANCE_NOT_EXIST"));
    }

    #[test]
    fn parses_endpoints_and_selects_enabled_domains() {
        let body = serde_json::json!({"Code":"success","IsSuccess":true,"RequestId":"1B",
            "Endpoints":[
              {"Status":"RUNNING","EndpointType":"internet","AclEnable":true,"Enable":true,
               "Domains":[{"Type":"SYSTEM","Domain":"t1-registry.cn-shanghai.cr.aliyuncs.com"},{"Type":"USER","Domain":"Images.Example.com"}]},
              {"Status":"RUNNING","EndpointType":"vpc","Enable":true,
               "Domains":[{"Type":"SYSTEM","Domain":"t1-registry-vpc.cn-shanghai.cr.aliyuncs.com"}]},
              {"Status":"STOPPED","EndpointType":"internet","Enable":false,
               "Domains":[{"Type":"SYSTEM","Domain":"disabled.example.com"}]}]});
        let eps = parse_endpoints(&body).unwrap();
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[1].endpoint_type, "vpc");
        assert_eq!(
            enabled_domains(&eps),
            [
                "images.example.com",
                "t1-registry-vpc.cn-shanghai.cr.aliyuncs.com",
                "t1-registry.cn-shanghai.cr.aliyuncs.com"
            ]
        );
    }
}
