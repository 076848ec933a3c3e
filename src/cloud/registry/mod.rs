//! Container Registry tokens and domains.
//!
//! [`enterprise`] speaks CR 2018-12-01 (`GetAuthorizationToken`, `ListInstanceEndpoint`),
//! [`personal`] speaks CR 2016-06-07 (`GET /tokens`). This module holds what both share: the
//! [`RegistryToken`] (expiry always taken from the answer's milliseconds), the registry
//! reference, domain classification (including new-style `crpi-` Personal instances, which
//! have no token API and are reported as [`CloudError::Unsupported`]), and the high-level
//! [`fetch_token`] / [`discover_domains`] that the controller calls with a credential provider.

pub mod enterprise;
pub mod personal;

use super::client::CloudClient;
use super::credentials::CredentialProvider;
use super::error::CloudError;
use super::keypair::Credentials;
use crate::sensitive::Sensitive;

/// A temporary registry login.
#[derive(Clone)]
pub struct RegistryToken {
    /// Docker user name (`cr_temp_user`).
    pub username: String,
    /// Docker password.
    pub password: Sensitive<String>,
    /// When the cloud says the token stops working.
    pub expires_at: jiff::Timestamp,
    pub request_id: Option<String>,
}

impl std::fmt::Debug for RegistryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryToken")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("expires_at", &self.expires_at)
            .field("request_id", &self.request_id)
            .finish()
    }
}

/// Which registry a token is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Registry {
    /// An Enterprise Edition instance (`cri-…`).
    Enterprise { region: String, instance_id: String },
    /// The region's legacy Personal Edition registry.
    Personal { region: String },
}

impl Registry {
    pub fn region(&self) -> &str {
        match self {
            Self::Enterprise { region, .. } | Self::Personal { region } => region,
        }
    }

    /// `cri-…` or `personal:<region>`, for logs and cache keys.
    pub fn key(&self) -> String {
        match self {
            Self::Enterprise { instance_id, .. } => instance_id.clone(),
            Self::Personal { region } => format!("personal:{region}"),
        }
    }
}

/// What a registry domain name says about its registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainKind {
    /// `<name>-registry[-vpc].<region>.cr.aliyuncs.com`.
    Enterprise {
        instance_name: String,
        region: String,
    },
    /// `registry[-intl][-vpc][-internal].<region>.aliyuncs.com` (created on or before 2024-09-08).
    PersonalLegacy { region: String },
    /// `crpi-<id>[-vpc].<region>.personal.cr.aliyuncs.com` (created from 2024-09-09): no token API.
    PersonalInstance { instance: String, region: String },
    /// A custom domain or anything else.
    Other,
}

/// Classifies a registry domain.
pub fn classify_domain(domain: &str) -> DomainKind {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = d.split('.').collect();
    match labels.as_slice() {
        [first, region, "personal", "cr", "aliyuncs", "com"] if first.starts_with("crpi-") => {
            DomainKind::PersonalInstance {
                instance: first.trim_end_matches("-vpc").to_string(),
                region: region.to_string(),
            }
        }
        [first, region, "cr", "aliyuncs", "com"] => match first.split_once("-registry") {
            Some((name, rest)) if !name.is_empty() && (rest.is_empty() || rest == "-vpc") => {
                DomainKind::Enterprise {
                    instance_name: name.to_string(),
                    region: region.to_string(),
                }
            }
            _ => DomainKind::Other,
        },
        [first, region, "aliyuncs", "com"]
            if matches!(
                *first,
                "registry"
                    | "registry-vpc"
                    | "registry-intl"
                    | "registry-intl-vpc"
                    | "registry-internal"
                    | "registry-intl-internal"
            ) =>
        {
            DomainKind::PersonalLegacy {
                region: region.to_string(),
            }
        }
        _ => DomainKind::Other,
    }
}

/// Fails plainly when a domain belongs to a new-style Personal instance.
pub fn ensure_token_api(domain: &str) -> Result<(), CloudError> {
    match classify_domain(domain) {
        DomainKind::PersonalInstance { instance, region } => Err(CloudError::Unsupported {
            message: format!(
                "{domain} is a Personal Edition instance ({instance} in {region}) created on or after 2024-09-09; \
                 Alibaba Cloud offers no temporary-token API for it. Use an imagePullSecret with the instance's login password, \
                 or move the images to an Enterprise Edition instance"
            ),
        }),
        _ => Ok(()),
    }
}

/// The legacy Personal Edition domains of a region (public and VPC).
pub fn personal_domains(region: &str) -> Vec<String> {
    vec![
        format!("registry.{region}.aliyuncs.com"),
        format!("registry-vpc.{region}.aliyuncs.com"),
    ]
}

/// Converts the cloud's millisecond epoch into a timestamp.
pub fn expiry_from_millis(
    api: &'static str,
    value: Option<&serde_json::Value>,
) -> Result<jiff::Timestamp, CloudError> {
    let bad = |m: &str| CloudError::BadResponse {
        api,
        message: m.to_string(),
    };
    let v = value.ok_or_else(|| bad("no expiry in the answer"))?;
    let ms = v
        .as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| bad("expiry is not a millisecond number"))?;
    jiff::Timestamp::from_millisecond(ms).map_err(|_| bad("expiry is out of range"))
}

async fn token_with(
    client: &CloudClient,
    creds: &Credentials,
    registry: &Registry,
) -> Result<RegistryToken, CloudError> {
    match registry {
        Registry::Enterprise {
            region,
            instance_id,
        } => client.enterprise_token(creds, region, instance_id).await,
        Registry::Personal { region } => client.personal_token(creds, region).await,
    }
}

/// Gets a registry token with the provider's credentials. When the cloud says the (cached)
/// temporary credentials have expired, they are dropped and the call is made once more.
pub async fn fetch_token(
    client: &CloudClient,
    provider: &CredentialProvider,
    registry: &Registry,
) -> Result<RegistryToken, CloudError> {
    let creds = provider.credentials().await?;
    match token_with(client, &creds, registry).await {
        Err(e) if e.is_expired_credentials() => {
            provider.invalidate().await;
            let fresh = provider.credentials().await?;
            token_with(client, &fresh, registry).await
        }
        other => other,
    }
}

/// The domains of an Enterprise instance: every domain of every enabled endpoint.
pub async fn discover_domains(
    client: &CloudClient,
    provider: &CredentialProvider,
    region: &str,
    instance_id: &str,
) -> Result<Vec<String>, CloudError> {
    let creds = provider.credentials().await?;
    let endpoints = client
        .list_instance_endpoints(&creds, region, instance_id)
        .await?;
    Ok(enterprise::enabled_domains(&endpoints))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_classification() {
        assert_eq!(
            classify_domain("test-instance-registry-vpc.cn-hangzhou.cr.aliyuncs.com"),
            DomainKind::Enterprise {
                instance_name: "test-instance".into(),
                region: "cn-hangzhou".into()
            }
        );
        assert_eq!(
            classify_domain("t1-registry.cn-shanghai.cr.aliyuncs.com"),
            DomainKind::Enterprise {
                instance_name: "t1".into(),
                region: "cn-shanghai".into()
            }
        );
        assert_eq!(
            classify_domain("registry-vpc.cn-beijing.aliyuncs.com"),
            DomainKind::PersonalLegacy {
                region: "cn-beijing".into()
            }
        );
        assert_eq!(
            classify_domain("registry-intl.ap-southeast-1.aliyuncs.com"),
            DomainKind::PersonalLegacy {
                region: "ap-southeast-1".into()
            }
        );
        assert_eq!(
            classify_domain("crpi-abc123-vpc.cn-hangzhou.personal.cr.aliyuncs.com"),
            DomainKind::PersonalInstance {
                instance: "crpi-abc123".into(),
                region: "cn-hangzhou".into()
            }
        );
        assert_eq!(classify_domain("images.example.com"), DomainKind::Other);
        assert_eq!(classify_domain("registry.evil.com"), DomainKind::Other);
    }

    #[test]
    fn crpi_is_unsupported_with_a_plain_message() {
        let e = ensure_token_api("crpi-abc123.cn-hangzhou.personal.cr.aliyuncs.com").unwrap_err();
        assert_eq!(e.reason(), "Unsupported");
        assert!(e.to_string().contains("imagePullSecret"));
        assert!(ensure_token_api("registry.cn-hangzhou.aliyuncs.com").is_ok());
    }

    #[test]
    fn expiry_is_read_from_milliseconds() {
        let v = serde_json::json!(1571242083000i64);
        assert_eq!(
            expiry_from_millis("x", Some(&v)).unwrap().to_string(),
            "2019-10-16T16:08:03Z"
        );
        let s = serde_json::json!("1526549792000");
        assert_eq!(
            expiry_from_millis("x", Some(&s)).unwrap().to_string(),
            "2018-05-17T09:36:32Z"
        );
        assert!(expiry_from_millis("x", None).is_err());
        assert!(expiry_from_millis("x", Some(&serde_json::json!("soon"))).is_err());
    }

    #[test]
    fn personal_domain_defaults() {
        assert_eq!(
            personal_domains("cn-hangzhou"),
            [
                "registry.cn-hangzhou.aliyuncs.com",
                "registry-vpc.cn-hangzhou.aliyuncs.com"
            ]
        );
    }
}
