//! `AcrCredentialPolicy` (short name `acp`): how the controller obtains Alibaba Cloud credentials
//! for the registries that reference it.
//!
//! The `///` comments on these types are user-facing: they become the CRD's field descriptions
//! and `kubectl explain` output. Notes for maintainers live in `//` comments.

// kube-derive's printcolumn(...) repeats `type_ = "string"`; clippy mistakes that for a
// duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::core::Rule;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::patterns::{self, msg};
use super::selector;

/// Lifetime of a registry token when no assume-role hop sets one (ACR issues 1h tokens).
/// Kept here because the CEL rule on `renewBefore` and the code rule both use it.
pub const DEFAULT_TOKEN_LIFETIME: &str = "1h";

/// How the controller obtains Alibaba Cloud credentials for the registry bindings that reference
/// this policy: one credential source, optionally followed by an STS AssumeRole hop into another
/// account. Bindings name a policy in `spec.policyRef`; a binding without one uses the policy
/// named `default`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "acrcredentials.io",
    version = "v1alpha1",
    kind = "AcrCredentialPolicy",
    plural = "acrcredentialpolicies",
    singular = "acrcredentialpolicy",
    shortname = "acp",
    category = "acr",
    status = "AcrCredentialPolicyStatus",
    derive = "PartialEq",
    doc = "AcrCredentialPolicy says how the controller obtains Alibaba Cloud credentials for the registry bindings that use it.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether credentials can currently be obtained with this policy"
    ),
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".status.source",
        description = "The credential source: managedRole, workerRole, rrsa or accessKey"
    ),
    printcolumn(
        name = "Assume-Role",
        type_ = "string",
        json_path = ".spec.assumeRole.roleArn",
        description = "The RAM role assumed on top of the source, if any"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = renew_before_below_lifetime())]
#[serde(rename_all = "camelCase")]
pub struct AcrCredentialPolicySpec {
    /// Where the controller's own Alibaba Cloud credentials come from. Set exactly one of
    /// managedRole, workerRole, rrsa or accessKey.
    pub source: CredentialSource,

    /// Optional STS AssumeRole hop on top of the source, to pull from a registry owned by another
    /// Alibaba Cloud account. The source's identity must be allowed to assume this role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume_role: Option<AssumeRole>,

    /// How long before a registry token expires the controller renews it, as a duration such as
    /// `15m` or `1h30m`. Must be longer than 0s and shorter than the credential lifetime (1h, or
    /// assumeRole.duration). When unset the controller uses 15m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = renew_before_positive())]
    #[schemars(regex(pattern = patterns::DURATION), length(min = patterns::DURATION_MIN, max = patterns::DURATION_MAX))]
    pub renew_before: Option<String>,

    /// Optional label selector on namespaces: bindings that use this policy may only write
    /// credentials into namespaces that match it. When unset, any namespace is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "selector::schema")]
    pub allowed_namespaces: Option<LabelSelector>,
}

// The duration rules below call CEL's `duration()` only on a value the schema's pattern admits
// (`patterns::cel_is_duration`): the API server evaluates them even when the pattern already
// refused the value, and a malformed duration must get the pattern's message alone.

/// `renewBefore` is shorter than the credential lifetime. Not evaluated when either duration is
/// malformed: the schema reports that field.
fn renew_before_below_lifetime() -> Rule {
    let renew = patterns::cel_is_duration("self.renewBefore");
    let hop = patterns::cel_is_duration("self.assumeRole.duration");
    Rule::new(format!(
        "!has(self.renewBefore) || !{renew} || (has(self.assumeRole) && has(self.assumeRole.duration) && !{hop}) || duration(self.renewBefore) < (has(self.assumeRole) && has(self.assumeRole.duration) ? duration(self.assumeRole.duration) : duration('{DEFAULT_TOKEN_LIFETIME}'))"
    ))
    .message(msg::RENEW_BEFORE_BELOW_LIFETIME)
    .field_path(".renewBefore")
}

/// `renewBefore` is longer than 0s.
fn renew_before_positive() -> Rule {
    let ok = patterns::cel_is_duration("self");
    Rule::new(format!("!{ok} || duration(self) > duration('0s')"))
        .message(msg::RENEW_BEFORE_POSITIVE)
}

/// `assumeRole.duration` is between 1h and 12h.
fn assume_role_duration_range() -> Rule {
    let ok = patterns::cel_is_duration("self");
    Rule::new(format!(
        "!{ok} || (duration(self) >= duration('1h') && duration(self) <= duration('12h'))"
    ))
    .message(msg::ASSUME_ROLE_DURATION_RANGE)
}

/// Where the controller's own Alibaba Cloud credentials come from. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new(
    "(has(self.managedRole) ? 1 : 0) + (has(self.workerRole) ? 1 : 0) + (has(self.rrsa) ? 1 : 0) + (has(self.accessKey) ? 1 : 0) == 1"
).message(msg::SOURCE_EXACTLY_ONE))]
#[serde(rename_all = "camelCase")]
pub struct CredentialSource {
    /// Use the token that ACK provisions for its managed add-on role (AliyunCSManagedAcrRole),
    /// read from a file mounted into the controller. Write `managedRole: {}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_role: Option<ManagedRoleSource>,

    /// Use the RAM role of the ECS instance the controller runs on (the cluster's worker role),
    /// read from the ECS metadata service. Write `workerRole: {}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_role: Option<WorkerRoleSource>,

    /// Use RAM Roles for Service Accounts (RRSA): exchange the controller's projected
    /// ServiceAccount token for credentials of a RAM role through the cluster's OIDC provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrsa: Option<RrsaSource>,

    /// Use a RAM user's AccessKey pair stored in a Secret. Prefer the other sources: an
    /// AccessKey never expires on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<AccessKeySource>,
}

/// Marker for the ACK managed add-on role; it has no settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ManagedRoleSource {}

/// Marker for the ECS instance RAM role; it has no settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct WorkerRoleSource {}

/// RAM Roles for Service Accounts settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RrsaSource {
    /// ARN of the RAM role to obtain, for example `acs:ram::1234567890123456:role/acr-puller`.
    /// Its trust policy must allow the controller's ServiceAccount through the OIDC provider.
    #[schemars(regex(pattern = patterns::ROLE_ARN), length(max = patterns::ARN_MAX))]
    pub role_arn: String,

    /// ARN of the cluster's RRSA OIDC provider, for example
    /// `acs:ram::1234567890123456:oidc-provider/ack-rrsa-c0123456789abcdef`.
    #[schemars(regex(pattern = patterns::OIDC_PROVIDER_ARN), length(max = patterns::ARN_MAX))]
    pub oidc_provider_arn: String,

    /// Absolute path of the projected ServiceAccount token inside the controller container.
    /// When unset the controller uses the path ACK's RRSA webhook mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = patterns::ABSOLUTE_PATH), length(max = patterns::PATH_MAX))]
    pub token_file: Option<String>,
}

/// A RAM user's AccessKey pair kept in a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeySource {
    /// The Secret that holds the AccessKey pair.
    pub secret_ref: AccessKeySecretRef,
}

/// Where in a Secret the AccessKey pair is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new(
    "(has(self.accessKeyIdKey) ? self.accessKeyIdKey : 'AccessKeyId') != (has(self.accessKeySecretKey) ? self.accessKeySecretKey : 'AccessKeySecret')"
).message(msg::ACCESS_KEY_KEYS_DIFFER))]
#[serde(rename_all = "camelCase")]
pub struct AccessKeySecretRef {
    /// Namespace of the Secret (the policy itself is cluster-scoped).
    #[schemars(regex(pattern = patterns::DNS_LABEL), length(max = patterns::DNS_LABEL_MAX))]
    pub namespace: String,

    /// Name of the Secret.
    #[schemars(regex(pattern = patterns::DNS_SUBDOMAIN), length(max = patterns::DNS_SUBDOMAIN_MAX))]
    pub name: String,

    /// Key of the AccessKey ID in the Secret's data. When unset: `AccessKeyId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = patterns::SECRET_KEY), length(max = patterns::DNS_SUBDOMAIN_MAX))]
    pub access_key_id_key: Option<String>,

    /// Key of the AccessKey secret in the Secret's data. When unset: `AccessKeySecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = patterns::SECRET_KEY), length(max = patterns::DNS_SUBDOMAIN_MAX))]
    pub access_key_secret_key: Option<String>,
}

/// An STS AssumeRole hop into (usually) another Alibaba Cloud account.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AssumeRole {
    /// ARN of the RAM role to assume, for example `acs:ram::1234567890123456:role/acr-puller`.
    #[schemars(regex(pattern = patterns::ROLE_ARN), length(max = patterns::ARN_MAX))]
    pub role_arn: String,

    /// STS RoleSessionName: 2 to 64 letters, digits or `.`, `_`, `@`, `-`. It appears in the
    /// registry owner's ActionTrail. When unset the controller uses `acr-credential-controller`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = patterns::SESSION_NAME), length(max = 64))]
    pub session_name: Option<String>,

    /// STS ExternalId, when the role's trust policy requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = patterns::EXTERNAL_ID), length(min = patterns::EXTERNAL_ID_MIN, max = patterns::EXTERNAL_ID_MAX))]
    pub external_id: Option<String>,

    /// How long the assumed credentials, and the registry tokens obtained with them, stay valid:
    /// from 1h to 12h, for example `6h`. It must not exceed the role's maximum session duration.
    /// When unset: 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = assume_role_duration_range())]
    #[schemars(regex(pattern = patterns::DURATION), length(min = patterns::DURATION_MIN, max = patterns::DURATION_MAX))]
    pub duration: Option<String>,
}

/// Observed state of an AcrCredentialPolicy, written by the controller.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AcrCredentialPolicyStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current conditions. `Ready` is True when credentials were last obtained successfully.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The kind of credential source in use (managedRole, workerRole, rrsa or accessKey).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,

    /// When the credentials the controller currently holds expire (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_expire_at: Option<Time>,
}
