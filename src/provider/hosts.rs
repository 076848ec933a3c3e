//! Which registry a host belongs to (pure).
//!
//! The plugin answers only for Alibaba Cloud Container Registry hosts: the `<name>-registry[-vpc]
//! .<region>.cr.aliyuncs.com` domains of the configured Enterprise Edition instances, their
//! configured custom domains, and (unless disabled) the legacy Personal Edition registries
//! `registry[-intl][-vpc|-internal].<region>.aliyuncs.com`. Any other host gets "no
//! credentials from this plugin". An Enterprise host whose instance is not configured, and a
//! new-style `crpi-` Personal instance (which has no token API), are errors that say what to do.

use super::config::{Config, InstanceEntry};
use crate::cloud::registry::{DomainKind, Registry, classify_domain, ensure_token_api};

/// Why a host that looks like ACR cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

/// The registry `host` (`name[:port]`, lower case) maps to; `Ok(None)` when this plugin does
/// not answer for it.
pub fn resolve(host: &str, config: &Config) -> Result<Option<Registry>, HostError> {
    let name = host.split(':').next().unwrap_or(host).trim_end_matches('.');
    let enterprise = |entry: &InstanceEntry| Registry::Enterprise {
        region: entry.region.clone(),
        instance_id: entry.instance_id.clone(),
    };
    if let Some(entry) = config
        .registries
        .iter()
        .find(|r| r.domains.iter().any(|d| d == name))
    {
        return Ok(Some(enterprise(entry)));
    }
    match classify_domain(name) {
        DomainKind::Enterprise {
            instance_name,
            region,
        } => config
            .registries
            .iter()
            .find(|r| r.instance_name.as_deref() == Some(instance_name.as_str()) && r.region == region)
            .map(|r| Some(enterprise(r)))
            .ok_or_else(|| {
                HostError(format!(
                    "{name} belongs to Enterprise Edition instance {instance_name:?} in {region}, which is not configured: \
                     add it to registries (instanceId, instanceName: {instance_name}, region: {region})"
                ))
            }),
        DomainKind::PersonalLegacy { region } if config.personal_edition => {
            Ok(Some(Registry::Personal { region }))
        }
        DomainKind::PersonalInstance { .. } => Err(ensure_token_api(name)
            .err()
            .map_or_else(|| HostError(format!("{name} has no token API")), |e| HostError(e.to_string()))),
        DomainKind::PersonalLegacy { .. } | DomainKind::Other => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::config::parse;

    fn config(personal: bool) -> Config {
        parse(&format!(
            "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialProviderConfig\nregion: cn-hangzhou\nsource: {{workerRole: {{}}}}\n\
             personalEdition: {personal}\nregistries:\n\
             - {{instanceId: cri-a, instanceName: myreg, domains: [images.example.com]}}\n\
             - {{instanceId: cri-b, instanceName: myreg, region: cn-shanghai}}\n\
             - {{instanceId: cri-c, domains: [only.custom.example]}}\n"
        ))
        .unwrap()
    }

    fn ee(region: &str, id: &str) -> Option<Registry> {
        Some(Registry::Enterprise {
            region: region.into(),
            instance_id: id.into(),
        })
    }

    #[test]
    fn enterprise_hosts_map_to_their_instance_by_name_and_region() {
        let c = config(true);
        assert_eq!(
            resolve("myreg-registry.cn-hangzhou.cr.aliyuncs.com", &c),
            Ok(ee("cn-hangzhou", "cri-a"))
        );
        assert_eq!(
            resolve("myreg-registry-vpc.cn-hangzhou.cr.aliyuncs.com", &c),
            Ok(ee("cn-hangzhou", "cri-a"))
        );
        assert_eq!(
            resolve("myreg-registry.cn-shanghai.cr.aliyuncs.com:443", &c),
            Ok(ee("cn-shanghai", "cri-b"))
        );
        assert_eq!(
            resolve("images.example.com", &c),
            Ok(ee("cn-hangzhou", "cri-a"))
        );
        assert_eq!(
            resolve("only.custom.example", &c),
            Ok(ee("cn-hangzhou", "cri-c"))
        );
        let e = resolve("other-registry.cn-hangzhou.cr.aliyuncs.com", &c).unwrap_err();
        assert!(
            e.0.contains("\"other\"") && e.0.contains("registries"),
            "{e}"
        );
        // The name matches but the region does not.
        assert!(resolve("myreg-registry.cn-beijing.cr.aliyuncs.com", &c).is_err());
    }

    #[test]
    fn personal_edition_hosts() {
        let c = config(true);
        let personal = |r: &str| Some(Registry::Personal { region: r.into() });
        assert_eq!(
            resolve("registry.cn-beijing.aliyuncs.com", &c),
            Ok(personal("cn-beijing"))
        );
        assert_eq!(
            resolve("registry-vpc.cn-hangzhou.aliyuncs.com", &c),
            Ok(personal("cn-hangzhou"))
        );
        assert_eq!(
            resolve("registry-intl.ap-southeast-1.aliyuncs.com", &c),
            Ok(personal("ap-southeast-1"))
        );
        assert_eq!(
            resolve("registry.cn-beijing.aliyuncs.com", &config(false)),
            Ok(None)
        );
        let e = resolve("crpi-abc.cn-hangzhou.personal.cr.aliyuncs.com", &c).unwrap_err();
        assert!(e.0.contains("imagePullSecret"), "{e}");
    }

    #[test]
    fn other_hosts_are_not_ours() {
        let c = config(true);
        for host in [
            "docker.io",
            "registry.k8s.io",
            "registry.evil.com",
            "registry.cn-hangzhou.aliyuncs.com.evil.com",
            "images.example.com.evil.com",
            "oss-cn-hangzhou.aliyuncs.com",
            "localhost:5000",
        ] {
            assert_eq!(resolve(host, &c), Ok(None), "{host}");
        }
    }
}
