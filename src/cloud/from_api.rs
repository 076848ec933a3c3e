//! From the CRD types to the cloud layer's plain configuration.
//!
//! The controller and `doctor` both turn an `AcrCredentialPolicy` spec into a
//! [`ProviderConfig`] and a binding's registry into a [`Registry`]; doing it in one place keeps
//! the two in agreement. Defaults (session name, Secret keys, durations) come from the API's
//! own accessors, so they are the ones documented on the CRD.

use std::path::{Path, PathBuf};

use super::credentials::access_key::SecretRef;
use super::credentials::{AssumeRoleConfig, DEFAULT_RRSA_TOKEN_FILE, ProviderConfig, SourceConfig};
use super::error::CloudError;
use super::registry::Registry;
use crate::api::defaults::DEFAULT_SESSION_NAME;
use crate::api::{AcrCredentialPolicySpec, RegistrySpec};

/// The provider configuration a policy describes. `managed_token_file` is where the ACK add-on
/// token is mounted (a controller setting, not part of the policy).
pub fn provider_config(
    spec: &AcrCredentialPolicySpec,
    managed_token_file: &Path,
) -> Result<ProviderConfig, CloudError> {
    let s = &spec.source;
    let source = match (&s.managed_role, &s.worker_role, &s.rrsa, &s.access_key) {
        (Some(_), None, None, None) => SourceConfig::ManagedRole {
            token_file: managed_token_file.to_path_buf(),
        },
        (None, Some(_), None, None) => SourceConfig::WorkerRole { role_name: None },
        (None, None, Some(r), None) => SourceConfig::Rrsa {
            role_arn: r.role_arn.clone(),
            oidc_provider_arn: r.oidc_provider_arn.clone(),
            token_file: PathBuf::from(r.token_file.as_deref().unwrap_or(DEFAULT_RRSA_TOKEN_FILE)),
            session_name: DEFAULT_SESSION_NAME.to_string(),
        },
        (None, None, None, Some(a)) => SourceConfig::AccessKey(SecretRef {
            namespace: a.secret_ref.namespace.clone(),
            name: a.secret_ref.name.clone(),
            access_key_id_key: a.secret_ref.id_key().to_string(),
            access_key_secret_key: a.secret_ref.secret_key().to_string(),
        }),
        _ => {
            return Err(CloudError::Config {
                message:
                    "spec.source must set exactly one of managedRole, workerRole, rrsa or accessKey"
                        .into(),
            });
        }
    };
    let assume_role = spec.assume_role.as_ref().map(|h| AssumeRoleConfig {
        role_arn: h.role_arn.clone(),
        session_name: h.session_name().to_string(),
        external_id: h.external_id.clone(),
        duration: h.duration(),
    });
    Ok(ProviderConfig {
        source,
        assume_role,
    })
}

/// The registry a binding names; `default_region` is the controller's region.
pub fn registry(spec: &RegistrySpec, default_region: &str) -> Registry {
    let region = spec
        .region
        .clone()
        .unwrap_or_else(|| default_region.to_string());
    match &spec.instance_id {
        Some(id) => Registry::Enterprise {
            region,
            instance_id: id.clone(),
        },
        None => Registry::Personal { region },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> AcrCredentialPolicySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn every_source_and_the_hop() {
        let file = Path::new("/var/addon/token-config");
        let c = provider_config(&policy("source: {managedRole: {}}"), file).unwrap();
        assert_eq!(
            c.source,
            SourceConfig::ManagedRole {
                token_file: file.into()
            }
        );
        let c = provider_config(&policy("source: {workerRole: {}}"), file).unwrap();
        assert_eq!(c.source, SourceConfig::WorkerRole { role_name: None });
        let c = provider_config(
            &policy("source: {rrsa: {roleArn: 'acs:ram::1:role/r', oidcProviderArn: 'acs:ram::1:oidc-provider/p'}}"),
            file,
        )
        .unwrap();
        assert!(
            matches!(c.source, SourceConfig::Rrsa { ref token_file, .. } if token_file == Path::new(DEFAULT_RRSA_TOKEN_FILE))
        );
        let c = provider_config(
            &policy("source: {accessKey: {secretRef: {namespace: ops, name: ak}}}\nassumeRole: {roleArn: 'acs:ram::2:role/x', duration: 2h, externalId: e-1}"),
            file,
        )
        .unwrap();
        assert_eq!(
            c.source,
            SourceConfig::AccessKey(SecretRef {
                namespace: "ops".into(),
                name: "ak".into(),
                access_key_id_key: "AccessKeyId".into(),
                access_key_secret_key: "AccessKeySecret".into()
            })
        );
        let hop = c.assume_role.unwrap();
        assert_eq!(
            (
                hop.duration.as_secs(),
                hop.session_name.as_str(),
                hop.external_id.as_deref()
            ),
            (7200, "acr-credential-controller", Some("e-1"))
        );
        assert!(provider_config(&policy("source: {}"), file).is_err());
    }

    #[test]
    fn registries() {
        let ee: RegistrySpec =
            serde_yaml::from_str("{instanceId: cri-abc, region: cn-shanghai}").unwrap();
        assert_eq!(
            registry(&ee, "cn-hangzhou"),
            Registry::Enterprise {
                region: "cn-shanghai".into(),
                instance_id: "cri-abc".into()
            }
        );
        let personal: RegistrySpec = serde_yaml::from_str("{}").unwrap();
        assert_eq!(
            registry(&personal, "cn-hangzhou"),
            Registry::Personal {
                region: "cn-hangzhou".into()
            }
        );
    }
}
