//! The typed API users write: the `AcrRegistryBinding` and `AcrCredentialPolicy` custom resources
//! (group `acrcredentials.io`, version `v1alpha1`, both cluster-scoped).
//!
//! - `binding`, `policy`: the CRD types (spec and status).
//! - `defaults`: the defaults the controller applies (never written into spec) and status helpers.
//! - `conditions`: condition types, reasons and `set_condition`.
//! - `validation`: the schema and CEL rules again, in code (`validate_binding`, `validate_policy`).
//! - `crd`: the generated CRDs, as objects or YAML, with or without CEL rules.
//! - `schema_check`: a client-side evaluator of the OpenAPI schema subset the CRDs use.
//! - `patterns`, `duration`: string formats shared by the schema and the code.
//! - `selector`: the schema of the label selectors, with Kubernetes' operator and values rules.
//! - `rotation`: the annotation that requests a rotation on demand.

pub mod binding;
pub mod conditions;
pub mod crd;
pub mod defaults;
pub mod duration;
pub mod patterns;
pub mod policy;
pub mod rotation;
pub mod schema_check;
pub mod selector;
pub mod validation;

pub use binding::{
    AcrRegistryBinding, AcrRegistryBindingSpec, AcrRegistryBindingStatus, FailureRecord,
    NamespaceFailure, NamespaceSelection, NamespacesStatus, PolicyReference, RegistrySpec,
    RotationStatus, ServiceAccountSelection, ServiceAccountsStatus, TokenStatus,
};
pub use policy::{
    AccessKeySecretRef, AccessKeySource, AcrCredentialPolicy, AcrCredentialPolicySpec,
    AcrCredentialPolicyStatus, AssumeRole, CredentialSource, ManagedRoleSource, RrsaSource,
    WorkerRoleSource,
};
pub use validation::{FieldError, validate_binding, validate_policy};

/// The API group of both kinds.
pub const GROUP: &str = "acrcredentials.io";
/// The API version of both kinds.
pub const VERSION: &str = "v1alpha1";
