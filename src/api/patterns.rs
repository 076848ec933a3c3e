//! The string formats and list bounds of the API, written once and used twice: as
//! `pattern`/`maxLength`/`maxItems` in the generated OpenAPI schema (and in the CEL guard
//! [`cel_is_duration`]), and by the code validation in [`crate::api::validation`]; and the
//! messages ([`msg`]) that the CEL rules on the types and the code validation both give. A leaf:
//! it imports no other API module, so the types and the validation can both import it.
//!
//! Patterns stay inside the RE2 subset that both the Kubernetes API server (Go `regexp`) and the
//! `regex` crate understand: no look-around, no back-references, no repeat count above 1000.

/// A Kubernetes DNS-1123 label (namespace names).
pub const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Longest DNS-1123 label.
pub const DNS_LABEL_MAX: u32 = 63;

/// A Kubernetes DNS-1123 subdomain (names of most objects, registry host names).
pub const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Longest DNS-1123 subdomain.
pub const DNS_SUBDOMAIN_MAX: u32 = 253;

/// An ACR Enterprise Edition instance id, e.g. `cri-abc123xyz`.
pub const INSTANCE_ID: &str = r"^cri-[a-z0-9]+$";
/// Longest instance id we accept.
pub const INSTANCE_ID_MAX: u32 = 64;

/// An Alibaba Cloud region id, e.g. `cn-hangzhou`, `ap-southeast-1`, `cn-shanghai-finance-1`.
pub const REGION: &str = r"^[a-z]+(-[a-z0-9]+)+$";
/// Longest region id we accept.
pub const REGION_MAX: u32 = 64;

/// A RAM role ARN, e.g. `acs:ram::1234567890123456:role/acr-puller`.
pub const ROLE_ARN: &str = r"^acs:ram::[0-9]+:role/[A-Za-z0-9._-]{1,64}$";
/// An RRSA OIDC provider ARN, e.g. `acs:ram::1234567890123456:oidc-provider/ack-rrsa-c123`.
pub const OIDC_PROVIDER_ARN: &str = r"^acs:ram::[0-9]+:oidc-provider/[A-Za-z0-9._-]{1,128}$";
/// Longest ARN we accept.
pub const ARN_MAX: u32 = 256;

/// Durations: hours, minutes and seconds in this order, each optional, e.g. `1h`, `15m`, `1h30m`.
/// At least one part must be present (the schema adds `minLength: 2`).
pub const DURATION: &str = r"^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$";
/// Shortest duration string.
pub const DURATION_MIN: u32 = 2;
/// Longest duration string.
pub const DURATION_MAX: u32 = 32;

/// A CEL condition that holds when the string `expr` is a duration the schema admits (its
/// `pattern` and `minLength`). CEL rules put it before `duration(expr)`: the API server runs
/// them even on a value the pattern refused, and a bare `duration()` then fails to evaluate,
/// which would add a "type conversion error" to the pattern's message.
pub fn cel_is_duration(expr: &str) -> String {
    format!("(size({expr}) >= {DURATION_MIN} && {expr}.matches('{DURATION}'))")
}

/// An STS `RoleSessionName`.
pub const SESSION_NAME: &str = r"^[A-Za-z0-9._@-]{2,64}$";
/// An STS `ExternalId` (2 to 1224 characters: the length lives in `minLength`/`maxLength`,
/// because Go's regexp refuses repeat counts above 1000).
pub const EXTERNAL_ID: &str = r"^[A-Za-z0-9_+=,.@:/-]+$";
/// Shortest external id.
pub const EXTERNAL_ID_MIN: u32 = 2;
/// Longest external id.
pub const EXTERNAL_ID_MAX: u32 = 1224;

/// A key inside a Secret's `data`.
pub const SECRET_KEY: &str = r"^[-._a-zA-Z0-9]+$";

/// An absolute file path inside the controller's container.
pub const ABSOLUTE_PATH: &str = r"^/[^\x00]*$";
/// Longest file path.
pub const PATH_MAX: u32 = 1024;

/// Most entries a name list (namespaces, ServiceAccounts, exclusions) may hold.
pub const NAMES_MAX_ITEMS: u32 = 256;
/// Most domains one binding may list.
pub const DOMAINS_MAX_ITEMS: u32 = 32;
/// Most `matchExpressions` entries one label selector may hold.
pub const SELECTOR_EXPRESSIONS_MAX_ITEMS: u32 = 32;
/// Most `values` one `matchExpressions` entry may list.
pub const SELECTOR_VALUES_MAX_ITEMS: u32 = 256;

/// Messages shared by the CEL rules on the types and by [`crate::api::validation`], so both say
/// the same.
pub mod msg {
    /// CredentialSource: exactly one of.
    pub const SOURCE_EXACTLY_ONE: &str =
        "source must set exactly one of managedRole, workerRole, rrsa or accessKey";
    /// AccessKeySecretRef: the two keys differ.
    pub const ACCESS_KEY_KEYS_DIFFER: &str =
        "accessKeyIdKey and accessKeySecretKey must name different keys of the Secret";
    /// renewBefore > 0.
    pub const RENEW_BEFORE_POSITIVE: &str = "renewBefore must be longer than 0s, for example 15m";
    /// renewBefore < lifetime.
    pub const RENEW_BEFORE_BELOW_LIFETIME: &str = "renewBefore must be shorter than the credential lifetime: assumeRole.duration when it is set, otherwise 1h";
    /// assumeRole.duration range.
    pub const ASSUME_ROLE_DURATION_RANGE: &str = "assumeRole.duration must be between 1h and 12h";
    /// NamespaceSelection: exactly one of.
    pub const NAMESPACES_EXACTLY_ONE: &str =
        "namespaces must set exactly one of names, all or selector";
    /// NamespaceSelection: all is true.
    pub const NAMESPACES_ALL_TRUE: &str =
        "namespaces.all may only be true; leave it out and use names or selector instead";
    /// NamespaceSelection: exclude ∩ names = ∅.
    pub const NAMESPACES_EXCLUDE_OVERLAP: &str =
        "namespaces.exclude must not repeat a namespace listed in namespaces.names";
    /// ServiceAccountSelection: exactly one of.
    pub const SERVICE_ACCOUNTS_EXACTLY_ONE: &str =
        "serviceAccounts must set exactly one of names, all or selector";
    /// ServiceAccountSelection: all is true.
    pub const SERVICE_ACCOUNTS_ALL_TRUE: &str =
        "serviceAccounts.all may only be true; leave it out and use names or selector instead";
    /// Label selectors: `In` and `NotIn` need values.
    pub const SELECTOR_VALUES_REQUIRED: &str =
        "a matchExpressions entry with operator In or NotIn must list at least one value";
    /// Label selectors: `Exists` and `DoesNotExist` take none.
    pub const SELECTOR_VALUES_FORBIDDEN: &str =
        "a matchExpressions entry with operator Exists or DoesNotExist must not list values";
}
