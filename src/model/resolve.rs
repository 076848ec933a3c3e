//! From a binding (and its policy) to what the controller needs to act on it: the token
//! request, the domains, the namespace selection. Pure over the watch caches; every problem
//! becomes a [`Blocker`] with a reason and a message the user can act on.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::selection::{NamespaceVerdict, namespace_verdict};
use super::status::Blocker;
use super::token::TokenRequest;
use crate::api::conditions::reasons;
use crate::api::{
    AcrCredentialPolicy, AcrRegistryBinding, NamespaceSelection, ServiceAccountSelection,
    validate_binding, validate_policy,
};
use crate::cloud::from_api;
use crate::cloud::registry::ensure_token_api;

/// What resolving needs of the controller's settings (the part the reconcilers and the webhook
/// share).
#[derive(Clone, Debug, PartialEq)]
pub struct ResolveConfig {
    /// Region of registries whose binding names none.
    pub default_region: String,
    /// Where the ACK add-on token and the projected RRSA token are (managedRole and rrsa
    /// sources).
    pub token_files: crate::cloud::credentials::TokenFiles,
}

impl Default for ResolveConfig {
    fn default() -> Self {
        Self {
            default_region: crate::cloud::endpoints::DEFAULT_REGION.into(),
            token_files: Default::default(),
        }
    }
}

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
    /// Domains the binding's status reported (discovered ones survive a restart this way), when
    /// the status names the binding's registry.
    pub previous_domains: Vec<String>,
    /// The token the binding's status records (written only by the controller), when the
    /// status names the binding's registry.
    pub previous_token: Option<PreviousToken>,
    /// Whether the admission webhook adds the Secret to matching ServiceAccounts as they are
    /// created (`spec.injectOnCreate`).
    pub inject_on_create: bool,
    /// When the binding was created (`metadata.creationTimestamp`).
    pub created_at: Option<jiff::Timestamp>,
}

impl Resolved {
    /// Whether this binding writes into namespace `name` with `labels`.
    pub fn selects(&self, name: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
        namespace_verdict(&self.namespaces, self.allowed.as_ref(), name, labels)
            == NamespaceVerdict::Selected
    }
}

/// The token a binding's status records: what a restarted controller checks a token read back
/// from a pull Secret against before it takes it over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreviousToken {
    pub issued_at: Option<jiff::Timestamp>,
    pub expires_at: Option<jiff::Timestamp>,
    /// See [`super::adopt::token_digest`].
    pub digest: Option<String>,
}

impl PreviousToken {
    fn from_status(t: &crate::api::TokenStatus) -> Self {
        PreviousToken {
            issued_at: t.issued_at.as_ref().map(|t| t.0),
            expires_at: t.expires_at.as_ref().map(|t| t.0),
            digest: t.digest.clone(),
        }
    }
}

fn joined(errors: &[crate::api::FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Resolves a binding against the policy cache.
pub fn resolve(
    binding: &AcrRegistryBinding,
    policies: &Store<AcrCredentialPolicy>,
    config: &ResolveConfig,
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
    let provider =
        from_api::provider_config(&policy.spec, &config.token_files).map_err(|e| Blocker {
            reason: reasons::POLICY_NOT_READY,
            message: format!("AcrCredentialPolicy {policy_name}: {e}"),
        })?;
    let registry = from_api::registry(&spec.registry, &config.default_region);
    if let Some(domains) = &spec.registry.domains {
        for d in domains {
            ensure_token_api(d).map_err(|e| Blocker {
                reason: e.reason(),
                message: e.to_string(),
            })?;
        }
    }
    let renew_before = policy.spec.renew_before();
    // What the status says of the token and domains holds for the registry it names: after a
    // change of registry they belong to the old one, and nothing of them may be taken over.
    let display = spec.registry.display();
    let same_registry = binding
        .status
        .as_ref()
        .filter(|s| s.registry.as_deref() == Some(display.as_str()));
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
        previous_domains: same_registry.map(|s| s.domains.clone()).unwrap_or_default(),
        previous_token: same_registry
            .and_then(|s| s.token.as_ref())
            .map(PreviousToken::from_status),
        inject_on_create: spec.inject_on_create(),
        created_at: binding.metadata.creation_timestamp.as_ref().map(|t| t.0),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kube::runtime::{reflector, watcher::Event};

    #[test]
    fn the_recorded_token_and_domains_belong_to_the_registry_the_status_names() {
        let (policies, mut writer) = reflector::store::<AcrCredentialPolicy>();
        writer.apply_watcher_event(&Event::Apply(
            serde_yaml::from_str(
                "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialPolicy\nmetadata: {name: default}\nspec: {source: {workerRole: {}}}\n",
            )
            .unwrap(),
        ));
        let mut binding: AcrRegistryBinding = serde_yaml::from_str(
            r#"
apiVersion: acrcredentials.io/v1alpha1
kind: AcrRegistryBinding
metadata: {name: web, uid: u1}
spec: {registry: {instanceId: cri-new}, namespaces: {all: true}}
status:
  registry: cri-old
  domains: [old.example.com]
  token: {issuedAt: "2026-01-01T00:00:00Z", expiresAt: "2026-01-01T01:00:00Z", digest: abc}
"#,
        )
        .unwrap();
        let config = ResolveConfig::default();
        // The registry changed: nothing of the old one's token or domains is taken over.
        let r = resolve(&binding, &policies, &config).unwrap();
        assert_eq!(r.previous_token, None);
        assert!(r.previous_domains.is_empty());
        // The status names this registry: both are the binding's.
        binding.status.as_mut().unwrap().registry = Some("cri-new".into());
        let r = resolve(&binding, &policies, &config).unwrap();
        assert_eq!(r.previous_token.unwrap().digest.as_deref(), Some("abc"));
        assert_eq!(r.previous_domains, vec!["old.example.com".to_owned()]);
    }
}
