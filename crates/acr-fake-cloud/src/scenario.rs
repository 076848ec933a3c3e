//! The fake cloud's world, loaded from YAML or JSON.
//!
//! ```yaml
//! region: cn-hangzhou                  # used when a request's host names no region
//! lifetimes:                           # all optional; shorten them to watch renewals in minutes
//!   stsSeconds: 120                    # cap on issued STS credentials (default: the requested duration)
//!   registrySeconds: 60                # registry token lifetime (default 3600; never beyond the STS expiry)
//!   metadataSeconds: 21600             # ECS metadata role credentials
//! accounts:
//!   - id: "1234567890123456"
//!     accessKeys:
//!       - {id: LTAIroot, secret: rootsecret}                       # no user: the account's root key
//!       - {id: LTAIci, secret: cisecret, user: ci, enabled: true}
//!     users:
//!       - {name: ci, permissions: ["sts:AssumeRole", "cr:GetAuthorizationToken"]}
//!     roles:
//!       - name: acr-puller
//!         maxSessionDuration: 3600
//!         permissions: ["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint:cri-abc"]
//!         trust:
//!           principals: ["acs:ram::1234567890123456:root"]        # or user/role ARNs, or a service
//!           externalId: optional-shared-value
//!           oidc: [{provider: ack-rrsa-c1, subjects: ["system:serviceaccount:kube-system:acr"]}]
//!     oidcProviders:
//!       - {name: ack-rrsa-c1, issuer: "https://oidc.example", clientIds: [sts.aliyuncs.com],
//!          publicKeysPem: ["-----BEGIN PUBLIC KEY-----..."], publicKeyFiles: [/path/sa.pub]}
//!     instances:
//!       - id: cri-abc
//!         name: myreg
//!         region: cn-hangzhou
//!         endpoints:                      # default: internet + vpc SYSTEM domains from name/region
//!           - {type: internet, enabled: true, domains: [{domain: myreg-registry.cn-hangzhou.cr.aliyuncs.com, type: SYSTEM}]}
//!     personalRegistry: true             # GET /tokens works for this account (default true)
//! metadata:                              # ECS metadata service (optional)
//!   account: "1234567890123456"
//!   roleName: node-role                  # a role of that account
//!   hardened: false                      # true: requests without a metadata token are refused
//! ```
//!
//! Permissions are `product:Action` (any resource), `product:Action:<instanceId>`, `cr:*` or
//! `*`. An account's root key may do everything except assume roles (as on the real STS).
//! Trust principals match the caller's ARN exactly, or `acs:ram::<account>:root` matches any
//! RAM user or role of that account; AssumeRole also needs `sts:AssumeRole` on the caller.

use serde::{Deserialize, Serialize};

/// The whole world.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub lifetimes: Lifetimes,
    #[serde(default)]
    pub accounts: Vec<Account>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

fn default_region() -> String {
    "cn-hangzhou".into()
}

fn yes() -> bool {
    true
}

/// Lifetimes of what the fake issues.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lifetimes {
    pub sts_seconds: Option<u64>,
    pub registry_seconds: Option<u64>,
    pub metadata_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Account {
    pub id: String,
    #[serde(default)]
    pub access_keys: Vec<AccessKey>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub oidc_providers: Vec<OidcProvider>,
    #[serde(default)]
    pub instances: Vec<Instance>,
    #[serde(default = "yes")]
    pub personal_registry: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    /// The RAM user owning the key; absent for the account's root key.
    pub user: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub permissions: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Role {
    pub name: String,
    #[serde(default = "default_max_session")]
    pub max_session_duration: u64,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub trust: Trust,
}

fn default_max_session() -> u64 {
    3600
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trust {
    #[serde(default)]
    pub principals: Vec<String>,
    pub external_id: Option<String>,
    #[serde(default)]
    pub oidc: Vec<OidcTrust>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcTrust {
    /// Name of an OIDC provider of the same account.
    pub provider: String,
    /// Allowed `sub` values; empty allows any subject.
    #[serde(default)]
    pub subjects: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcProvider {
    pub name: String,
    pub issuer: String,
    #[serde(default = "default_client_ids")]
    pub client_ids: Vec<String>,
    /// RS256 public keys (PEM) that may sign tokens.
    #[serde(default)]
    pub public_keys_pem: Vec<String>,
    /// Files holding such keys (read when the scenario is loaded).
    #[serde(default)]
    pub public_key_files: Vec<String>,
}

fn default_client_ids() -> Vec<String> {
    vec!["sts.aliyuncs.com".into()]
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub region: Option<String>,
    /// Default: enabled internet and VPC endpoints with the SYSTEM domains.
    pub endpoints: Option<Vec<Endpoint>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// `internet` or `vpc`.
    #[serde(rename = "type")]
    pub endpoint_type: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub domains: Vec<Domain>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Domain {
    pub domain: String,
    /// `SYSTEM` or `USER`.
    #[serde(rename = "type", default = "system")]
    pub kind: String,
}

fn system() -> String {
    "SYSTEM".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub account: String,
    pub role_name: String,
    #[serde(default)]
    pub hardened: bool,
}

impl Instance {
    /// The instance's endpoints, defaulted from its name and region.
    pub fn endpoints_or_default(&self, default_region: &str) -> Vec<Endpoint> {
        if let Some(e) = &self.endpoints {
            return e.clone();
        }
        let region = self.region.as_deref().unwrap_or(default_region);
        ["internet", "vpc"]
            .iter()
            .map(|t| Endpoint {
                endpoint_type: t.to_string(),
                enabled: true,
                domains: vec![Domain {
                    domain: if *t == "vpc" {
                        format!("{}-registry-vpc.{region}.cr.aliyuncs.com", self.name)
                    } else {
                        format!("{}-registry.{region}.cr.aliyuncs.com", self.name)
                    },
                    kind: system(),
                }],
            })
            .collect()
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario is not valid YAML/JSON: {0}")]
    Parse(#[from] serde_yaml::Error),
    #[error("scenario is inconsistent: {0}")]
    Invalid(String),
}

impl Scenario {
    /// Parses YAML (JSON is YAML too), reads referenced key files and checks references.
    pub fn from_str_resolved(text: &str) -> Result<Self, ScenarioError> {
        let mut scenario: Scenario = serde_yaml::from_str(text)?;
        scenario.resolve()?;
        Ok(scenario)
    }

    /// Loads a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_str_resolved(&text)
    }

    /// Reads `publicKeyFiles` into `publicKeysPem` and checks cross references.
    pub fn resolve(&mut self) -> Result<(), ScenarioError> {
        for account in &mut self.accounts {
            for provider in &mut account.oidc_providers {
                for path in std::mem::take(&mut provider.public_key_files) {
                    let pem =
                        std::fs::read_to_string(&path).map_err(|source| ScenarioError::Read {
                            path: path.clone(),
                            source,
                        })?;
                    provider.public_keys_pem.push(pem);
                }
            }
            for role in &account.roles {
                for t in &role.trust.oidc {
                    if !account.oidc_providers.iter().any(|p| p.name == t.provider) {
                        return Err(ScenarioError::Invalid(format!(
                            "role {} trusts unknown OIDC provider {}",
                            role.name, t.provider
                        )));
                    }
                }
            }
            for key in &account.access_keys {
                if let Some(user) = &key.user
                    && !account.users.iter().any(|u| &u.name == user)
                {
                    return Err(ScenarioError::Invalid(format!(
                        "access key {} names unknown user {user}",
                        key.id
                    )));
                }
            }
        }
        if let Some(md) = &self.metadata {
            let account = self.accounts.iter().find(|a| a.id == md.account);
            if !account.is_some_and(|a| a.roles.iter().any(|r| r.name == md.role_name)) {
                return Err(ScenarioError::Invalid(format!(
                    "metadata role {} is not a role of account {}",
                    md.role_name, md.account
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_references() {
        let s = Scenario::from_str_resolved(
            "accounts:\n- id: '1'\n  instances: [{id: cri-a, name: a}]\n  roles: [{name: r}]\nmetadata: {account: '1', roleName: r}\n",
        )
        .unwrap();
        assert_eq!(s.region, "cn-hangzhou");
        assert_eq!(s.accounts[0].roles[0].max_session_duration, 3600);
        let eps = s.accounts[0].instances[0].endpoints_or_default(&s.region);
        assert_eq!(
            eps[1].domains[0].domain,
            "a-registry-vpc.cn-hangzhou.cr.aliyuncs.com"
        );
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(matches!(
            Scenario::from_str_resolved("acounts: []"),
            Err(ScenarioError::Parse(_))
        ));
        let bad_user = "accounts:\n- id: '1'\n  accessKeys: [{id: k, secret: s, user: ghost}]\n";
        assert!(matches!(
            Scenario::from_str_resolved(bad_user),
            Err(ScenarioError::Invalid(_))
        ));
        let bad_md = "accounts: [{id: '1'}]\nmetadata: {account: '1', roleName: r}\n";
        assert!(matches!(
            Scenario::from_str_resolved(bad_md),
            Err(ScenarioError::Invalid(_))
        ));
        let bad_oidc =
            "accounts:\n- id: '1'\n  roles: [{name: r, trust: {oidc: [{provider: p}]}}]\n";
        assert!(matches!(
            Scenario::from_str_resolved(bad_oidc),
            Err(ScenarioError::Invalid(_))
        ));
    }
}
