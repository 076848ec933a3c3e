//! Shared setup for the `controller_*` integration tests: the CRDs (without CEL: the local
//! control plane is Kubernetes 1.20), a fake cloud on loopback, an AccessKey Secret and a
//! policy, and the controller running in-process, restricted (label selector) to this test's
//! own bindings and policies so tests can run side by side on one cluster.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use acr_credential_controller::api::{AcrCredentialPolicy, AcrRegistryBinding};
use acr_credential_controller::cloud::endpoints::{Endpoints, Network};
use acr_credential_controller::cloud::http::HttpConfig;
use acr_credential_controller::cloud::{CloudConfig, SignatureStyle};
use acr_credential_controller::runtime::{self, ControllerConfig};
use acr_fake_cloud::{FakeCloud, FakeHandle, Scenario};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::support::{self, TestEnv, install_crds};

pub const ACCOUNT: &str = "1111111111111111";
pub const INSTANCE: &str = "cri-ctrltest1";
pub const OTHER_INSTANCE: &str = "cri-ctrltest2";
pub const DOMAINS: [&str; 2] = [
    "ctrl-registry.cn-hangzhou.cr.aliyuncs.com",
    "ctrl-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
];
pub const OTHER_DOMAIN: &str = "other-registry.cn-hangzhou.cr.aliyuncs.com";
pub const SECRET_NAME: &str = "acr-credentials";
/// A role in the fake account that the test AccessKey may assume.
pub const ROLE: &str = "ctrl-puller";
/// Label every binding/policy of one test carries; its value is the test's id.
pub const OWNER_LABEL: &str = "acrcredentials.io/test-controller";

/// The fake cloud's world for controller tests; `registry_seconds` sets token lifetimes.
pub fn scenario(registry_seconds: u64) -> Scenario {
    let yaml = format!(
        r#"
region: cn-hangzhou
lifetimes: {{registrySeconds: {registry_seconds}}}
accounts:
  - id: "{ACCOUNT}"
    accessKeys:
      - {{id: LTAIctrl, secret: ctrlsecret, user: ci}}
    users:
      - {{name: ci, permissions: ["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint", "sts:AssumeRole"]}}
    roles:
      - name: {ROLE}
        maxSessionDuration: 3600
        permissions: ["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint"]
        trust: {{principals: ["acs:ram::{ACCOUNT}:root"]}}
    instances:
      - id: {INSTANCE}
        name: ctrl
        region: cn-hangzhou
      - id: {OTHER_INSTANCE}
        name: other
        region: cn-hangzhou
        endpoints:
          - type: internet
            enabled: true
            domains: [{{domain: {OTHER_DOMAIN}, type: SYSTEM}}]
"#
    );
    Scenario::from_str_resolved(&yaml).unwrap()
}

/// A controller running in-process; stopped (gracefully) on [`Running::stop`] or drop.
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// A controller task started elsewhere, stopped by sending on `stop`.
    pub fn new(
        stop: tokio::sync::oneshot::Sender<()>,
        handle: tokio::task::JoinHandle<()>,
    ) -> Self {
        Running {
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), h).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// Everything one controller test needs.
pub struct Harness {
    pub env: TestEnv,
    pub fake: FakeCloud,
    pub id: String,
    pub policy: String,
}

impl Harness {
    /// A test namespace, CRDs, a fake cloud issuing `registry_seconds` tokens, an AccessKey
    /// Secret in the test namespace and a policy `<id>` using it (renewBefore `renew_before`).
    pub async fn new(name: &str, registry_seconds: u64, renew_before: &str) -> Harness {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let env = TestEnv::new(name).await;
        install_crds(&env.client()).await;
        let fake = FakeCloud::start(scenario(registry_seconds)).await.unwrap();
        let id = env.namespace().to_owned();
        let h = Harness {
            env,
            fake,
            policy: id.clone(),
            id,
        };
        h.env
            .apply(
                "apiVersion: v1\nkind: Secret\nmetadata: {name: alibaba-ak}\nstringData: {AccessKeyId: LTAIctrl, AccessKeySecret: ctrlsecret}\n",
            )
            .await;
        h.add_policy(&h.policy, &format!("renewBefore: {renew_before}"))
            .await;
        h
    }

    /// Applies a policy `name` (labelled for this test's controller) whose source is the test's
    /// AccessKey Secret; `extra` is more of its spec, as YAML lines at the spec's indentation
    /// (e.g. `renewBefore: 15m`).
    pub async fn add_policy(&self, name: &str, extra: &str) {
        let extra: String = extra.lines().map(|l| format!("  {l}\n")).collect();
        self.env
            .apply(&format!(
                "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialPolicy\nmetadata:\n  name: {name}\n  labels: {{{OWNER_LABEL}: {id}}}\nspec:\n  source:\n    accessKey:\n      secretRef: {{namespace: {ns}, name: alibaba-ak}}\n{extra}",
                id = self.id,
                ns = self.env.namespace(),
            ))
            .await;
    }

    pub fn client(&self) -> Client {
        self.env.client()
    }

    pub fn handle(&self) -> FakeHandle {
        self.fake.handle()
    }

    pub fn config(&self) -> ControllerConfig {
        ControllerConfig {
            object_selector: Some(format!("{OWNER_LABEL}={}", self.id)),
            resync: Duration::from_secs(60),
            ..ControllerConfig::default()
        }
    }

    pub fn cloud(&self) -> CloudConfig {
        CloudConfig {
            endpoints: Endpoints::new("cn-hangzhou", Network::Public)
                .with_all_overridden(self.fake.base_url()),
            http: HttpConfig {
                max_attempts: 1,
                ..HttpConfig::default()
            },
            signature: SignatureStyle::V2,
        }
    }

    /// Starts the controller in-process.
    pub fn start(&self) -> Running {
        self.start_with(self.config())
    }

    /// Starts the controller in-process with a configuration of the test's choosing.
    pub fn start_with(&self, config: ControllerConfig) -> Running {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let client = self.client();
        let cloud = self.cloud();
        let handle = tokio::spawn(async move {
            runtime::run(client, config, cloud, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Running {
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    /// Runs `test` with the controller running (as [`Harness::start`] starts it) and stops it
    /// afterwards; if the test panics, dropping the controller aborts it.
    pub async fn with_controller<T>(&self, test: impl AsyncFnOnce(&Harness) -> T) -> T {
        let running = self.start();
        let out = test(self).await;
        running.stop().await;
        out
    }

    /// A name for one of this test's objects: `<test id>-<suffix>`.
    pub fn named(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.id)
    }

    /// A binding of this test's policy (see [`TestBinding`]).
    pub fn test_binding(&self) -> TestBinding {
        TestBinding::new(&self.policy)
    }

    /// Applies the binding `name` that `binding` describes, labelled for this test's controller.
    pub async fn bind(&self, name: &str, binding: &TestBinding) {
        self.binding(name, &binding.spec()).await;
    }

    /// Applies a binding named `name` (cluster-scoped, tracked for cleanup) with the given
    /// `spec` YAML (indented by four spaces), labelled for this test's controller.
    pub async fn binding(&self, name: &str, spec: &str) {
        self.env
            .apply(&format!(
                "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrRegistryBinding\nmetadata:\n  name: {name}\n  labels: {{{OWNER_LABEL}: {id}}}\nspec:\n{spec}",
                id = self.id
            ))
            .await;
    }

    pub fn bindings(&self) -> Api<AcrRegistryBinding> {
        Api::all(self.client())
    }

    pub fn policies(&self) -> Api<AcrCredentialPolicy> {
        Api::all(self.client())
    }

    pub fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client(), ns)
    }

    pub fn service_accounts(&self, ns: &str) -> Api<ServiceAccount> {
        Api::namespaced(self.client(), ns)
    }

    /// A kubeconfig for ServiceAccount `sa` of `ns` (its token Secret, which Kubernetes 1.20
    /// creates), at the admin kubeconfig's server.
    pub async fn service_account_kubeconfig(&self, ns: &str, sa: &str) -> std::path::PathBuf {
        let admin_path = support::cluster().kubeconfig.clone().unwrap();
        let admin: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&admin_path).unwrap()).unwrap();
        let cluster = &admin["clusters"][0]["cluster"];
        let sas: Api<ServiceAccount> = Api::namespaced(self.client(), ns);
        let secret_name = support::wait_until(Duration::from_secs(60), "token Secret", || {
            let sas = sas.clone();
            async move {
                sas.get(sa)
                    .await
                    .ok()
                    .and_then(|s| s.secrets)
                    .and_then(|s| s.first().and_then(|r| r.name.clone()))
            }
        })
        .await;
        let secret = self.secrets(ns).get(&secret_name).await.unwrap();
        let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
        let config = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": {
                "server": cluster["server"].as_str().unwrap(),
                "certificate-authority-data": cluster["certificate-authority-data"].as_str().unwrap(),
            }}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        });
        let path = std::env::temp_dir().join(format!("{}-{sa}.kubeconfig", self.id));
        std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
        path
    }

    /// Waits until the binding's Ready condition has `status`, and returns the binding.
    pub async fn wait_ready(
        &self,
        name: &str,
        status: &str,
        timeout: Duration,
    ) -> AcrRegistryBinding {
        self.wait_ready_reason(name, status, None, timeout).await
    }

    /// Waits until the binding is Ready and its status counts `summary` namespaces synced
    /// (`"1/1"`): the binding's pass after a namespace change may follow the namespace pass by up
    /// to the throttle's period.
    pub async fn wait_summary(
        &self,
        name: &str,
        summary: &str,
        timeout: Duration,
    ) -> AcrRegistryBinding {
        let api = self.bindings();
        let what = format!("binding {name} Ready with {summary} namespaces");
        support::wait_until(timeout, &what, || {
            let api = api.clone();
            let name = name.to_owned();
            let summary = summary.to_owned();
            async move {
                let b = api.get(&name).await.map_err(|e| e.to_string())?;
                let status = b.status.as_ref();
                let ready = status
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                    .is_some_and(|c| c.status == "True");
                let seen = status
                    .and_then(|s| s.namespaces.as_ref())
                    .and_then(|n| n.summary.clone());
                match ready && seen.as_deref() == Some(summary.as_str()) {
                    true => Ok(b),
                    false => Err(format!("ready {ready}, summary {seen:?}")),
                }
            }
        })
        .await
    }

    /// Waits until the binding's Ready condition has `status` (and `reason`, when given: a
    /// degraded binding is Ready=True too, with another reason).
    pub async fn wait_ready_reason(
        &self,
        name: &str,
        status: &str,
        reason: Option<&str>,
        timeout: Duration,
    ) -> AcrRegistryBinding {
        let api = self.bindings();
        let what = format!("binding {name} Ready={status} {}", reason.unwrap_or(""));
        support::wait_until(timeout, &what, || {
            let api = api.clone();
            let name = name.to_owned();
            let status = status.to_owned();
            let reason = reason.map(str::to_owned);
            async move {
                let b = api.get(&name).await.map_err(|e| e.to_string())?;
                let conds = b
                    .status
                    .as_ref()
                    .map(|s| s.conditions.clone())
                    .unwrap_or_default();
                match conds.iter().find(|c| c.type_ == "Ready") {
                    Some(c)
                        if c.status == status && reason.as_ref().is_none_or(|r| *r == c.reason) =>
                    {
                        Ok(b)
                    }
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await
    }
}

/// The binding's `Ready` condition (it must have one).
pub fn ready_condition(binding: &AcrRegistryBinding) -> Condition {
    binding
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .cloned()
        .unwrap_or_else(|| panic!("binding {} has no Ready condition", binding.name_any()))
}

/// The `auths` of a pull Secret: domain → (username, password, auth).
pub fn auths(secret: &Secret) -> BTreeMap<String, (String, String, String)> {
    let bytes = &secret.data.as_ref().unwrap()[".dockerconfigjson"].0;
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    doc["auths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(d, a)| {
            (
                d.clone(),
                (
                    a["username"].as_str().unwrap().to_owned(),
                    a["password"].as_str().unwrap().to_owned(),
                    a["auth"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

/// Names in a ServiceAccount's imagePullSecrets, in order.
pub fn pull_secret_names(sa: &ServiceAccount) -> Vec<String> {
    sa.image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect()
}

/// Waits for the Secret in `ns` and returns it.
pub async fn wait_secret(api: &Api<Secret>, what: &str, check: impl Fn(&Secret) -> bool) -> Secret {
    support::wait_until(Duration::from_secs(60), what, || {
        let api = api.clone();
        let check = &check;
        async move {
            match api.get_opt(SECRET_NAME).await {
                Ok(Some(s)) if check(&s) => Ok(s),
                Ok(Some(_)) => Err("present, but not as expected".to_owned()),
                Ok(None) => Err("absent".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
}

/// Waits until the ServiceAccount `name` in `ns` satisfies `check`.
pub async fn wait_sa(
    api: &Api<ServiceAccount>,
    name: &str,
    what: &str,
    check: impl Fn(&ServiceAccount) -> bool,
) -> ServiceAccount {
    support::wait_until(Duration::from_secs(60), what, || {
        let api = api.clone();
        let check = &check;
        async move {
            match api.get_opt(name).await {
                Ok(Some(sa)) if check(&sa) => Ok(sa),
                Ok(Some(sa)) => Err(format!("{:?}", pull_secret_names(&sa))),
                Ok(None) => Err("absent".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
}

/// A test binding's spec, said the way a test thinks of it (registry, policy, which namespaces,
/// which ServiceAccounts) and written as the YAML the API server gets: the Enterprise instance
/// [`INSTANCE`] (no region) and the default ServiceAccount unless a test says otherwise.
#[derive(Clone, Debug)]
pub struct TestBinding {
    instance: String,
    region: Option<String>,
    policy: String,
    namespaces: String,
    service_accounts: Option<String>,
}

impl TestBinding {
    /// A binding of `policy` to [`INSTANCE`] that selects no namespace yet.
    pub fn new(policy: &str) -> Self {
        TestBinding {
            instance: INSTANCE.to_owned(),
            region: None,
            policy: policy.to_owned(),
            namespaces: "{}".to_owned(),
            service_accounts: None,
        }
    }

    /// Another Enterprise instance.
    pub fn instance(mut self, id: &str) -> Self {
        self.instance = id.to_owned();
        self
    }

    /// The instance's region, written out.
    pub fn region(mut self, region: &str) -> Self {
        self.region = Some(region.to_owned());
        self
    }

    /// Namespaces by name.
    pub fn names(mut self, names: &[&str]) -> Self {
        self.namespaces = format!("{{names: [{}]}}", names.join(", "));
        self
    }

    /// Namespaces labelled `key: value`.
    pub fn labelled(mut self, key: &str, value: &str) -> Self {
        self.namespaces = format!("{{selector: {{matchLabels: {{{key}: {value}}}}}}}");
        self
    }

    /// Every namespace except `excluded`.
    pub fn all_except(mut self, excluded: &[&str]) -> Self {
        self.namespaces = format!("{{all: true, exclude: [{}]}}", excluded.join(", "));
        self
    }

    /// The `namespaces` selection as written (for selections the schema would refuse).
    pub fn namespaces_as_written(mut self, yaml: &str) -> Self {
        self.namespaces = yaml.to_owned();
        self
    }

    /// Every ServiceAccount of the selected namespaces.
    pub fn all_service_accounts(mut self) -> Self {
        self.service_accounts = Some("{all: true}".to_owned());
        self
    }

    /// ServiceAccounts labelled `key: value`.
    pub fn service_accounts_labelled(mut self, key: &str, value: &str) -> Self {
        self.service_accounts = Some(format!("{{selector: {{matchLabels: {{{key}: {value}}}}}}}"));
        self
    }

    /// The spec as YAML lines indented by two spaces, for [`Harness::binding`].
    pub fn spec(&self) -> String {
        let region = self
            .region
            .as_ref()
            .map(|r| format!(", region: {r}"))
            .unwrap_or_default();
        let mut spec = format!(
            "  registry: {{instanceId: {}{region}}}\n  policyRef: {{name: {}}}\n  namespaces: {}\n",
            self.instance, self.policy, self.namespaces
        );
        if let Some(sa) = &self.service_accounts {
            spec.push_str(&format!("  serviceAccounts: {sa}\n"));
        }
        spec
    }
}
