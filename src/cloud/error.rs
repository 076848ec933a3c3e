//! The cloud layer's error type.
//!
//! Every failure of a cloud call or credential source is one [`CloudError`]. Errors answered by
//! the cloud keep its `Code`, `Message` and `RequestId` (never a secret: the fake and the real
//! service only echo the string they signed, which we never include). [`CloudError::reason`]
//! is a fixed `&'static str` for metric labels, condition reasons and Event reasons;
//! [`CloudError::is_retryable`] tells the transport which failures are worth another attempt.

use std::time::Duration;

/// What the cloud said about a failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudDetail {
    /// The API called, as `product:Action` (e.g. `sts:AssumeRole`).
    pub api: &'static str,
    /// HTTP status of the answer.
    pub status: u16,
    /// The cloud's error `Code` (e.g. `SignatureDoesNotMatch`).
    pub code: String,
    /// The cloud's `Message`, shortened to one line.
    pub message: String,
    /// The cloud's `RequestId`, for support tickets.
    pub request_id: Option<String>,
}

impl std::fmt::Display for CloudDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed: {} (HTTP {}): {}",
            self.api, self.code, self.status, self.message
        )?;
        if let Some(id) = &self.request_id {
            write!(f, " [RequestId {id}]")?;
        }
        Ok(())
    }
}

/// Any failure of the cloud layer.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The cloud asked us to slow down; `retry_after` comes from `x-acs-retry-after`.
    #[error("{detail}")]
    Throttled {
        detail: CloudDetail,
        retry_after: Option<Duration>,
    },
    /// Wrong signature, unknown or disabled AccessKey, expired or invalid security token, bad OIDC token.
    #[error("{detail}")]
    AuthenticationFailed { detail: CloudDetail },
    /// The identity is known but may not do this (RAM policy or role trust).
    #[error("{detail}")]
    PermissionDenied { detail: CloudDetail },
    /// The instance, role or other named resource does not exist.
    #[error("{detail}")]
    NotFound { detail: CloudDetail },
    /// The cloud rejected a parameter (or another 4xx without a closer match).
    #[error("{detail}")]
    InvalidParameter { detail: CloudDetail },
    /// The cloud failed (5xx).
    #[error("{detail}")]
    ServerError { detail: CloudDetail },
    /// The request never got an answer (connection refused, reset, DNS, TLS).
    #[error("{api}: network error talking to {host}: {message}")]
    Network {
        api: &'static str,
        host: String,
        message: String,
    },
    /// No answer within the request timeout.
    #[error("{api}: no answer from {host} within {timeout:?}")]
    Timeout {
        api: &'static str,
        host: String,
        timeout: Duration,
    },
    /// Something this product cannot do, said plainly (e.g. new-style `crpi-` Personal instances).
    #[error("{message}")]
    Unsupported { message: String },
    /// A 2xx answer we could not understand.
    #[error("{api}: unexpected answer: {message}")]
    BadResponse { api: &'static str, message: String },
    /// A local credential source failed (token file unreadable, Secret missing, ACK reported an error).
    #[error("{source_kind} credentials: {message}")]
    CredentialSource {
        source_kind: &'static str,
        message: String,
    },
    /// Endpoint or client configuration is unusable.
    #[error("configuration: {message}")]
    Config { message: String },
}

/// Cloud failure reasons: what [`CloudError::reason`] gives (CamelCase, stable). A failed token
/// request records one: it is a metric label and the reason of the Warning Event that reports
/// the failure.
pub mod reasons {
    /// The cloud throttled the request.
    pub const THROTTLED: &str = "Throttled";
    /// The cloud refused the credentials (signature, key, token).
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    /// The credentials may not do this.
    pub const PERMISSION_DENIED: &str = "PermissionDenied";
    /// The instance, role or endpoint does not exist. The same reason as the condition's
    /// (`Stalled` compares a token failure's reason with it), so defined once, in `api`.
    pub use crate::api::conditions::reasons::NOT_FOUND;
    /// The cloud refused a parameter.
    pub const INVALID_PARAMETER: &str = "InvalidParameter";
    /// The cloud failed (5xx).
    pub const SERVER_ERROR: &str = "CloudServerError";
    /// The endpoint could not be reached.
    pub const NETWORK_ERROR: &str = "NetworkError";
    /// The request timed out.
    pub const TIMEOUT: &str = "Timeout";
    /// The cloud does not support what was asked.
    pub const UNSUPPORTED: &str = "Unsupported";
    /// The answer could not be read.
    pub const BAD_RESPONSE: &str = "BadResponse";
    /// The credential source (metadata service, token file, Secret) failed.
    pub const CREDENTIAL_SOURCE_FAILED: &str = "CredentialSourceFailed";
    /// Endpoint or client configuration is unusable.
    pub const INVALID_CONFIGURATION: &str = "InvalidConfiguration";

    /// Whether a failure with this reason says something about the credentials themselves
    /// (not the registry): the source failed, or the cloud refused or restricted them.
    pub fn about_credentials(reason: &str) -> bool {
        [
            CREDENTIAL_SOURCE_FAILED,
            AUTHENTICATION_FAILED,
            PERMISSION_DENIED,
        ]
        .contains(&reason)
    }
}

impl CloudError {
    /// A fixed, bounded reason for metrics, conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => reasons::THROTTLED,
            Self::AuthenticationFailed { .. } => reasons::AUTHENTICATION_FAILED,
            Self::PermissionDenied { .. } => reasons::PERMISSION_DENIED,
            Self::NotFound { .. } => reasons::NOT_FOUND,
            Self::InvalidParameter { .. } => reasons::INVALID_PARAMETER,
            Self::ServerError { .. } => reasons::SERVER_ERROR,
            Self::Network { .. } => reasons::NETWORK_ERROR,
            Self::Timeout { .. } => reasons::TIMEOUT,
            Self::Unsupported { .. } => reasons::UNSUPPORTED,
            Self::BadResponse { .. } => reasons::BAD_RESPONSE,
            Self::CredentialSource { .. } => reasons::CREDENTIAL_SOURCE_FAILED,
            Self::Config { .. } => reasons::INVALID_CONFIGURATION,
        }
    }

    /// Whether sending the same request again may succeed (throttling, 5xx, network, timeout).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. }
                | Self::ServerError { .. }
                | Self::Network { .. }
                | Self::Timeout { .. }
        )
    }

    /// The cloud's answer, when there was one.
    pub fn detail(&self) -> Option<&CloudDetail> {
        match self {
            Self::Throttled { detail, .. }
            | Self::AuthenticationFailed { detail }
            | Self::PermissionDenied { detail }
            | Self::NotFound { detail }
            | Self::InvalidParameter { detail }
            | Self::ServerError { detail } => Some(detail),
            _ => None,
        }
    }

    /// The cloud's error code, when there was one.
    pub fn code(&self) -> Option<&str> {
        self.detail().map(|d| d.code.as_str())
    }

    /// The cloud's RequestId, when there was one.
    pub fn request_id(&self) -> Option<&str> {
        self.detail().and_then(|d| d.request_id.as_deref())
    }

    /// Whether the failure says the temporary credentials used have expired or are no longer
    /// valid, so fresh credentials (not the same request again) may succeed.
    pub fn is_expired_credentials(&self) -> bool {
        matches!(self.code(), Some(code) if code.starts_with("InvalidSecurityToken") || code == "InvalidAccessKeyId.Expired")
    }

    /// A short, user-facing hint on what to check, for `doctor` and status messages.
    pub fn hint(&self) -> Option<&'static str> {
        let code = self.code().unwrap_or("");
        Some(match self {
            _ if code == "SignatureDoesNotMatch" => {
                "the AccessKeySecret does not belong to this AccessKeyId (check the Secret's keys for typos or trailing newlines)"
            }
            _ if code.starts_with("InvalidAccessKeyId") => {
                "the AccessKeyId is unknown or disabled in this account; create or enable it in the RAM console"
            }
            _ if code.starts_with("InvalidSecurityToken") => {
                "the STS token has expired or is invalid; fresh credentials are needed"
            }
            _ if code.starts_with("AuthenticationFail.OIDCToken")
                || code == "AuthenticationFail.NoPermission" =>
            {
                "the RRSA OIDC token was refused: check the OIDC provider ARN, the token audience (sts.aliyuncs.com) and the role's trust policy"
            }
            _ if code == "EntityNotExist.Role" => {
                "the role ARN does not exist; check the account id and role name"
            }
            _ if code == "NoPermission" => {
                "the role's trust policy does not allow this caller to assume it (check the principal, and ExternalId if set)"
            }
            _ if code.starts_with("InvalidParameter.DurationSeconds") => {
                "the requested session duration exceeds the role's MaxSessionDuration; lower assumeRole.duration or raise the role's limit"
            }
            _ if code.starts_with("InvalidTimeStamp") => {
                "the local clock is more than 15 minutes off; check NTP on the node"
            }
            Self::PermissionDenied { .. } => {
                "grant the RAM identity cr:GetAuthorizationToken and cr:ListInstanceEndpoint on the instance"
            }
            Self::NotFound { detail } if detail.api == "ecs:metadata" => {
                "the metadata service has no such RAM role: attach a RAM role to this ECS instance, or set the role name to the one attached (instance details in the ECS console)"
            }
            Self::NotFound { .. } => "check the instance id and region",
            Self::Throttled { .. } => {
                "the cloud throttled us; the controller backs off and retries"
            }
            Self::Network { .. } | Self::Timeout { .. } => {
                "the endpoint is unreachable; check network policy, DNS and the VPC/public endpoint setting"
            }
            _ => return None,
        })
    }
}

/// Which family an error code and status belong to, before it becomes a [`CloudError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Throttled,
    AuthenticationFailed,
    PermissionDenied,
    NotFound,
    InvalidParameter,
    ServerError,
}

/// Classifies an error answer by its code first (codes are more precise than statuses), then
/// by HTTP status. `retry_after_present` is true when `x-acs-retry-after` came back.
pub fn classify(status: u16, code: &str, retry_after_present: bool) -> ErrorClass {
    let auth_codes = [
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingSecurityToken",
        "SignatureNonceUsed",
        "InvalidAccessKeySecret",
    ];
    if retry_after_present || status == 429 || code.starts_with("Throttling") {
        ErrorClass::Throttled
    } else if auth_codes.contains(&code)
        || code.starts_with("InvalidAccessKeyId")
        || code.starts_with("InvalidSecurityToken")
        || code.starts_with("InvalidTimeStamp")
        || code.starts_with("AuthenticationFail.OIDCToken")
        || code == "AuthenticationFail.NoPermission"
        || status == 401
    {
        ErrorClass::AuthenticationFailed
    } else if code.starts_with("EntityNotExist")
        || code.contains("NotExist")
        || code.ends_with("NotFound")
        || status == 404
    {
        ErrorClass::NotFound
    } else if status >= 500 {
        ErrorClass::ServerError
    } else if code.starts_with("NoPermission")
        || code.starts_with("NoPrivilege")
        || code.starts_with("Forbidden")
        || code.starts_with("AccessDenied")
        || status == 403
    {
        ErrorClass::PermissionDenied
    } else {
        ErrorClass::InvalidParameter
    }
}

impl CloudError {
    /// Builds the error for an answered request.
    pub fn from_answer(detail: CloudDetail, retry_after: Option<Duration>) -> Self {
        match classify(detail.status, &detail.code, retry_after.is_some()) {
            ErrorClass::Throttled => Self::Throttled {
                detail,
                retry_after,
            },
            ErrorClass::AuthenticationFailed => Self::AuthenticationFailed { detail },
            ErrorClass::PermissionDenied => Self::PermissionDenied { detail },
            ErrorClass::NotFound => Self::NotFound { detail },
            ErrorClass::InvalidParameter => Self::InvalidParameter { detail },
            ErrorClass::ServerError => Self::ServerError { detail },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(status: u16, code: &str) -> CloudDetail {
        CloudDetail {
            api: "cr:GetAuthorizationToken",
            status,
            code: code.into(),
            message: "m".into(),
            request_id: Some("R1".into()),
        }
    }

    #[test]
    fn classification_by_code_and_status() {
        assert_eq!(
            classify(400, "Throttling.User", false),
            ErrorClass::Throttled
        );
        assert_eq!(classify(400, "Whatever", true), ErrorClass::Throttled);
        assert_eq!(
            classify(400, "SignatureDoesNotMatch", false),
            ErrorClass::AuthenticationFailed
        );
        assert_eq!(
            classify(404, "InvalidAccessKeyId.NotFound", false),
            ErrorClass::AuthenticationFailed
        );
        assert_eq!(
            classify(400, "InvalidSecurityToken.Expired", false),
            ErrorClass::AuthenticationFailed
        );
        assert_eq!(
            classify(403, "EntityNotExist.Role", false),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify(403, "NoPermission", false),
            ErrorClass::PermissionDenied
        );
        assert_eq!(
            classify(403, "NoPrivilege", false),
            ErrorClass::PermissionDenied
        );
        assert_eq!(
            classify(400, "InvalidParameter.DurationSeconds", false),
            ErrorClass::InvalidParameter
        );
        assert_eq!(
            classify(500, "InternalError", false),
            ErrorClass::ServerError
        );
        assert_eq!(
            classify(503, "ServiceUnavailable", false),
            ErrorClass::ServerError
        );
    }

    #[test]
    fn reasons_and_retryability() {
        let throttled =
            CloudError::from_answer(detail(400, "Throttling"), Some(Duration::from_millis(5)));
        assert_eq!(throttled.reason(), "Throttled");
        assert!(throttled.is_retryable());
        let sig = CloudError::from_answer(detail(400, "SignatureDoesNotMatch"), None);
        assert_eq!(sig.reason(), "AuthenticationFailed");
        assert!(!sig.is_retryable());
        assert!(sig.hint().is_some_and(|h| h.contains("AccessKeySecret")));
        assert_eq!(sig.code(), Some("SignatureDoesNotMatch"));
        assert_eq!(sig.request_id(), Some("R1"));
        assert!(CloudError::from_answer(detail(500, "InternalError"), None).is_retryable());
        assert!(
            CloudError::from_answer(detail(400, "InvalidSecurityToken.Expired"), None)
                .is_expired_credentials()
        );
    }

    #[test]
    fn a_metadata_404_is_about_the_ram_role() {
        let mut d = detail(404, "HTTP404");
        d.api = "ecs:metadata";
        let hint = CloudError::from_answer(d, None).hint().unwrap_or_default();
        assert!(hint.contains("RAM role"), "{hint}");
        let instance = CloudError::from_answer(detail(404, "INSTANCE_NOT_EXIST"), None);
        assert_eq!(instance.hint(), Some("check the instance id and region"));
    }

    #[test]
    fn display_keeps_code_message_and_request_id() {
        let e = CloudError::from_answer(detail(403, "NoPermission"), None);
        assert_eq!(
            e.to_string(),
            "cr:GetAuthorizationToken failed: NoPermission (HTTP 403): m [RequestId R1]"
        );
    }
}
