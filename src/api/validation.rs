//! The API's validation rules in code: the same rules the generated schema (patterns, lengths,
//! list uniqueness) and its CEL `x-kubernetes-validations` enforce on the server, for clusters
//! without CEL (Kubernetes < 1.25), for the legacy translator and for offline `validate`.
//!
//! Every problem is reported, each with the field path the API server would use
//! (`spec.registry.domains[1]`). `tests/api_agreement.rs` proves these functions and the
//! schema+CEL reject exactly the same corpus of objects.

use std::{collections::BTreeSet, fmt, sync::LazyLock, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use regex::Regex;

use super::{
    binding::{AcrRegistryBindingSpec, NamespaceSelection, RegistrySpec, ServiceAccountSelection},
    duration,
    patterns::{self as p, msg},
    policy::{AcrCredentialPolicySpec, AssumeRole, CredentialSource},
    selector::{OPERATORS, OPERATORS_WITH_VALUES, OPERATORS_WITHOUT_VALUES},
};

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldError {
    /// Path of the field, as the API server writes it: `spec.namespaces.names[2]`.
    pub path: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Validates an `AcrRegistryBinding` spec. `Err` holds every problem found.
pub fn validate_binding(spec: &AcrRegistryBindingSpec) -> Result<(), Vec<FieldError>> {
    let mut c = Checker::default();
    registry(&mut c, "spec.registry", &spec.registry);
    if let Some(policy) = &spec.policy_ref {
        c.string("spec.policyRef.name", &policy.name, Format::DnsSubdomain);
    }
    namespaces(&mut c, "spec.namespaces", &spec.namespaces);
    if let Some(sas) = &spec.service_accounts {
        service_accounts(&mut c, "spec.serviceAccounts", sas);
    }
    c.finish()
}

/// Validates an `AcrCredentialPolicy` spec. `Err` holds every problem found.
pub fn validate_policy(spec: &AcrCredentialPolicySpec) -> Result<(), Vec<FieldError>> {
    let mut c = Checker::default();
    source(&mut c, "spec.source", &spec.source);
    let mut lifetime = Some(Duration::from_secs(3600));
    if let Some(assume) = &spec.assume_role {
        lifetime = assume_role(&mut c, "spec.assumeRole", assume);
    }
    if let Some(allowed) = &spec.allowed_namespaces {
        selector(&mut c, "spec.allowedNamespaces", allowed);
    }
    if let Some(renew) = &spec.renew_before {
        let path = "spec.renewBefore";
        if let Some(d) = c.duration(path, renew) {
            if d.is_zero() {
                c.push(path, msg::RENEW_BEFORE_POSITIVE);
            }
            // The CEL rule cannot be evaluated when assumeRole.duration is malformed; the
            // server then reports that field, and so do we, and nothing here.
            if let Some(lifetime) = lifetime
                && d >= lifetime
            {
                c.push(path, msg::RENEW_BEFORE_BELOW_LIFETIME);
            }
        }
    }
    c.finish()
}

fn registry(c: &mut Checker, path: &str, r: &RegistrySpec) {
    if let Some(id) = &r.instance_id {
        c.string(&format!("{path}.instanceId"), id, Format::InstanceId);
    }
    if let Some(region) = &r.region {
        c.string(&format!("{path}.region"), region, Format::Region);
    }
    if let Some(domains) = &r.domains {
        c.set(
            &format!("{path}.domains"),
            domains,
            p::DOMAINS_MAX_ITEMS,
            Format::DnsSubdomain,
        );
    }
}

fn namespaces(c: &mut Checker, path: &str, n: &NamespaceSelection) {
    if let Some(names) = &n.names {
        c.set(
            &format!("{path}.names"),
            names,
            p::NAMES_MAX_ITEMS,
            Format::DnsLabel,
        );
    }
    if let Some(exclude) = &n.exclude {
        c.set(
            &format!("{path}.exclude"),
            exclude,
            p::NAMES_MAX_ITEMS,
            Format::DnsLabel,
        );
    }
    if let Some(sel) = &n.selector {
        selector(c, &format!("{path}.selector"), sel);
    }
    let set = [n.names.is_some(), n.all.is_some(), n.selector.is_some()];
    if set.iter().filter(|s| **s).count() != 1 {
        c.push(path, msg::NAMESPACES_EXACTLY_ONE);
    }
    if n.all == Some(false) {
        c.push(path, msg::NAMESPACES_ALL_TRUE);
    }
    if let (Some(names), Some(exclude)) = (&n.names, &n.exclude)
        && names.iter().any(|name| exclude.contains(name))
    {
        c.push(path, msg::NAMESPACES_EXCLUDE_OVERLAP);
    }
}

fn service_accounts(c: &mut Checker, path: &str, s: &ServiceAccountSelection) {
    if let Some(names) = &s.names {
        c.set(
            &format!("{path}.names"),
            names,
            p::NAMES_MAX_ITEMS,
            Format::DnsSubdomain,
        );
    }
    if let Some(sel) = &s.selector {
        selector(c, &format!("{path}.selector"), sel);
    }
    let set = [s.names.is_some(), s.all.is_some(), s.selector.is_some()];
    if set.iter().filter(|s| **s).count() != 1 {
        c.push(path, msg::SERVICE_ACCOUNTS_EXACTLY_ONE);
    }
    if s.all == Some(false) {
        c.push(path, msg::SERVICE_ACCOUNTS_ALL_TRUE);
    }
}

/// A label selector: the operator enum, the values each operator needs and the list bounds
/// (`api::selector` puts the same rules into the schema).
fn selector(c: &mut Checker, path: &str, s: &LabelSelector) {
    let Some(expressions) = &s.match_expressions else {
        return;
    };
    let path = format!("{path}.matchExpressions");
    let max = p::SELECTOR_EXPRESSIONS_MAX_ITEMS;
    if expressions.len() > max as usize {
        c.push(&path, format!("must list at most {max} entries"));
    }
    for (i, e) in expressions.iter().enumerate() {
        let values_path = format!("{path}[{i}].values");
        let values = e.values.as_deref().unwrap_or_default();
        let max = p::SELECTOR_VALUES_MAX_ITEMS;
        if values.len() > max as usize {
            c.push(&values_path, format!("must list at most {max} entries"));
        }
        let op = e.operator.as_str();
        if !OPERATORS.contains(&op) {
            c.push(
                &format!("{path}[{i}].operator"),
                format!("unsupported operator {op:?}: use In, NotIn, Exists or DoesNotExist"),
            );
        } else if OPERATORS_WITH_VALUES.contains(&op) && values.is_empty() {
            c.push(&values_path, msg::SELECTOR_VALUES_REQUIRED);
        } else if OPERATORS_WITHOUT_VALUES.contains(&op) && !values.is_empty() {
            c.push(&values_path, msg::SELECTOR_VALUES_FORBIDDEN);
        }
    }
}

fn source(c: &mut Checker, path: &str, s: &CredentialSource) {
    let set = [
        s.managed_role.is_some(),
        s.worker_role.is_some(),
        s.rrsa.is_some(),
        s.access_key.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        c.push(path, msg::SOURCE_EXACTLY_ONE);
    }
    if let Some(rrsa) = &s.rrsa {
        c.string(
            &format!("{path}.rrsa.roleArn"),
            &rrsa.role_arn,
            Format::RoleArn,
        );
        c.string(
            &format!("{path}.rrsa.oidcProviderArn"),
            &rrsa.oidc_provider_arn,
            Format::OidcProviderArn,
        );
        if let Some(file) = &rrsa.token_file {
            c.string(
                &format!("{path}.rrsa.tokenFile"),
                file,
                Format::AbsolutePath,
            );
        }
    }
    if let Some(ak) = &s.access_key {
        let r = &ak.secret_ref;
        let base = format!("{path}.accessKey.secretRef");
        c.string(&format!("{base}.namespace"), &r.namespace, Format::DnsLabel);
        c.string(&format!("{base}.name"), &r.name, Format::DnsSubdomain);
        if let Some(k) = &r.access_key_id_key {
            c.string(&format!("{base}.accessKeyIdKey"), k, Format::SecretKey);
        }
        if let Some(k) = &r.access_key_secret_key {
            c.string(&format!("{base}.accessKeySecretKey"), k, Format::SecretKey);
        }
        let id_key = r.access_key_id_key.as_deref().unwrap_or("AccessKeyId");
        let secret_key = r
            .access_key_secret_key
            .as_deref()
            .unwrap_or("AccessKeySecret");
        if id_key == secret_key {
            c.push(&base, msg::ACCESS_KEY_KEYS_DIFFER);
        }
    }
}

/// Checks the assume-role hop; returns the credential lifetime it implies, `None` when its
/// duration is malformed (then no rule that depends on the lifetime can be evaluated).
fn assume_role(c: &mut Checker, path: &str, a: &AssumeRole) -> Option<Duration> {
    c.string(&format!("{path}.roleArn"), &a.role_arn, Format::RoleArn);
    if let Some(name) = &a.session_name {
        c.string(&format!("{path}.sessionName"), name, Format::SessionName);
    }
    if let Some(id) = &a.external_id {
        c.string(&format!("{path}.externalId"), id, Format::ExternalId);
    }
    match &a.duration {
        None => Some(Duration::from_secs(3600)),
        Some(d) => {
            let dpath = format!("{path}.duration");
            let parsed = c.duration(&dpath, d)?;
            if parsed < Duration::from_secs(3600) || parsed > Duration::from_secs(12 * 3600) {
                c.push(&dpath, msg::ASSUME_ROLE_DURATION_RANGE);
            }
            Some(parsed)
        }
    }
}

/// The string formats of the API, with their schema limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    DnsLabel,
    DnsSubdomain,
    InstanceId,
    Region,
    RoleArn,
    OidcProviderArn,
    Duration,
    SessionName,
    ExternalId,
    SecretKey,
    AbsolutePath,
}

impl Format {
    fn pattern(self) -> &'static str {
        match self {
            Format::DnsLabel => p::DNS_LABEL,
            Format::DnsSubdomain => p::DNS_SUBDOMAIN,
            Format::InstanceId => p::INSTANCE_ID,
            Format::Region => p::REGION,
            Format::RoleArn => p::ROLE_ARN,
            Format::OidcProviderArn => p::OIDC_PROVIDER_ARN,
            Format::Duration => p::DURATION,
            Format::SessionName => p::SESSION_NAME,
            Format::ExternalId => p::EXTERNAL_ID,
            Format::SecretKey => p::SECRET_KEY,
            Format::AbsolutePath => p::ABSOLUTE_PATH,
        }
    }

    /// (minLength, maxLength) as in the schema.
    fn length(self) -> (u32, u32) {
        match self {
            Format::DnsLabel => (0, p::DNS_LABEL_MAX),
            Format::DnsSubdomain | Format::SecretKey => (0, p::DNS_SUBDOMAIN_MAX),
            Format::InstanceId => (0, p::INSTANCE_ID_MAX),
            Format::Region => (0, p::REGION_MAX),
            Format::RoleArn | Format::OidcProviderArn => (0, p::ARN_MAX),
            Format::Duration => (p::DURATION_MIN, p::DURATION_MAX),
            Format::SessionName => (0, 64),
            Format::ExternalId => (p::EXTERNAL_ID_MIN, p::EXTERNAL_ID_MAX),
            Format::AbsolutePath => (0, p::PATH_MAX),
        }
    }

    /// What a valid value looks like, for messages.
    fn describe(self) -> &'static str {
        match self {
            Format::DnsLabel => {
                "a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
            }
            Format::DnsSubdomain => {
                "a DNS subdomain: lower-case letters, digits, '-' and '.', each part starting and ending with a letter or digit"
            }
            Format::InstanceId => "an ACR Enterprise Edition instance id such as cri-abc123",
            Format::Region => "an Alibaba Cloud region id such as cn-hangzhou",
            Format::RoleArn => "a RAM role ARN such as acs:ram::1234567890123456:role/acr-puller",
            Format::OidcProviderArn => {
                "an OIDC provider ARN such as acs:ram::1234567890123456:oidc-provider/ack-rrsa-c123"
            }
            Format::Duration => "a duration of hours, minutes and seconds such as 15m, 1h or 1h30m",
            Format::SessionName => "2 to 64 letters, digits or '.', '_', '@', '-'",
            Format::ExternalId => "2 to 1224 letters, digits or '_+=,.@:/-'",
            Format::SecretKey => "a Secret data key: letters, digits, '-', '_' and '.'",
            Format::AbsolutePath => "an absolute file path",
        }
    }
}

/// Compiled patterns. A pattern that fails to compile (prevented by a unit test) matches
/// nothing, so the value is reported rather than silently accepted.
static REGEXES: LazyLock<Vec<(Format, Option<Regex>)>> = LazyLock::new(|| {
    [
        Format::DnsLabel,
        Format::DnsSubdomain,
        Format::InstanceId,
        Format::Region,
        Format::RoleArn,
        Format::OidcProviderArn,
        Format::Duration,
        Format::SessionName,
        Format::ExternalId,
        Format::SecretKey,
        Format::AbsolutePath,
    ]
    .into_iter()
    .map(|f| (f, Regex::new(f.pattern()).ok()))
    .collect()
});

fn matches(format: Format, value: &str) -> bool {
    REGEXES
        .iter()
        .find(|(f, _)| *f == format)
        .and_then(|(_, re)| re.as_ref())
        .is_some_and(|re| re.is_match(value))
}

/// Whether `value` is a valid DNS-1123 label (a namespace name).
pub fn is_dns_label(value: &str) -> bool {
    value.chars().count() <= p::DNS_LABEL_MAX as usize && matches(Format::DnsLabel, value)
}

/// Whether `value` is a valid DNS-1123 subdomain (object names, host names).
pub fn is_dns_subdomain(value: &str) -> bool {
    value.chars().count() <= p::DNS_SUBDOMAIN_MAX as usize && matches(Format::DnsSubdomain, value)
}

/// Whether `value` is an ACR Enterprise Edition instance id.
pub fn is_instance_id(value: &str) -> bool {
    value.len() <= p::INSTANCE_ID_MAX as usize && matches(Format::InstanceId, value)
}

/// Whether `value` is an Alibaba Cloud region id.
pub fn is_region(value: &str) -> bool {
    value.len() <= p::REGION_MAX as usize && matches(Format::Region, value)
}

/// Whether `value` is a RAM role ARN.
pub fn is_role_arn(value: &str) -> bool {
    value.len() <= p::ARN_MAX as usize && matches(Format::RoleArn, value)
}

/// Whether `value` is an RRSA OIDC provider ARN.
pub fn is_oidc_provider_arn(value: &str) -> bool {
    value.len() <= p::ARN_MAX as usize && matches(Format::OidcProviderArn, value)
}

#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn push(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Pattern and length, as the schema checks them. Returns whether the value passed.
    fn string(&mut self, path: &str, value: &str, format: Format) -> bool {
        let (min, max) = format.length();
        let len = value.chars().count();
        let mut ok = true;
        if len < min as usize {
            self.push(path, format!("must be at least {min} characters long"));
            ok = false;
        }
        if len > max as usize {
            self.push(path, format!("must be at most {max} characters long"));
            ok = false;
        }
        if !matches(format, value) {
            self.push(path, format!("{value:?} is not {}", format.describe()));
            ok = false;
        }
        ok
    }

    /// A duration string: the schema's pattern and length, then parsed.
    fn duration(&mut self, path: &str, value: &str) -> Option<Duration> {
        if self.string(path, value, Format::Duration) {
            duration::parse(value)
        } else {
            None
        }
    }

    /// A list with `x-kubernetes-list-type: set`, `minItems: 1`, `maxItems` and item formats.
    fn set(&mut self, path: &str, items: &[String], max_items: u32, format: Format) {
        if items.is_empty() {
            self.push(path, "must list at least one entry, or be left out");
        }
        if items.len() > max_items as usize {
            self.push(path, format!("must list at most {max_items} entries"));
        }
        let mut seen = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            self.string(&item_path, item, format);
            if !seen.insert(item.as_str()) {
                self.push(&item_path, format!("duplicate entry {item:?}"));
            }
        }
    }

    fn finish(mut self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            self.errors.sort();
            self.errors.dedup();
            Err(self.errors)
        }
    }
}

#[cfg(test)]
mod tests;
