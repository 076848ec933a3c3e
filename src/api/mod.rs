//! The typed API users write: the `AcrRegistryBinding` and `AcrCredentialPolicy` custom resources
//! (group `acrcredentials.io`, version `v1alpha1`, both cluster-scoped).
//!
//! - `binding`, `policy`: the CRD types (spec and status).
//! - `patterns`: string formats shared by the schema and the code validation.

pub mod binding;
pub mod patterns;
pub mod policy;

pub use binding::{
    AcrRegistryBinding, AcrRegistryBindingSpec, AcrRegistryBindingStatus, FailureRecord,
    NamespaceFailure, NamespaceSelection, NamespacesStatus, PolicyReference, RegistrySpec,
    ServiceAccountSelection, ServiceAccountsStatus, TokenStatus,
};
pub use policy::{
    AccessKeySecretRef, AccessKeySource, AcrCredentialPolicy, AcrCredentialPolicySpec,
    AcrCredentialPolicyStatus, AssumeRole, CredentialSource, ManagedRoleSource, RrsaSource,
    WorkerRoleSource,
};

/// The API group of both kinds.
pub const GROUP: &str = "acrcredentials.io";
/// The API version of both kinds.
pub const VERSION: &str = "v1alpha1";
