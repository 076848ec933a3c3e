//! The defaults the controller applies when a field is unset, in one place. They are never
//! written back into `spec` (GitOps tools would see drift); read them through these helpers.
//! Also the small pure helpers that build status fields shown by `kubectl get`.

use std::time::Duration;

use super::{
    binding::{
        AcrRegistryBindingSpec, MAX_FAILED_NAMESPACES, NamespaceFailure, NamespacesStatus,
        RegistrySpec, ServiceAccountSelection,
    },
    duration,
    policy::{AccessKeySecretRef, AcrCredentialPolicySpec, AssumeRole, CredentialSource},
};

/// Policy a binding uses when `spec.policyRef` is unset.
pub const DEFAULT_POLICY_NAME: &str = "default";
/// ServiceAccount a binding selects when `spec.serviceAccounts` is unset.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// `renewBefore` when unset (the legacy `expiring-threshold` default).
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(15 * 60);
/// Registry token lifetime without an assume-role hop, and `assumeRole.duration` when unset.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// STS RoleSessionName when `assumeRole.sessionName` is unset.
pub const DEFAULT_SESSION_NAME: &str = "acr-credential-controller";
/// Secret key of the AccessKey ID when `accessKeyIdKey` is unset.
pub const DEFAULT_ACCESS_KEY_ID_KEY: &str = "AccessKeyId";
/// Secret key of the AccessKey secret when `accessKeySecretKey` is unset.
pub const DEFAULT_ACCESS_KEY_SECRET_KEY: &str = "AccessKeySecret";
/// What `status.registry` says for a Personal Edition registry.
pub const PERSONAL_EDITION: &str = "personal";

impl AcrRegistryBindingSpec {
    /// Name of the AcrCredentialPolicy this binding uses.
    pub fn policy_name(&self) -> &str {
        self.policy_ref
            .as_ref()
            .map_or(DEFAULT_POLICY_NAME, |p| p.name.as_str())
    }

    /// The ServiceAccount selection in force (`names: [default]` when unset).
    pub fn effective_service_accounts(&self) -> ServiceAccountSelection {
        self.service_accounts
            .clone()
            .unwrap_or_else(|| ServiceAccountSelection {
                names: Some(vec![DEFAULT_SERVICE_ACCOUNT.to_owned()]),
                ..ServiceAccountSelection::default()
            })
    }

    /// Whether the admission webhook injects the Secret into new ServiceAccounts.
    pub fn inject_on_create(&self) -> bool {
        self.inject_on_create.unwrap_or(false)
    }
}

impl RegistrySpec {
    /// Whether this is a Personal Edition registry (no instance id).
    pub fn is_personal(&self) -> bool {
        self.instance_id.is_none()
    }

    /// The short form for `status.registry`: the instance id, or `personal` with the region
    /// when one is set (`personal (cn-hangzhou)`).
    pub fn display(&self) -> String {
        match (&self.instance_id, &self.region) {
            (Some(id), _) => id.clone(),
            (None, Some(region)) => format!("{PERSONAL_EDITION} ({region})"),
            (None, None) => PERSONAL_EDITION.to_owned(),
        }
    }
}

/// The kinds of credential source, as `status.source` and metric labels spell them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    /// `source.managedRole`
    ManagedRole,
    /// `source.workerRole`
    WorkerRole,
    /// `source.rrsa`
    Rrsa,
    /// `source.accessKey`
    AccessKey,
}

impl SourceKind {
    /// The field name, e.g. `managedRole`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::ManagedRole => "managedRole",
            SourceKind::WorkerRole => "workerRole",
            SourceKind::Rrsa => "rrsa",
            SourceKind::AccessKey => "accessKey",
        }
    }
}

impl CredentialSource {
    /// The one source that is set; `None` when zero or several are (an invalid spec).
    pub fn kind(&self) -> Option<SourceKind> {
        let set: Vec<SourceKind> = [
            self.managed_role.as_ref().map(|_| SourceKind::ManagedRole),
            self.worker_role.as_ref().map(|_| SourceKind::WorkerRole),
            self.rrsa.as_ref().map(|_| SourceKind::Rrsa),
            self.access_key.as_ref().map(|_| SourceKind::AccessKey),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

impl AcrCredentialPolicySpec {
    /// How long before expiry tokens are renewed. Call after [`super::validate_policy`]; an
    /// unparsable value yields the default.
    pub fn renew_before(&self) -> Duration {
        self.renew_before
            .as_deref()
            .and_then(duration::parse)
            .unwrap_or(DEFAULT_RENEW_BEFORE)
    }

    /// How long credentials and registry tokens obtained with this policy live.
    pub fn token_lifetime(&self) -> Duration {
        self.assume_role
            .as_ref()
            .map_or(DEFAULT_TOKEN_LIFETIME, AssumeRole::duration)
    }
}

impl AssumeRole {
    /// The session duration in force (1h when unset or unparsable).
    pub fn duration(&self) -> Duration {
        self.duration
            .as_deref()
            .and_then(duration::parse)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
    }

    /// The RoleSessionName in force.
    pub fn session_name(&self) -> &str {
        self.session_name.as_deref().unwrap_or(DEFAULT_SESSION_NAME)
    }
}

impl AccessKeySecretRef {
    /// The Secret key holding the AccessKey ID.
    pub fn id_key(&self) -> &str {
        self.access_key_id_key
            .as_deref()
            .unwrap_or(DEFAULT_ACCESS_KEY_ID_KEY)
    }

    /// The Secret key holding the AccessKey secret.
    pub fn secret_key(&self) -> &str {
        self.access_key_secret_key
            .as_deref()
            .unwrap_or(DEFAULT_ACCESS_KEY_SECRET_KEY)
    }
}

impl NamespacesStatus {
    /// Builds the namespace counts: `summary` is `synced/selected`, and `failed` keeps the first
    /// [`MAX_FAILED_NAMESPACES`] failures by namespace name (one per namespace).
    pub fn new(selected: usize, synced: usize, mut failed: Vec<NamespaceFailure>) -> Self {
        failed.sort_by(|a, b| a.name.cmp(&b.name));
        failed.dedup_by(|a, b| a.name == b.name);
        failed.truncate(MAX_FAILED_NAMESPACES);
        let selected = i32::try_from(selected).unwrap_or(i32::MAX);
        let synced = i32::try_from(synced).unwrap_or(i32::MAX);
        NamespacesStatus {
            selected,
            synced,
            summary: Some(format!("{synced}/{selected}")),
            failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        binding::{NamespaceSelection, PolicyReference},
        policy::{ManagedRoleSource, RrsaSource},
    };

    fn binding() -> AcrRegistryBindingSpec {
        AcrRegistryBindingSpec {
            registry: RegistrySpec::default(),
            policy_ref: None,
            namespaces: NamespaceSelection {
                all: Some(true),
                ..Default::default()
            },
            service_accounts: None,
            inject_on_create: None,
        }
    }

    #[test]
    fn binding_defaults() {
        let mut b = binding();
        assert_eq!(b.policy_name(), "default");
        assert_eq!(
            b.effective_service_accounts().names,
            Some(vec!["default".to_owned()])
        );
        assert!(!b.inject_on_create());
        b.policy_ref = Some(PolicyReference {
            name: "cross".into(),
        });
        assert_eq!(b.policy_name(), "cross");
    }

    #[test]
    fn registry_display() {
        let mut r = RegistrySpec::default();
        assert_eq!(r.display(), "personal");
        r.region = Some("cn-beijing".into());
        assert_eq!(r.display(), "personal (cn-beijing)");
        r.instance_id = Some("cri-abc".into());
        assert_eq!(r.display(), "cri-abc");
        assert!(!r.is_personal());
    }

    #[test]
    fn source_kind_needs_exactly_one() {
        let mut s = CredentialSource::default();
        assert_eq!(s.kind(), None);
        s.managed_role = Some(ManagedRoleSource {});
        assert_eq!(s.kind(), Some(SourceKind::ManagedRole));
        assert_eq!(SourceKind::ManagedRole.as_str(), "managedRole");
        s.rrsa = Some(RrsaSource::default());
        assert_eq!(s.kind(), None);
    }

    #[test]
    fn policy_durations() {
        let mut p = AcrCredentialPolicySpec {
            source: CredentialSource::default(),
            assume_role: None,
            renew_before: None,
            allowed_namespaces: None,
        };
        assert_eq!(p.renew_before(), Duration::from_secs(900));
        assert_eq!(p.token_lifetime(), Duration::from_secs(3600));
        p.renew_before = Some("30m".into());
        p.assume_role = Some(AssumeRole {
            role_arn: "acs:ram::1:role/r".into(),
            duration: Some("6h".into()),
            ..Default::default()
        });
        assert_eq!(p.renew_before(), Duration::from_secs(1800));
        assert_eq!(p.token_lifetime(), Duration::from_secs(6 * 3600));
        assert_eq!(
            p.assume_role.as_ref().map(AssumeRole::session_name),
            Some("acr-credential-controller")
        );
    }

    #[test]
    fn namespaces_status_caps_and_summarises() {
        let failed = (0..30)
            .rev()
            .map(|i| NamespaceFailure {
                name: format!("ns-{i:02}"),
                reason: "SecretOwnedByOthers".into(),
                message: "x".into(),
            })
            .collect();
        let s = NamespacesStatus::new(40, 10, failed);
        assert_eq!(s.summary.as_deref(), Some("10/40"));
        assert_eq!(s.failed.len(), MAX_FAILED_NAMESPACES);
        assert_eq!(s.failed[0].name, "ns-00");
    }
}
