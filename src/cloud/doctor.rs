//! The chain walk behind `acr-credential-controller doctor`.
//!
//! Given plain parameters (a credential source, an optional assume-role hop, a registry and
//! optional configured domains), [`walk`] performs each step the controller would: get the
//! source's credentials, assume the role, get a registry token, find the domains. Every step
//! records its outcome, the principal, the endpoint used and expiry times; a failed step keeps
//! the cloud's code, message, RequestId and a hint, and the steps after it are skipped.
//! [`DoctorReport::render`] prints it for people. No secret is ever put into a report: only
//! AccessKeyIds, identities, user names, endpoints and times.

use std::sync::Arc;

use super::client::CloudClient;
use super::credentials::access_key::SecretReader;
use super::credentials::assume_role::AssumeRoleSource;
use super::credentials::{
    AssumeRoleConfig, CredentialProvider, ProviderConfig, SourceConfig, build_provider,
};
use super::error::CloudError;
use super::registry::{self, Registry};

/// What to check.
#[derive(Debug, Clone)]
pub struct DoctorPlan {
    /// Names shown in the header (e.g. `policy default`, `binding team-a`).
    pub context: Vec<(String, String)>,
    pub source: SourceConfig,
    pub assume_role: Option<AssumeRoleConfig>,
    pub registry: Registry,
    /// Configured domains; `None` means discover them as the controller would.
    pub domains: Option<Vec<String>>,
}

/// Outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Ok,
    Failed,
    Skipped,
}

/// The cloud's (or the source's) error, without secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub reason: &'static str,
    pub message: String,
    pub code: Option<String>,
    pub request_id: Option<String>,
    pub hint: Option<&'static str>,
}

impl From<&CloudError> for StepError {
    fn from(e: &CloudError) -> Self {
        Self {
            reason: e.reason(),
            message: e.to_string(),
            code: e.code().map(str::to_string),
            request_id: e.request_id().map(str::to_string),
            hint: e.hint(),
        }
    }
}

/// One step of the chain.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: &'static str,
    pub subject: String,
    pub status: StepStatus,
    pub details: Vec<(&'static str, String)>,
    pub error: Option<StepError>,
}

/// The whole walk.
#[derive(Debug, Clone)]
pub struct DoctorReport {
    pub context: Vec<(String, String)>,
    pub steps: Vec<Step>,
    pub now: jiff::Timestamp,
}

impl DoctorReport {
    /// True when every step succeeded.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.status == StepStatus::Ok)
    }

    /// Human-readable text.
    pub fn render(&self) -> String {
        let mut out = String::from("acr-credential-controller doctor\n");
        for (k, v) in &self.context {
            out.push_str(&format!("  {k:<10} {v}\n"));
        }
        out.push('\n');
        for step in &self.steps {
            let mark = match step.status {
                StepStatus::Ok => "[ OK ]",
                StepStatus::Failed => "[FAIL]",
                StepStatus::Skipped => "[SKIP]",
            };
            out.push_str(&format!("{mark} {:<15} {}\n", step.name, step.subject));
            for (k, v) in &step.details {
                out.push_str(&format!("       {:<11} {v}\n", format!("{k}:")));
            }
            if let Some(e) = &step.error {
                out.push_str(&format!("       {:<11} {}\n", "error:", e.message));
                out.push_str(&format!("       {:<11} {}\n", "reason:", e.reason));
                if let Some(code) = &e.code {
                    out.push_str(&format!("       {:<11} {code}\n", "code:"));
                }
                if let Some(id) = &e.request_id {
                    out.push_str(&format!("       {:<11} {id}\n", "request id:"));
                }
                if let Some(hint) = e.hint {
                    out.push_str(&format!("       {:<11} {hint}\n", "hint:"));
                }
            }
        }
        out.push('\n');
        match self.steps.iter().find(|s| s.status == StepStatus::Failed) {
            None => out.push_str(
                "result: OK, the controller can issue pull credentials for this binding\n",
            ),
            Some(s) => out.push_str(&format!("result: FAILED at step \"{}\"\n", s.name)),
        }
        out
    }
}

/// `2026-01-01T10:00:00Z (in 59m 58s)`.
pub fn describe_expiry(expires: Option<jiff::Timestamp>, now: jiff::Timestamp) -> String {
    let Some(exp) = expires else {
        return "never (long-lived AccessKey)".into();
    };
    let secs = exp.duration_since(now).as_secs();
    let (sign, secs) = if secs < 0 {
        ("ago ", -secs)
    } else {
        ("in ", secs)
    };
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let span = if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    };
    if sign == "ago " {
        format!("{exp} (expired {span} ago)")
    } else {
        format!("{exp} ({sign}{span})")
    }
}

fn source_endpoint(client: &CloudClient, source: &SourceConfig) -> String {
    let url = |r: Result<url::Url, CloudError>| {
        r.map(|u| u.to_string()).unwrap_or_else(|e| e.to_string())
    };
    match source {
        SourceConfig::ManagedRole { token_file } => format!("file {}", token_file.display()),
        SourceConfig::WorkerRole { .. } => {
            format!("metadata {}", url(client.endpoints().metadata()))
        }
        SourceConfig::Rrsa { token_file, .. } => {
            format!(
                "sts {} (OIDC token file {})",
                url(client.endpoints().sts()),
                token_file.display()
            )
        }
        SourceConfig::AccessKey(r) => format!("Secret {}/{}", r.namespace, r.name),
    }
}

fn failed(
    name: &'static str,
    subject: String,
    details: Vec<(&'static str, String)>,
    e: &CloudError,
) -> Step {
    Step {
        name,
        subject,
        status: StepStatus::Failed,
        details,
        error: Some(e.into()),
    }
}

fn skipped(name: &'static str, subject: String) -> Step {
    Step {
        name,
        subject,
        status: StepStatus::Skipped,
        details: Vec::new(),
        error: None,
    }
}

/// Walks the chain and reports every step: credentials → assume role (when there is a hop) →
/// registry token → domains. A failed step ends the walk; the steps after it are skipped.
pub async fn walk(
    client: Arc<CloudClient>,
    secrets: Arc<dyn SecretReader>,
    plan: &DoctorPlan,
) -> DoctorReport {
    let mut walk = Walk {
        registry_subject: registry_subject(&plan.registry),
        client,
        plan,
        steps: Vec::new(),
    };
    let _finished = walk.run(secrets).await;
    walk.report()
}

/// `cri-… (Enterprise Edition, region)` or `Personal Edition, region`.
fn registry_subject(registry: &Registry) -> String {
    match registry {
        Registry::Enterprise {
            region,
            instance_id,
        } => format!("{instance_id} (Enterprise Edition, {region})"),
        Registry::Personal { region } => format!("Personal Edition, {region}"),
    }
}

/// A walk in progress: the steps recorded so far. Each step records exactly one [`Step`] and
/// returns `None` when it failed, which ends the walk.
struct Walk<'a> {
    client: Arc<CloudClient>,
    plan: &'a DoctorPlan,
    registry_subject: String,
    steps: Vec<Step>,
}

impl Walk<'_> {
    async fn run(&mut self, secrets: Arc<dyn SecretReader>) -> Option<()> {
        let base = self.credentials(secrets).await?;
        let provider = self.assume_role(base).await?;
        self.token_api_of_domains()?;
        self.registry_token(&provider).await?;
        self.domains(&provider).await
    }

    /// The report: the steps taken, then the steps after a failure as skipped.
    fn report(mut self) -> DoctorReport {
        let mut planned = vec![];
        if let Some(hop) = &self.plan.assume_role {
            planned.push(("assume role", hop.role_arn.clone()));
        }
        planned.push(("registry token", self.registry_subject.clone()));
        planned.push(("domains", self.registry_subject.clone()));
        // The first step (credentials) is always taken.
        let taken_after_first = self.steps.len().saturating_sub(1);
        for (name, subject) in planned.into_iter().skip(taken_after_first) {
            self.steps.push(skipped(name, subject));
        }
        DoctorReport {
            context: self.plan.context.clone(),
            steps: self.steps,
            now: self.client.now(),
        }
    }

    fn ok(&mut self, name: &'static str, subject: String, details: Vec<(&'static str, String)>) {
        self.steps.push(Step {
            name,
            subject,
            status: StepStatus::Ok,
            details,
            error: None,
        });
    }

    /// Records a failed step; `None`, to end the walk with `?`.
    fn fail<T>(
        &mut self,
        name: &'static str,
        subject: String,
        details: Vec<(&'static str, String)>,
        e: &CloudError,
    ) -> Option<T> {
        self.steps.push(failed(name, subject, details, e));
        None
    }

    /// The source's own credentials.
    async fn credentials(
        &mut self,
        secrets: Arc<dyn SecretReader>,
    ) -> Option<Arc<CredentialProvider>> {
        let client = self.client.clone();
        let config = ProviderConfig {
            source: self.plan.source.clone(),
            assume_role: None,
        };
        let base = build_provider(&config, client.clone(), secrets);
        let subject = base.describe();
        let endpoint = ("endpoint", source_endpoint(&client, &self.plan.source));
        match base.credentials().await {
            Ok(c) => {
                let details = vec![
                    endpoint,
                    ("principal", c.principal.clone()),
                    ("access key", c.access_key_id.clone()),
                    ("expires", describe_expiry(c.expires_at, client.now())),
                ];
                self.ok("credentials", subject, details);
                Some(base)
            }
            Err(e) => self.fail("credentials", subject, vec![endpoint], &e),
        }
    }

    /// The assume-role hop on top of the source, when there is one.
    async fn assume_role(
        &mut self,
        base: Arc<CredentialProvider>,
    ) -> Option<Arc<CredentialProvider>> {
        let Some(hop) = &self.plan.assume_role else {
            return Some(base);
        };
        let client = self.client.clone();
        let source = AssumeRoleSource::new(client.clone(), base, hop.clone());
        let hop_provider = Arc::new(CredentialProvider::new(
            Box::new(source),
            client.clock().clone(),
        ));
        let sts = client
            .endpoints()
            .sts()
            .map(|u| u.to_string())
            .unwrap_or_default();
        let mut details = vec![
            ("endpoint", sts),
            ("session", hop.session_name.clone()),
            ("duration", format!("{}s", hop.duration.as_secs())),
        ];
        if hop.external_id.is_some() {
            details.push(("external id", "set".into()));
        }
        match hop_provider.credentials().await {
            Ok(c) => {
                details.push(("principal", c.principal.clone()));
                details.push(("access key", c.access_key_id.clone()));
                details.push(("expires", describe_expiry(c.expires_at, client.now())));
                self.ok("assume role", hop.role_arn.clone(), details);
                Some(hop_provider)
            }
            Err(e) => self.fail("assume role", hop.role_arn.clone(), details, &e),
        }
    }

    /// New-style Personal instances have no token API: say so before calling anything.
    fn token_api_of_domains(&mut self) -> Option<()> {
        for d in self.plan.domains.iter().flatten() {
            if let Err(e) = registry::ensure_token_api(d) {
                let subject = self.registry_subject.clone();
                return self.fail("registry token", subject, vec![("domain", d.clone())], &e);
            }
        }
        Some(())
    }

    fn cr_endpoint(&self) -> String {
        self.client
            .endpoints()
            .cr(self.plan.registry.region())
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// A registry token, from the API of the registry's edition.
    async fn registry_token(&mut self, provider: &CredentialProvider) -> Option<()> {
        let api = match &self.plan.registry {
            Registry::Enterprise { .. } => "GetAuthorizationToken (2018-12-01)",
            Registry::Personal { .. } => "GET /tokens (2016-06-07)",
        };
        let mut details = vec![("endpoint", self.cr_endpoint()), ("api", api.to_string())];
        let subject = self.registry_subject.clone();
        match registry::fetch_token(&self.client, provider, &self.plan.registry).await {
            Ok(token) => {
                details.push(("username", token.username.clone()));
                let expires = describe_expiry(Some(token.expires_at), self.client.now());
                details.push(("expires", expires));
                if let Some(id) = token.request_id {
                    details.push(("request id", id));
                }
                self.ok("registry token", subject, details);
                Some(())
            }
            Err(e) => self.fail("registry token", subject, details, &e),
        }
    }

    /// The registry's domains: configured, the Personal Edition defaults, or discovered.
    async fn domains(&mut self, provider: &CredentialProvider) -> Option<()> {
        let cr = self.cr_endpoint();
        let found = match (&self.plan.domains, &self.plan.registry) {
            (Some(configured), _) => {
                Ok(("configured in the binding".to_string(), configured.clone()))
            }
            (None, Registry::Personal { region }) => Ok((
                "default Personal Edition domains".to_string(),
                registry::personal_domains(region),
            )),
            (
                None,
                Registry::Enterprise {
                    region,
                    instance_id,
                },
            ) => registry::discover_domains(&self.client, provider, region, instance_id)
                .await
                .map(|d| (format!("ListInstanceEndpoint at {cr}"), d)),
        };
        let subject = self.registry_subject.clone();
        match found {
            Ok((origin, domains)) => {
                let mut details = vec![("source", origin)];
                if domains.is_empty() {
                    details.push(("domains", "none: no enabled endpoint has a domain".into()));
                }
                details.extend(domains.into_iter().map(|d| ("domain", d)));
                self.ok("domains", subject, details);
                Some(())
            }
            Err(e) => self.fail("domains", subject, vec![("endpoint", cr)], &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_text() {
        let now: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(describe_expiry(None, now), "never (long-lived AccessKey)");
        let later: jiff::Timestamp = "2024-01-01T00:59:58Z".parse().unwrap();
        assert_eq!(
            describe_expiry(Some(later), now),
            "2024-01-01T00:59:58Z (in 59m 58s)"
        );
        let much: jiff::Timestamp = "2024-01-01T12:00:05Z".parse().unwrap();
        assert_eq!(
            describe_expiry(Some(much), now),
            "2024-01-01T12:00:05Z (in 12h 0m 5s)"
        );
        let past: jiff::Timestamp = "2023-12-31T23:59:50Z".parse().unwrap();
        assert_eq!(
            describe_expiry(Some(past), now),
            "2023-12-31T23:59:50Z (expired 10s ago)"
        );
    }
}
