//! `AcrRegistryBinding` (short name `arb`): which registry's credentials go into which namespaces
//! and ServiceAccounts.
//!
//! The `///` comments on these types are user-facing: they become the CRD's field descriptions
//! and `kubectl explain` output. Notes for maintainers live in `//` comments.

// kube-derive's printcolumn(...) repeats `type_ = "string"`; clippy mistakes that for a
// duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::patterns::{self, msg};
use super::selector;

/// Most entries `status.namespaces.failed` holds; the rest are only counted.
pub const MAX_FAILED_NAMESPACES: usize = 20;

/// Binds one Alibaba Cloud Container Registry to a set of namespaces and ServiceAccounts: the
/// controller keeps a pull Secret for the registry in every selected namespace, renews it
/// before it expires, and adds it to the imagePullSecrets of every selected ServiceAccount.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "acrcredentials.io",
    version = "v1alpha1",
    kind = "AcrRegistryBinding",
    plural = "acrregistrybindings",
    singular = "acrregistrybinding",
    shortname = "arb",
    category = "acr",
    status = "AcrRegistryBindingStatus",
    derive = "PartialEq",
    doc = "AcrRegistryBinding puts pull credentials for one Alibaba Cloud Container Registry into the selected namespaces and ServiceAccounts.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every selected namespace holds a valid pull Secret"
    ),
    printcolumn(
        name = "Registry",
        type_ = "string",
        json_path = ".status.registry",
        description = "The ACR instance id, or personal for a Personal Edition registry"
    ),
    printcolumn(
        name = "Namespaces",
        type_ = "string",
        json_path = ".status.namespaces.summary",
        description = "Namespaces holding the current Secret / namespaces selected"
    ),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.token.expiresAt",
        description = "When the current registry token expires"
    ),
    printcolumn(
        name = "Renews",
        type_ = "string",
        json_path = ".status.token.renewAt",
        description = "When the controller will renew the token"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
// EXPIRES and RENEWS are `string` columns on purpose: kubectl renders `date` columns as an age
// and prints `<invalid>` for times in the future.
#[serde(rename_all = "camelCase")]
pub struct AcrRegistryBindingSpec {
    /// The registry whose pull credentials are distributed.
    pub registry: RegistrySpec,

    /// The AcrCredentialPolicy that says how credentials are obtained. When unset the
    /// controller uses the policy named `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<PolicyReference>,

    /// The namespaces that receive the pull Secret. Set exactly one of names, all or selector;
    /// exclude removes namespaces from any of them.
    pub namespaces: NamespaceSelection,

    /// The ServiceAccounts, in every selected namespace, whose imagePullSecrets get the pull
    /// Secret. Set exactly one of names, all or selector. When unset: the ServiceAccount named
    /// `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountSelection>,

    /// Whether the controller's admission webhook adds the pull Secret to the ServiceAccounts
    /// this binding selects as they are created, so Pods created right after them pull too.
    /// The webhook skips kube-system, kube-node-lease, the controller's namespace and
    /// ServiceAccounts labelled acrcredentials.io/inject-on-create=false; when it is
    /// unreachable (failurePolicy Ignore) the reconciler adds the Secret moments after creation.
    /// When unset: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_on_create: Option<bool>,
}

/// Which registry: an Enterprise Edition instance, or the Personal Edition registry of a region.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySpec {
    /// The ACR Enterprise Edition instance id, for example `cri-abc123xyz`. Leave it out for a
    /// Personal Edition registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = patterns::INSTANCE_ID), length(max = patterns::INSTANCE_ID_MAX))]
    pub instance_id: Option<String>,

    /// The region of the registry, for example `cn-hangzhou`. When unset: the controller's own
    /// region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = patterns::REGION), length(max = patterns::REGION_MAX))]
    pub region: Option<String>,

    /// Registry host names the pull Secret covers, for example
    /// `myinstance-registry.cn-hangzhou.cr.aliyuncs.com`. When unset the controller discovers
    /// them: every endpoint of an Enterprise Edition instance, or
    /// `registry.<region>.aliyuncs.com` and `registry-vpc.<region>.aliyuncs.com` for Personal
    /// Edition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(min = 1, max = patterns::DOMAINS_MAX_ITEMS), inner(regex(pattern = patterns::DNS_SUBDOMAIN), length(max = patterns::DNS_SUBDOMAIN_MAX)))]
    pub domains: Option<Vec<String>>,
}

/// A reference to a cluster-scoped AcrCredentialPolicy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PolicyReference {
    /// Name of the AcrCredentialPolicy.
    #[schemars(regex(pattern = patterns::DNS_SUBDOMAIN), length(max = patterns::DNS_SUBDOMAIN_MAX))]
    pub name: String,
}

/// Which namespaces receive the pull Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("(has(self.names) ? 1 : 0) + (has(self.all) ? 1 : 0) + (has(self.selector) ? 1 : 0) == 1").message(msg::NAMESPACES_EXACTLY_ONE),
    validation = Rule::new("!has(self.all) || self.all").message(msg::NAMESPACES_ALL_TRUE),
    validation = Rule::new("!has(self.names) || !has(self.exclude) || !self.names.exists(n, n in self.exclude)").message(msg::NAMESPACES_EXCLUDE_OVERLAP)
)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelection {
    /// These namespaces, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(min = 1, max = patterns::NAMES_MAX_ITEMS), inner(regex(pattern = patterns::DNS_LABEL), length(max = patterns::DNS_LABEL_MAX)))]
    pub names: Option<Vec<String>>,

    /// Every namespace, including system namespaces such as kube-system unless they are
    /// excluded. Only `true` is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,

    /// Namespaces whose labels match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "selector::schema")]
    pub selector: Option<LabelSelector>,

    /// Namespaces never selected, whatever names, all or selector say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(min = 1, max = patterns::NAMES_MAX_ITEMS), inner(regex(pattern = patterns::DNS_LABEL), length(max = patterns::DNS_LABEL_MAX)))]
    pub exclude: Option<Vec<String>>,
}

/// Which ServiceAccounts, in each selected namespace, get the pull Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("(has(self.names) ? 1 : 0) + (has(self.all) ? 1 : 0) + (has(self.selector) ? 1 : 0) == 1").message(msg::SERVICE_ACCOUNTS_EXACTLY_ONE),
    validation = Rule::new("!has(self.all) || self.all").message(msg::SERVICE_ACCOUNTS_ALL_TRUE)
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSelection {
    /// These ServiceAccounts, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(min = 1, max = patterns::NAMES_MAX_ITEMS), inner(regex(pattern = patterns::DNS_SUBDOMAIN), length(max = patterns::DNS_SUBDOMAIN_MAX)))]
    pub names: Option<Vec<String>>,

    /// Every ServiceAccount in the selected namespaces. Only `true` is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,

    /// ServiceAccounts whose labels match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "selector::schema")]
    pub selector: Option<LabelSelector>,
}

/// Observed state of an AcrRegistryBinding, written by the controller.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AcrRegistryBindingStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current conditions: Ready, TokenIssued, SecretsSynced and ServiceAccountsBound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The registry in short form: the instance id, or `personal` (with its region) for a
    /// Personal Edition registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,

    /// The registry token currently distributed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenStatus>,

    /// The registry host names the pull Secret covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub domains: Vec<String>,

    /// How many selected namespaces hold the current pull Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<NamespacesStatus>,

    /// How many selected ServiceAccounts reference the pull Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountsStatus>,

    /// The most recent failure, kept after recovery so it can still be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<FailureRecord>,

    /// The rotation requests (annotation `acrcredentials.io/rotation-requested-at`) handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationStatus>,
}

/// The last rotation requests handled: a value of `acrcredentials.io/rotation-requested-at`
/// other than the one recorded here requests one rotation (a fresh registry token in every
/// pull Secret of the binding).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    /// The value of the binding's own annotation last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_request: Option<String>,

    /// The value of its policy's annotation last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_policy_request: Option<String>,

    /// When a token was last obtained on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotated_at: Option<Time>,
}

/// Times of the registry token currently distributed (RFC 3339).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TokenStatus {
    /// When the token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<Time>,

    /// When the token expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// When the controller plans to renew the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<Time>,

    /// SHA-256 (hex) of the registry credential this binding distributes, salted with the
    /// binding's UID; never the credential itself. After a restart the controller takes a
    /// token over from a pull Secret only when it matches this digest (only the controller
    /// writes status), and otherwise asks the cloud for a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Namespace counts of a binding.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NamespacesStatus {
    /// Namespaces the binding selects.
    #[schemars(range(min = 0))]
    pub selected: i32,

    /// Selected namespaces whose pull Secret holds the current token.
    #[schemars(range(min = 0))]
    pub synced: i32,

    /// `synced/selected`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,

    /// Namespaces that could not be synced, at most 20; the rest are only counted.
    // Always written, `[]` included: a server-side apply that leaves the list out removes the
    // items this manager owned, and Kubernetes 1.20 leaves `null` behind, which the schema
    // refuses (422), so no later status could be written once a namespace had failed.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 20))]
    pub failed: Vec<NamespaceFailure>,
}

/// Why one namespace could not be synced.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct NamespaceFailure {
    /// The namespace.
    pub name: String,
    /// A CamelCase reason, for example `SecretOwnedByOthers`.
    pub reason: String,
    /// What went wrong, for a human.
    pub message: String,
}

/// ServiceAccount counts of a binding.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountsStatus {
    /// ServiceAccounts the binding selects, over all selected namespaces.
    #[schemars(range(min = 0))]
    pub selected: i32,

    /// Selected ServiceAccounts whose imagePullSecrets reference the pull Secret.
    #[schemars(range(min = 0))]
    pub bound: i32,
}

/// A failure, as recorded in status.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FailureRecord {
    /// When it happened.
    pub time: Time,
    /// A CamelCase reason, for example `TokenRequestFailed`.
    pub reason: String,
    /// What went wrong, for a human.
    pub message: String,
}
