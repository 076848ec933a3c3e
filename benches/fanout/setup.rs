//! The benchmark's world: the fake cloud, N selected and N floor namespaces with their
//! `default` ServiceAccounts, the credential policy, the binding, and the controller process.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acr_credential_controller::model::secret;
use acr_credential_controller::sensitive::Sensitive;
use acr_fake_cloud::{FakeCloud, Scenario};
use base64::Engine;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;

use crate::report::Memory;
use crate::{Params, log};

pub const SECRET_NAME: &str = "acr-credentials";
/// The Secret of the reference floor by server-side apply, beside the others in each floor
/// namespace (the reference by POST writes [`SECRET_NAME`], so the controller caches a
/// same-named Secret that is not its own in every floor namespace).
pub const APPLY_FLOOR_SECRET_NAME: &str = "acr-credentials-apply";
/// The floor's second run, writing the controller's objects again (one run of the floor varies
/// by more than the fan-out goal's margin, so the floor is the mean of two).
pub const REPEAT_FLOOR_SECRET_NAME: &str = "acr-credentials-again";
/// The floor's first run, writing the controller's exact objects.
pub const LIKE_FLOOR_SECRET_NAME: &str = "acr-credentials-like";
/// A reference run of the controller's exact objects whose Secrets the benchmark does not watch
/// (it watches every other floor run's, as it watches the fan-out's): what watching costs.
pub const UNWATCHED_FLOOR_SECRET_NAME: &str = "acr-credentials-unwatched";
/// The floor runs' Secrets, watched by the benchmark as the fan-out's are.
pub const WATCHED_FLOOR_SECRET_NAMES: [&str; 3] = [
    LIKE_FLOOR_SECRET_NAME,
    REPEAT_FLOOR_SECRET_NAME,
    APPLY_FLOOR_SECRET_NAME,
];
const SYSTEM_NS: &str = "acc-bench-system";
const UNRELATED_NS: &str = "acc-bench-unrelated";
const LABEL: &str = "acc-bench";
const INSTANCE: &str = "cri-bench0000000001";
const ACCOUNT: &str = "1234567890123456";
const POLICY: &str = "bench";
const BINDING: &str = "bench";

/// The fake's default domains for the benchmark's instance (internet and VPC): the controller
/// writes an auth for each.
const DOMAINS: [&str; 2] = [
    "bench-registry.cn-hangzhou.cr.aliyuncs.com",
    "bench-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
];

/// The dockerconfigjson the controller writes, built by the controller's own function over the
/// instance's two domains, with a token of the fake's form and length (its claims in base64url,
/// a colon, 40 hex digits). The floor writes this, so both write the same bytes; the report
/// compares its size with a Secret the controller wrote.
pub fn sample_payload() -> Vec<u8> {
    let claims = json!({
        "instanceId": INSTANCE,
        "time": jiff::Timestamp::now().as_millisecond().to_string(),
        "type": "sub",
        "userId": ACCOUNT,
    });
    let token = format!(
        "{}:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string()),
        "0".repeat(40)
    );
    secret::docker_config_json(&[secret::Contribution {
        binding: BINDING.into(),
        binding_uid: String::new(),
        domains: DOMAINS.iter().map(|d| d.to_string()).collect(),
        username: "cr_temp_user".into(),
        password: Sensitive::new(token),
        expires_at: jiff::Timestamp::now(),
    }])
}

/// How long the fake's registry tokens live: the policy's `renewBefore` (3 minutes) plus time
/// for the fan-out and the steady-state window to end before the first renewal, and for the
/// renewal wave and the new namespaces to end before the next: 60 s plus 30 ms per namespace
/// (1,000 → 90 s, 5,000 → 210 s, 10,000 → 360 s), plus half of `renewBefore` (90 s), the
/// window a paced wave is spread over. With a fixed 60 s, the 5,000-namespace fan-out pushed the
/// steady-state window into the renewal, and each phase measured a piece of another; 20 ms per
/// namespace left too little for the four floor runs at 10,000.
fn token_seconds(namespaces: usize) -> u64 {
    180 + 60 + 90 + (namespaces as u64) * 3 / 100
}

/// The policy's `renewBefore`, in seconds (see [`token_seconds`]).
pub const RENEW_BEFORE_SECONDS: i64 = 180;

fn scenario(namespaces: usize) -> Scenario {
    let seconds = token_seconds(namespaces);
    Scenario::from_str_resolved(&format!(
        r#"
region: cn-hangzhou
lifetimes: {{registrySeconds: {seconds}}}
accounts:
  - id: "{ACCOUNT}"
    accessKeys: [{{id: LTAIbenchkey, secret: benchsecret}}]
    instances:
      - id: {INSTANCE}
        name: bench
        region: cn-hangzhou
"#
    ))
    .expect("bench scenario")
}

pub struct World {
    pub client: Client,
    pub fanout_namespaces: Vec<String>,
    pub floor_namespaces: Vec<String>,
    pub fake: FakeCloud,
    pub kubeconfig: PathBuf,
}

/// A client of its own (its own connection pool) for the cluster `path` names.
pub async fn client(path: &PathBuf) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("reading KUBECONFIG");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    config.read_timeout = Some(Duration::from_secs(300));
    Client::try_from(config).expect("client")
}

async fn create_namespaces(client: &Client, names: &[String], label: &str, concurrency: usize) {
    let api: Api<Namespace> = Api::all(client.clone());
    stream::iter(names.iter().cloned())
        .for_each_concurrent(concurrency, |name| {
            let api = api.clone();
            async move {
                let ns: Namespace = serde_json::from_value(
                    json!({"metadata": {"name": name, "labels": {LABEL: label}}}),
                )
                .expect("namespace");
                if let Err(e) = api.create(&PostParams::default(), &ns).await {
                    panic!("creating namespace {name}: {e}");
                }
            }
        })
        .await;
}

impl World {
    pub async fn prepare(params: &Params) -> World {
        let kubeconfig =
            PathBuf::from(std::env::var("KUBECONFIG").expect("KUBECONFIG must be set"));
        let client = client(&kubeconfig).await;
        let fake = FakeCloud::start(scenario(params.namespaces))
            .await
            .expect("fake cloud");
        let n = params.namespaces;
        let fanout: Vec<String> = (0..n).map(|i| format!("acc-bench-f{i:05}")).collect();
        let floor: Vec<String> = (0..n).map(|i| format!("acc-bench-floor{i:05}")).collect();
        log(&format!("creating {} namespaces", 2 * n + 2));
        create_namespaces(
            &client,
            &[SYSTEM_NS.into(), UNRELATED_NS.into()],
            "system",
            2,
        )
        .await;
        create_namespaces(&client, &fanout, "fanout", 4 * params.concurrency).await;
        create_namespaces(&client, &floor, "floor", 4 * params.concurrency).await;

        // Both the controller and the floor client start when every `default` ServiceAccount
        // exists and the token controller has finished with it (it writes each one once).
        let sas: Api<ServiceAccount> = Api::all(client.clone());
        let wanted: HashSet<&String> = fanout.iter().chain(floor.iter()).collect();
        // kube-controller-manager writes three objects per namespace (the ServiceAccount, its
        // token Secret, the ServiceAccount again): 10 minutes, or 50 ms per namespace beyond.
        let deadline = Instant::now() + Duration::from_secs(600.max(2 * n as u64 / 20));
        loop {
            let list = sas
                .list(&ListParams::default().fields("metadata.name=default"))
                .await
                .expect("listing ServiceAccounts");
            let ready = list
                .items
                .iter()
                .filter(|sa| {
                    wanted.contains(&sa.namespace().unwrap_or_default())
                        && sa.secrets.as_ref().is_some_and(|s| !s.is_empty())
                })
                .count();
            if ready == wanted.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {ready} of {} ServiceAccounts ready",
                wanted.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "bench-access-key"},
            "stringData": {"AccessKeyId": "LTAIbenchkey", "AccessKeySecret": "benchsecret"},
        }))
        .expect("secret");
        Api::<Secret>::namespaced(client.clone(), SYSTEM_NS)
            .create(&PostParams::default(), &secret)
            .await
            .expect("creating the AccessKey Secret");
        apply(
            &client,
            json!({
                "apiVersion": "acrcredentials.io/v1alpha1",
                "kind": "AcrCredentialPolicy",
                "metadata": {"name": POLICY},
                "spec": {
                    "source": {"accessKey": {"secretRef": {"namespace": SYSTEM_NS, "name": "bench-access-key"}}},
                    // RENEW_BEFORE_SECONDS
                    "renewBefore": "3m",
                },
            }),
        )
        .await;
        World {
            client,
            fanout_namespaces: fanout,
            floor_namespaces: floor,
            fake,
            kubeconfig,
        }
    }

    /// Starts the release controller binary against this cluster and the fake cloud, with the
    /// environment its image sets (see [`image_environment`]) and `--write-budget`
    /// `write_budget` when given (its default otherwise).
    pub fn start_controller(&self, write_budget: Option<&str>) -> Controller {
        let binary = std::env::var("ACC_BENCH_CONTROLLER")
            .expect("ACC_BENCH_CONTROLLER must name the controller binary");
        let base = self
            .fake
            .base_url()
            .as_str()
            .trim_end_matches('/')
            .to_string();
        let child = Command::new(binary)
            .envs(image_environment())
            .arg("run")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--region")
            .arg("cn-hangzhou")
            .arg("--cloud-endpoint")
            .arg(&base)
            // A free loopback port: other controllers may run on this machine.
            .args(["--probe-address", "127.0.0.1:0"])
            .args(write_budget.map(|b| format!("--write-budget={b}")))
            // ACC_BENCH_RUST_LOG: a finer level, to see where the time goes.
            .env(
                "RUST_LOG",
                std::env::var("ACC_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the controller");
        Controller { child }
    }

    /// An owner reference to the benchmark's policy: cluster-scoped like a binding, and it
    /// exists, so the garbage collector keeps what names it.
    pub async fn policy_owner(&self) -> OwnerReference {
        let api: Api<kube::api::DynamicObject> =
            Api::all_with(self.client.clone(), &policy_resource());
        let policy = api.get(POLICY).await.expect("reading the policy");
        OwnerReference {
            api_version: "acrcredentials.io/v1alpha1".into(),
            kind: "AcrCredentialPolicy".into(),
            name: POLICY.into(),
            uid: policy.metadata.uid.expect("the policy's uid"),
            controller: Some(false),
            block_owner_deletion: None,
        }
    }

    pub async fn wait_policy_ready(&self) {
        let api: Api<kube::api::DynamicObject> =
            Api::all_with(self.client.clone(), &policy_resource());
        let start = Instant::now();
        loop {
            if let Ok(p) = api.get(POLICY).await
                && ready(&p.data)
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "policy not Ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn apply_binding(&self) {
        apply(
            &self.client,
            json!({
                "apiVersion": "acrcredentials.io/v1alpha1",
                "kind": "AcrRegistryBinding",
                "metadata": {"name": BINDING},
                "spec": {
                    "registry": {"instanceId": INSTANCE, "region": "cn-hangzhou"},
                    "policyRef": {"name": POLICY},
                    "namespaces": {"selector": {"matchLabels": {LABEL: "fanout"}}},
                    "serviceAccounts": {"names": ["default"]},
                },
            }),
        )
        .await;
    }

    /// Every request the fake cloud has answered so far.
    pub fn cloud_calls(&self) -> usize {
        self.fake.handle().log().len()
    }

    /// The size of the dockerconfigjson in `namespace`'s pull Secret (0 without one).
    pub async fn payload_bytes(&self, namespace: &str) -> usize {
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(SECRET_NAME)
            .await
            .expect("reading a pull Secret")
            .and_then(|s| s.data)
            .and_then(|d| d.get(secret::DOCKER_CONFIG_KEY).map(|b| b.0.len()))
            .unwrap_or(0)
    }

    /// The binding's `status.token.renewAt`.
    pub async fn renew_at(&self) -> jiff::Timestamp {
        self.renew_at_if_known()
            .await
            .expect("status.token.renewAt")
    }

    /// The binding's `status.token.renewAt`, if its status says yet.
    pub async fn renew_at_if_known(&self) -> Option<jiff::Timestamp> {
        let api: Api<kube::api::DynamicObject> =
            Api::all_with(self.client.clone(), &binding_resource());
        let b = api.get(BINDING).await.ok()?;
        b.data["status"]["token"]["renewAt"]
            .as_str()
            .and_then(|s| s.parse().ok())
    }

    /// Creates `new_namespaces` selected namespaces at `rate` per second; returns each name with
    /// the instant its creation was acknowledged.
    pub async fn create_namespaces_at_rate(&self, params: &Params) -> Vec<(String, Instant)> {
        let interval = Duration::from_secs_f64(1.0 / params.rate);
        self.create_namespaces_paced("new", params.new_namespaces, interval)
            .await
    }

    /// Creates `count` selected namespaces named `acc-bench-<prefix>NNNNN`, one every
    /// `interval`; returns each name with the instant its creation was acknowledged.
    pub async fn create_namespaces_paced(
        &self,
        prefix: &str,
        count: usize,
        interval: Duration,
    ) -> Vec<(String, Instant)> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let mut ticker = tokio::time::interval(interval);
        let mut created = Vec::new();
        for i in 0..count {
            ticker.tick().await;
            let name = format!("acc-bench-{prefix}{i:05}");
            let ns: Namespace = serde_json::from_value(
                json!({"metadata": {"name": name, "labels": {LABEL: "fanout"}}}),
            )
            .expect("namespace");
            api.create(&PostParams::default(), &ns)
                .await
                .expect("creating a namespace");
            created.push((name, Instant::now()));
        }
        created
    }

    /// `unrelated_secrets` Secrets of 1 KiB each, none of them the controller's business.
    pub async fn create_unrelated_secrets(&self, params: &Params) {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), UNRELATED_NS);
        let filler = "u".repeat(1024);
        stream::iter(0..params.unrelated_secrets)
            .for_each_concurrent(4 * params.concurrency, |i| {
                let api = api.clone();
                let filler = filler.clone();
                async move {
                    let s: Secret = serde_json::from_value(json!({
                        "metadata": {"name": format!("unrelated-{i:06}")},
                        "stringData": {"filler": filler},
                    }))
                    .expect("secret");
                    api.create(&PostParams::default(), &s)
                        .await
                        .expect("creating an unrelated Secret");
                }
            })
            .await;
    }
}

fn policy_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::erase::<acr_credential_controller::api::AcrCredentialPolicy>(&())
}

fn binding_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::erase::<acr_credential_controller::api::AcrRegistryBinding>(&())
}

fn ready(data: &serde_json::Value) -> bool {
    data["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

async fn apply(client: &Client, object: serde_json::Value) {
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let resource = if kind == "AcrCredentialPolicy" {
        policy_resource()
    } else {
        binding_resource()
    };
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
    api.patch(
        &name,
        &PatchParams::apply("acc-bench").force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
}

/// The controller as a child process.
pub struct Controller {
    child: Child,
}

impl Controller {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Current and peak resident memory, from `/proc/<pid>/status`.
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `ENV` lines of the controller's `Containerfile`: the benchmark runs the binary as the
/// image runs it (`MALLOC_ARENA_MAX` changes its memory), and reading them here keeps the two
/// from drifting apart.
pub fn image_environment() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Containerfile");
    let text = std::fs::read_to_string(path).expect("reading the Containerfile");
    text.lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .expect("ENV lines in the Containerfile are KEY=value");
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// How many objects of each kind the controller's caches hold (all namespaces, all
/// ServiceAccounts, every Secret named [`SECRET_NAME`]).
pub struct Cached {
    pub namespaces: usize,
    pub service_accounts: usize,
    pub secrets: usize,
}

/// Counts what the controller caches, from the API server (metadata lists).
pub async fn cached_counts(client: &Client) -> Cached {
    use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
    use kube::api::ListParams;
    let all = ListParams::default();
    let named = ListParams::default().fields(&format!("metadata.name={SECRET_NAME}"));
    Cached {
        namespaces: count::<Namespace>(client, &all).await,
        service_accounts: count::<ServiceAccount>(client, &all).await,
        secrets: count::<Secret>(client, &named).await,
    }
}

async fn count<K>(client: &Client, params: &kube::api::ListParams) -> usize
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    kube::Api::<K>::all(client.clone())
        .list_metadata(params)
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
}
