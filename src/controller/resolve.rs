//! From a binding (and its policy) to what the controller needs to act on it: the token
//! request, the domains, the namespace selection. Pure over the watch caches; every problem
//! becomes a [`Blocker`] with a reason and a message the user can act on.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::selection::{NamespaceVerdict, namespace_verdict};
use super::status::Blocker;
use super::tokens::TokenRequest;
use crate::api::conditions::reasons;
use crate::api::{
    AcrCredentialPolicy, AcrCredentialPolicySpec, AcrRegistryBinding, NamespaceSelection,
    ServiceAccountSelection, validate_binding, validate_policy,
};
use crate::cloud::credentials::access_key::SecretRef;
use crate::cloud::credentials::{
    AssumeRoleConfig, DEFAULT_MANAGED_TOKEN_FILE, DEFAULT_RRSA_TOKEN_FILE, DEFAULT_SESSION_NAME,
    ProviderConfig, SourceConfig,
};
use crate::cloud::registry::{Registry, ensure_token_api};

/// A binding ready to be acted on.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub name: String,
    pub uid: String,
    pub request: TokenRequest,
    /// Domains from the spec; `None` means discovered with the token.
    pub domains: Option<Vec<String>>,
    pub namespaces: NamespaceSelection,
    pub allowed: Option<LabelSelector>,
    pub service_accounts: ServiceAccountSelection,
    pub renew_before: Duration,
    /// Domains the binding's status reported (discovered ones survive a restart this way).
    pub previous_domains: Vec<String>,
    /// When the token in the binding's status was issued.
    pub previous_issued_at: Option<jiff::Timestamp>,
}

impl Resolved {
    /// Whether this binding writes into namespace `name` with `labels`.
    pub fn selects(&self, name: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
        namespace_verdict(&self.namespaces, self.allowed.as_ref(), name, labels)
            == NamespaceVerdict::Selected
    }
}

fn joined(errors: &[crate::api::FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The credential chain a policy describes.
pub fn provider_config(spec: &AcrCredentialPolicySpec) -> Option<ProviderConfig> {
    let s = &spec.source;
    let source = if s.managed_role.is_some() {
        SourceConfig::ManagedRole {
            token_file: PathBuf::from(DEFAULT_MANAGED_TOKEN_FILE),
        }
    } else if s.worker_role.is_some() {
        SourceConfig::WorkerRole { role_name: None }
    } else if let Some(r) = &s.rrsa {
        SourceConfig::Rrsa {
            role_arn: r.role_arn.clone(),
            oidc_provider_arn: r.oidc_provider_arn.clone(),
            token_file: PathBuf::from(r.token_file.as_deref().unwrap_or(DEFAULT_RRSA_TOKEN_FILE)),
            session_name: DEFAULT_SESSION_NAME.to_owned(),
        }
    } else if let Some(ak) = &s.access_key {
        let r = &ak.secret_ref;
        SourceConfig::AccessKey(SecretRef {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            access_key_id_key: r.id_key().to_owned(),
            access_key_secret_key: r.secret_key().to_owned(),
        })
    } else {
        return None;
    };
    let assume_role = spec.assume_role.as_ref().map(|a| AssumeRoleConfig {
        role_arn: a.role_arn.clone(),
        session_name: a.session_name().to_owned(),
        external_id: a.external_id.clone(),
        duration: a.duration(),
    });
    Some(ProviderConfig {
        source,
        assume_role,
    })
}

/// Resolves a binding against the policy cache.
pub fn resolve(
    binding: &AcrRegistryBinding,
    policies: &Store<AcrCredentialPolicy>,
    default_region: &str,
) -> Result<Resolved, Blocker> {
    let spec = &binding.spec;
    validate_binding(spec).map_err(|errors| Blocker {
        reason: reasons::INVALID_SPEC,
        message: format!("invalid spec: {}", joined(&errors)),
    })?;
    let policy_name = spec.policy_name();
    let policy = policies
        .get(&ObjectRef::new(policy_name))
        .ok_or_else(|| Blocker {
            reason: reasons::POLICY_NOT_FOUND,
            message: format!("AcrCredentialPolicy {policy_name} does not exist"),
        })?;
    validate_policy(&policy.spec).map_err(|errors| Blocker {
        reason: reasons::POLICY_NOT_READY,
        message: format!(
            "AcrCredentialPolicy {policy_name} is invalid: {}",
            joined(&errors)
        ),
    })?;
    let provider = provider_config(&policy.spec).ok_or_else(|| Blocker {
        reason: reasons::POLICY_NOT_READY,
        message: format!("AcrCredentialPolicy {policy_name} names no credential source"),
    })?;
    let region = spec
        .registry
        .region
        .clone()
        .unwrap_or_else(|| default_region.to_owned());
    let registry = match &spec.registry.instance_id {
        Some(id) => Registry::Enterprise {
            region,
            instance_id: id.clone(),
        },
        None => Registry::Personal { region },
    };
    if let Some(domains) = &spec.registry.domains {
        for d in domains {
            ensure_token_api(d).map_err(|e| Blocker {
                reason: e.reason(),
                message: e.to_string(),
            })?;
        }
    }
    let renew_before = policy.spec.renew_before();
    Ok(Resolved {
        name: binding.name_any(),
        uid: binding.uid().unwrap_or_default(),
        request: TokenRequest {
            registry,
            provider,
            discover_domains: spec.registry.domains.is_none(),
            renew_before,
        },
        domains: spec.registry.domains.clone(),
        namespaces: spec.namespaces.clone(),
        allowed: policy.spec.allowed_namespaces.clone(),
        service_accounts: spec.effective_service_accounts(),
        renew_before,
        previous_domains: binding
            .status
            .as_ref()
            .map(|s| s.domains.clone())
            .unwrap_or_default(),
        previous_issued_at: binding
            .status
            .as_ref()
            .and_then(|s| s.token.as_ref())
            .and_then(|t| t.issued_at.as_ref())
            .map(|t| t.0),
    })
}
