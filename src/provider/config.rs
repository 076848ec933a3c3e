//! The plugin's configuration file (YAML), and its validation.
//!
//! ```yaml
//! apiVersion: acrcredentials.io/v1alpha1
//! kind: AcrCredentialProviderConfig
//! region: cn-hangzhou              # the nodes' region (default region of registries, regional STS)
//! network: vpc                     # public (default) or vpc: which API endpoints to call
//! source:                          # the credential source, exactly one (the CRD's words)
//!   workerRole: {}                 # the node's ECS RAM role (optional roleName)
//!   # rrsa:                        # the pulling Pod's ServiceAccount (KEP-4412) through RRSA
//!   #   oidcProviderArn: acs:ram::<uid>:oidc-provider/ack-rrsa-<clusterId>
//!   #   duration: 1h               # STS session length, 15m..12h (default 1h)
//!   #   sessionName: optional      # default: <namespace>.<serviceAccount> from the token
//! assumeRole:                      # optional hop on top of either source
//!   roleArn: acs:ram::<uid>:role/<name>
//!   sessionName: optional
//!   externalId: optional
//!   duration: 1h                   # 1h..12h
//! registries:                      # Enterprise Edition instances this plugin answers for
//!   - instanceId: cri-xxxx
//!     instanceName: myreg          # its <name>-registry[-vpc].<region>.cr.aliyuncs.com domains
//!     region: cn-hangzhou          # default: region above
//!     domains: [images.example.com]  # custom domains of the instance
//! personalEdition: true            # answer registry[-vpc].<region>.aliyuncs.com (default true)
//! cacheMargin: 10m                 # cacheDuration = token life left - margin (30s..1h)
//! timeout: 20s                     # budget for one call (1s..55s)
//! endpoints: {sts: ..., cr: ..., metadata: ...}   # optional base URL overrides
//! ```
//!
//! Unknown fields are rejected; every error names the field (`registries[0].instanceId: …`),
//! with the same formats and ranges the CRDs use.
//!
//! Deprecated spellings, still accepted: `identity` for `source`, `node` for `workerRole`,
//! `serviceAccount` for `rrsa` (errors name the fields by their new names).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::api::{duration, patterns, validation as v};
use crate::cloud::credentials::AssumeRoleConfig;
use crate::cloud::endpoints::{Network, Overrides, parse_base};

pub const API_VERSION: &str = "acrcredentials.io/v1alpha1";
pub const KIND: &str = "AcrCredentialProviderConfig";
/// Default role session name.
pub const DEFAULT_SESSION_NAME: &str = "acr-credential-provider";
const DEFAULT_MARGIN: Duration = Duration::from_secs(600);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    pub api_version: String,
    pub kind: String,
    pub region: String,
    #[serde(default)]
    pub network: Network,
    /// `identity`: the deprecated spelling.
    #[serde(alias = "identity")]
    pub source: SourceSpec,
    #[serde(default)]
    pub assume_role: Option<AssumeRoleSpec>,
    #[serde(default)]
    pub registries: Vec<InstanceSpec>,
    #[serde(default)]
    pub personal_edition: Option<bool>,
    #[serde(default)]
    pub cache_margin: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub endpoints: Option<EndpointsSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    /// `node`: the deprecated spelling.
    #[serde(default, alias = "node")]
    pub worker_role: Option<WorkerRoleSpec>,
    /// `serviceAccount`: the deprecated spelling.
    #[serde(default, alias = "serviceAccount")]
    pub rrsa: Option<RrsaSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerRoleSpec {
    #[serde(default)]
    pub role_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RrsaSpec {
    pub oidc_provider_arn: String,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub session_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssumeRoleSpec {
    pub role_arn: String,
    #[serde(default)]
    pub session_name: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    pub instance_id: String,
    #[serde(default)]
    pub instance_name: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub domains: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointsSpec {
    #[serde(default)]
    pub sts: Option<String>,
    #[serde(default)]
    pub cr: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
}

/// The credential source: who pulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The node's ECS RAM role (the CRD's `workerRole`).
    WorkerRole { role_name: Option<String> },
    /// The pulling Pod's ServiceAccount, exchanged through `AssumeRoleWithOIDC` (the CRD's
    /// `rrsa`, with the Pod's token instead of the controller's).
    Rrsa {
        oidc_provider_arn: String,
        /// The provider's account: roles named by `role-name` annotations live there.
        account_id: String,
        duration: Duration,
        session_name: Option<String>,
    },
}

/// One Enterprise Edition instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEntry {
    pub instance_id: String,
    pub instance_name: Option<String>,
    pub region: String,
    /// Lower-cased custom domains.
    pub domains: Vec<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub region: String,
    pub network: Network,
    pub source: Source,
    pub assume_role: Option<AssumeRoleConfig>,
    pub registries: Vec<InstanceEntry>,
    pub personal_edition: bool,
    pub cache_margin: Duration,
    pub timeout: Duration,
    pub overrides: Overrides,
}

/// A configuration problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration {field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

#[derive(Default)]
struct Checker {
    errors: Vec<ConfigError>,
}

impl Checker {
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn check(&mut self, field: &str, ok: bool, what: &str) {
        if !ok {
            self.push(field, format!("must be {what}"));
        }
    }

    /// A duration within `[min, max]`; `None` when absent or invalid.
    fn duration(
        &mut self,
        field: &str,
        value: Option<&str>,
        (min, max): (Duration, Duration),
    ) -> Option<Duration> {
        let value = value?;
        let range = format!(
            "a duration from {} to {} such as 10m or 1h30m",
            duration::format(min),
            duration::format(max)
        );
        match duration::parse(value) {
            Some(d) if d >= min && d <= max => Some(d),
            _ => {
                self.push(field, format!("must be {range}"));
                None
            }
        }
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn is_session_name(s: &str) -> bool {
    crate::cloud::sts::validate_session_name(s).is_ok()
}

fn is_external_id(s: &str) -> bool {
    (patterns::EXTERNAL_ID_MIN as usize..=patterns::EXTERNAL_ID_MAX as usize).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'+' | b'=' | b',' | b'.' | b'@' | b':' | b'/' | b'-'
                )
        })
}

/// Account id of `acs:ram::<account>:oidc-provider/<name>`.
fn arn_account(arn: &str) -> Option<&str> {
    arn.strip_prefix("acs:ram::")?.split(':').next()
}

/// Parses and validates a configuration text.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    let file: ConfigFile = serde_yaml::from_str(text).map_err(|e| {
        vec![ConfigError {
            field: e
                .location()
                .map_or("file".into(), |l| format!("(line {})", l.line())),
            message: e.to_string(),
        }]
    })?;
    validate(&file)
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            field: "file".into(),
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    parse(&text)
}

/// Validates a parsed file: every problem at once.
pub fn validate(f: &ConfigFile) -> Result<Config, Vec<ConfigError>> {
    let mut c = Checker::default();
    if f.api_version != API_VERSION {
        c.push("apiVersion", format!("must be {API_VERSION}"));
    }
    if f.kind != KIND {
        c.push("kind", format!("must be {KIND}"));
    }
    c.check(
        "region",
        v::is_region(&f.region),
        "a region id such as cn-hangzhou",
    );
    let source = source(&mut c, &f.source);
    let assume_role = f.assume_role.as_ref().map(|a| {
        c.check(
            "assumeRole.roleArn",
            v::is_role_arn(&a.role_arn),
            "a RAM role ARN (acs:ram::<account>:role/<name>)",
        );
        if let Some(s) = &a.session_name {
            c.check(
                "assumeRole.sessionName",
                is_session_name(s),
                "2-64 letters, digits, '.', '@', '-', '_'",
            );
        }
        if let Some(x) = &a.external_id {
            c.check(
                "assumeRole.externalId",
                is_external_id(x),
                "2-1224 characters of letters, digits and _+=,.@:/-",
            );
        }
        AssumeRoleConfig {
            role_arn: a.role_arn.clone(),
            session_name: a
                .session_name
                .clone()
                .unwrap_or_else(|| DEFAULT_SESSION_NAME.into()),
            external_id: a.external_id.clone(),
            duration: c
                .duration(
                    "assumeRole.duration",
                    a.duration.as_deref(),
                    (secs(3600), secs(12 * 3600)),
                )
                .unwrap_or(secs(3600)),
        }
    });
    let mut registries = Vec::new();
    for (i, r) in f.registries.iter().enumerate() {
        let path = format!("registries[{i}]");
        c.check(
            &format!("{path}.instanceId"),
            v::is_instance_id(&r.instance_id),
            "an Enterprise Edition instance id such as cri-abc123",
        );
        if let Some(name) = &r.instance_name {
            c.check(
                &format!("{path}.instanceName"),
                v::is_dns_label(name),
                "the instance name (a DNS label), as in <name>-registry.<region>.cr.aliyuncs.com",
            );
        }
        let region = r.region.clone().unwrap_or_else(|| f.region.clone());
        if r.region.is_some() {
            c.check(
                &format!("{path}.region"),
                v::is_region(&region),
                "a region id such as cn-hangzhou",
            );
        }
        if r.instance_name.is_none() && r.domains.is_empty() {
            c.push(
                &path,
                "set instanceName, domains or both: otherwise no host maps to this instance",
            );
        }
        let mut domains = Vec::new();
        for (j, d) in r.domains.iter().enumerate() {
            let d = d.to_ascii_lowercase();
            c.check(
                &format!("{path}.domains[{j}]"),
                v::is_dns_subdomain(&d),
                "a host name such as images.example.com",
            );
            domains.push(d);
        }
        registries.push(InstanceEntry {
            instance_id: r.instance_id.clone(),
            instance_name: r.instance_name.as_ref().map(|n| n.to_ascii_lowercase()),
            region,
            domains,
        });
    }
    // A host must map to one instance only.
    let mut seen = std::collections::BTreeMap::new();
    for (i, r) in registries.iter().enumerate() {
        let names = r.instance_name.iter().map(|n| format!("{n}@{}", r.region));
        for key in r.domains.iter().cloned().chain(names) {
            if let Some(first) = seen.insert(key.clone(), i) {
                c.push(
                    &format!("registries[{i}]"),
                    format!("{key} is already mapped by registries[{first}]"),
                );
            }
        }
    }
    let cache_margin = c
        .duration(
            "cacheMargin",
            f.cache_margin.as_deref(),
            (secs(30), secs(3600)),
        )
        .unwrap_or(DEFAULT_MARGIN);
    let timeout = c
        .duration("timeout", f.timeout.as_deref(), (secs(1), secs(55)))
        .unwrap_or(DEFAULT_TIMEOUT);
    let mut overrides = Overrides::default();
    if let Some(e) = &f.endpoints {
        for (name, value, slot) in [
            ("sts", &e.sts, &mut overrides.sts),
            ("cr", &e.cr, &mut overrides.cr),
            ("metadata", &e.metadata, &mut overrides.metadata),
        ] {
            if let Some(value) = value {
                match parse_base(value) {
                    Ok(url) => *slot = Some(url),
                    Err(e) => c.push(&format!("endpoints.{name}"), e.to_string()),
                }
            }
        }
    }
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    match source {
        Some(source) => Ok(Config {
            region: f.region.clone(),
            network: f.network,
            source,
            assume_role,
            registries,
            personal_edition: f.personal_edition.unwrap_or(true),
            cache_margin,
            timeout,
            overrides,
        }),
        None => Err(vec![ConfigError {
            field: "source".into(),
            message: EXACTLY_ONE.into(),
        }]),
    }
}

const EXACTLY_ONE: &str = "must set exactly one of workerRole or rrsa";

fn source(c: &mut Checker, spec: &SourceSpec) -> Option<Source> {
    match (&spec.worker_role, &spec.rrsa) {
        (Some(node), None) => {
            if let Some(name) = &node.role_name {
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                c.check(
                    "source.workerRole.roleName",
                    ok,
                    "a RAM role name (1-64 letters, digits, '.', '_', '-')",
                );
            }
            Some(Source::WorkerRole {
                role_name: node.role_name.clone(),
            })
        }
        (None, Some(sa)) => {
            c.check(
                "source.rrsa.oidcProviderArn",
                v::is_oidc_provider_arn(&sa.oidc_provider_arn),
                "an OIDC provider ARN (acs:ram::<account>:oidc-provider/<name>)",
            );
            if let Some(s) = &sa.session_name {
                c.check(
                    "source.rrsa.sessionName",
                    is_session_name(s),
                    "2-64 letters, digits, '.', '@', '-', '_'",
                );
            }
            let duration = c
                .duration(
                    "source.rrsa.duration",
                    sa.duration.as_deref(),
                    (secs(900), secs(12 * 3600)),
                )
                .unwrap_or(secs(3600));
            Some(Source::Rrsa {
                oidc_provider_arn: sa.oidc_provider_arn.clone(),
                account_id: arn_account(&sa.oidc_provider_arn)
                    .unwrap_or_default()
                    .to_string(),
                duration,
                session_name: sa.session_name.clone(),
            })
        }
        _ => {
            c.push("source", EXACTLY_ONE);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialProviderConfig\nregion: cn-hangzhou\nsource: {workerRole: {}}\n";

    fn errors(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn minimal_node_config_gets_defaults() {
        let c = parse(NODE).unwrap();
        assert_eq!(c.source, Source::WorkerRole { role_name: None });
        assert!(c.personal_edition);
        assert_eq!(c.cache_margin, secs(600));
        assert_eq!(c.timeout, secs(20));
        assert_eq!(c.network, Network::Public);
    }

    #[test]
    fn rrsa_takes_the_provider_account() {
        let text = NODE.replace(
            "source: {workerRole: {}}",
            "network: vpc\nsource: {rrsa: {oidcProviderArn: 'acs:ram::123:oidc-provider/ack-rrsa-c1', duration: 2h}}",
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.network, Network::Vpc);
        match c.source {
            Source::Rrsa {
                account_id,
                duration,
                ..
            } => {
                assert_eq!(account_id, "123");
                assert_eq!(duration, secs(7200));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_error_names_its_field() {
        let text = "apiVersion: v1\nkind: X\nregion: Hangzhou\nsource: {}\nassumeRole: {roleArn: bad, duration: 30m}\nregistries:\n- {instanceId: cri-a, instanceName: a, domains: [Images.Example.com, 'bad host']}\n- {instanceId: nope, domains: [images.example.com]}\n- {instanceId: cri-c}\ncacheMargin: 2h\ntimeout: 10\nendpoints: {sts: 'ftp://x'}\n";
        let e = errors(text);
        for field in [
            "apiVersion",
            "kind",
            "region",
            "source:",
            "assumeRole.roleArn",
            "assumeRole.duration",
            "registries[0].domains[1]",
            "registries[1].instanceId",
            "registries[1]: images.example.com is already mapped by registries[0]",
            "registries[2]: set instanceName",
            "cacheMargin",
            "timeout",
            "endpoints.sts",
        ] {
            assert!(
                e.iter().any(|m| m.contains(field)),
                "{field} missing from {e:#?}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_both_sources_are_rejected() {
        let e = errors(&NODE.replace("region:", "regoin: x\nregion:"));
        assert!(e[0].contains("unknown field `regoin`"), "{e:?}");
        let e = errors(&NODE.replace(
            "{workerRole: {}}",
            "{workerRole: {}, rrsa: {oidcProviderArn: 'acs:ram::1:oidc-provider/p'}}",
        ));
        assert!(e[0].contains("source: must set exactly one"), "{e:?}");
    }

    #[test]
    fn the_deprecated_spellings_mean_the_same_sources() {
        let old = NODE.replace(
            "source: {workerRole: {}}",
            "identity: {node: {roleName: r}}",
        );
        assert_eq!(
            parse(&old).unwrap().source,
            Source::WorkerRole {
                role_name: Some("r".into())
            }
        );
        let old = NODE.replace(
            "source: {workerRole: {}}",
            "identity: {serviceAccount: {oidcProviderArn: 'acs:ram::123:oidc-provider/p'}}",
        );
        let new = NODE.replace(
            "source: {workerRole: {}}",
            "source: {rrsa: {oidcProviderArn: 'acs:ram::123:oidc-provider/p'}}",
        );
        assert_eq!(parse(&old).unwrap().source, parse(&new).unwrap().source);
        // Both spellings at once name one field twice.
        let e = errors(&NODE.replace("source:", "identity: {node: {}}\nsource:"));
        assert!(e[0].contains("duplicate field `source`"), "{e:?}");
    }
}
