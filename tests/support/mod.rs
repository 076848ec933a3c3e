//! Shared harness for integration tests against a real Kubernetes API server.
//!
//! By default it uses the project's local control plane (`scripts/cluster.sh up`, started on first
//! use and shared by every test; its kubeconfig is `.cluster/kubeconfig`). With
//! `USE_EXISTING_CLUSTER=true` it uses the cluster your `KUBECONFIG` (or `~/.kube/config`) points
//! at instead, e.g. kind, k3d or a real cluster.
//!
//! Each [`TestEnv`] owns one or more fresh, randomly named namespaces and any cluster-scoped objects
//! it was told to track; all of them are deleted when it is dropped, also when the test panics.
//! Set `ACC_KEEP_TEST_OBJECTS=true` to keep them for debugging.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Display;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

use acr_credential_controller::api::crd;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, Config, Resource, ResourceExt};
use rand::Rng;
use serde::Deserialize;

/// Field manager used for everything the harness applies.
pub const FIELD_MANAGER: &str = "acr-credential-controller-tests";
/// Label put on every namespace the harness creates.
pub const TEST_LABEL: &str = "acrcredentials.io/test";

/// Where the cluster is, decided once per test process.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// The kubeconfig file to use; `None` means the client's default discovery (existing cluster).
    pub kubeconfig: Option<PathBuf>,
    /// True when running against the project's own local control plane.
    pub local: bool,
}

/// The repository root (where `Cargo.toml` is).
/// Read at run time first: `cargo test` sets it for the test process, and a binary reused
/// from a shared target directory may have been compiled in another checkout, whose path
/// `env!` would have baked in (it would then start that checkout's control plane).
pub fn repo_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
    })
}

fn env_true(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"))
}

/// The cluster every test in this process uses; starts the local control plane if needed.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let result = CLUSTER.get_or_init(|| {
        if env_true("USE_EXISTING_CLUSTER") {
            return Ok(Cluster {
                kubeconfig: std::env::var_os("KUBECONFIG").map(PathBuf::from),
                local: false,
            });
        }
        let script = repo_root().join("scripts/cluster.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("up")
            .output()
            .map_err(|e| format!("could not run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`scripts/cluster.sh up` failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let dir = std::env::var_os("ACC_CLUSTER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".cluster"));
        Ok(Cluster {
            kubeconfig: Some(dir.join("kubeconfig")),
            local: true,
        })
    });
    match result {
        Ok(c) => c,
        Err(e) => panic!("no Kubernetes API server for the integration tests: {e}"),
    }
}

/// A new client for the test cluster. Clients are cheap; make one per runtime.
pub async fn client() -> Client {
    Client::try_from(config().await).expect("building a Kubernetes client")
}

/// A client for the test cluster acting as `user` (impersonated; a user no RBAC names may do
/// nothing at all).
pub async fn client_as(user: &str) -> Client {
    let mut config = config().await;
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).expect("building a Kubernetes client")
}

async fn config() -> Config {
    let cluster = cluster();
    match &cluster.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap_or_else(|e| panic!("loading kubeconfig {}: {e}", path.display()))
        }
        None => Config::infer()
            .await
            .unwrap_or_else(|e| panic!("no kubeconfig for USE_EXISTING_CLUSTER: {e}")),
    }
}

/// Runs `kubectl` against the test cluster and returns its output (never panics on exit status).
pub fn kubectl(args: &[&str]) -> Output {
    let mut cmd = Command::new("kubectl");
    if let Some(path) = &cluster().kubeconfig {
        cmd.env("KUBECONFIG", path);
    }
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run kubectl {args:?}: {e}"))
}

/// A DNS-label-safe random suffix.
pub fn random_suffix(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// A unique, valid object name starting with `acc-<slug>-`.
pub fn unique_name(slug: &str) -> String {
    let slug: String = slug
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let slug = slug.trim_matches('-');
    let slug = &slug[..slug.len().min(40)];
    format!("acc-{}-{}", slug.trim_end_matches('-'), random_suffix(6))
}

/// Something a test waits for: `Some`/`Ok` ends the wait, `None`/`Err` describes what was seen.
pub trait Observation<T> {
    fn into_observation(self) -> Result<T, String>;
}

impl<T> Observation<T> for Option<T> {
    fn into_observation(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet".to_string())
    }
}

impl<T, E: Display> Observation<T> for Result<T, E> {
    fn into_observation(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Polls `check` every 100 ms until it yields a value; panics after `timeout` with `what` and the
/// last observation, so a failing test says what it was waiting for and what it saw instead.
pub async fn wait_until<T, O, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    O: Observation<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let start = Instant::now();
    loop {
        let last = match check().await.into_observation() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last observed: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Server-side applies every document of a multi-document YAML string and returns the results.
/// Namespaced objects without a namespace go to `default_namespace` (or `default`).
pub async fn apply_yaml_in(
    client: &Client,
    default_namespace: Option<&str>,
    yaml: &str,
) -> Vec<DynamicObject> {
    let mut applied = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(document).expect("parsing YAML document");
        if value.is_null() {
            continue;
        }
        let mut object: DynamicObject =
            serde_yaml::from_value(value).expect("YAML document is not a Kubernetes object");
        let types = object
            .types
            .clone()
            .expect("object without apiVersion/kind");
        let gvk = GroupVersionKind::try_from(&types).expect("bad apiVersion");
        let (resource, caps) = pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("API server does not serve {gvk:?}: {e}"));
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = object
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| default_namespace.unwrap_or("default").to_string());
                object.metadata.namespace = Some(ns.clone());
                Api::namespaced_with(client.clone(), &ns, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let name = object.name_any();
        let result = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {} {name}: {e}", gvk.kind));
        applied.push(result);
    }
    applied
}

/// [`apply_yaml_in`] with namespaced objects defaulting to `default`.
pub async fn apply_yaml(client: &Client, yaml: &str) -> Vec<DynamicObject> {
    apply_yaml_in(client, None, yaml).await
}

/// Something to delete when the test ends.
#[derive(Clone, Debug)]
struct Tracked {
    resource: ApiResource,
    namespace: Option<String>,
    name: String,
}

/// One test's slice of the cluster: fresh namespaces, a client, and cleanup on drop.
pub struct TestEnv {
    client: Client,
    namespace: String,
    tracked: Mutex<Vec<Tracked>>,
}

impl TestEnv {
    /// Connects (starting the local control plane if needed) and creates a fresh namespace
    /// named after the test.
    pub async fn new(test_name: &str) -> TestEnv {
        let mut env = TestEnv {
            client: client().await,
            namespace: String::new(),
            tracked: Mutex::new(Vec::new()),
        };
        env.namespace = env.create_namespace(test_name).await;
        env
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The test's own namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Creates one more fresh namespace (deleted with the env) and returns its name.
    pub async fn extra_namespace(&self, slug: &str) -> String {
        self.create_namespace(slug).await
    }

    async fn create_namespace(&self, slug: &str) -> String {
        let name = unique_name(slug);
        self.labelled_namespace(&name, serde_json::json!({TEST_LABEL: "true"}))
            .await
    }

    /// Creates namespace `name` with `labels` (a JSON object) and deletes it with the env;
    /// returns its name.
    pub async fn labelled_namespace(&self, name: &str, labels: serde_json::Value) -> String {
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels},
        }))
        .expect("namespace object");
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        self.track_cluster_object::<Namespace>(name);
        name.to_owned()
    }

    /// Deletes the cluster-scoped object `name` of kind `K` when the env is dropped.
    pub fn track_cluster_object<K>(&self, name: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        self.track(ApiResource::erase::<K>(&()), None, name);
    }

    /// Deletes an object of any kind (given as an [`ApiResource`]) when the env is dropped.
    pub fn track(&self, resource: ApiResource, namespace: Option<&str>, name: &str) {
        self.tracked.lock().expect("tracked list").push(Tracked {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        });
    }

    /// Applies YAML (namespaced objects default to this env's namespace) and tracks every
    /// cluster-scoped object it created, so it is deleted with the env.
    pub async fn apply(&self, yaml: &str) -> Vec<DynamicObject> {
        let applied = apply_yaml_in(&self.client, Some(&self.namespace), yaml).await;
        for object in &applied {
            if object.metadata.namespace.is_none() {
                let types = object.types.clone().expect("applied object has types");
                let gvk = GroupVersionKind::try_from(&types).expect("apiVersion");
                let (resource, _) = pinned_kind(&self.client, &gvk).await.expect("kind");
                self.track(resource, None, &object.name_any());
            }
        }
        applied
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let tracked = std::mem::take(&mut *self.tracked.lock().unwrap_or_else(|e| e.into_inner()));
        if tracked.is_empty() || env_true("ACC_KEEP_TEST_OBJECTS") {
            return;
        }
        // Drop cannot be async and may run inside a runtime: clean up on a thread of its own.
        let joined = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async move {
                let client = client().await;
                // Newest first, so dependants go before what they depend on.
                for item in tracked.into_iter().rev() {
                    delete_tracked(&client, &item).await;
                }
            });
        })
        .join();
        if joined.is_err() {
            eprintln!("test cleanup panicked; some objects may be left in the cluster");
        }
    }
}

async fn delete_tracked(client: &Client, item: &Tracked) {
    let api: Api<DynamicObject> = match &item.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &item.resource),
        None => Api::all_with(client.clone(), &item.resource),
    };
    match api.delete(&item.name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return,
        Err(e) => eprintln!(
            "cleanup: deleting {} {}: {e}",
            item.resource.kind, item.name
        ),
    }
    // A finalizer whose controller has already stopped would keep the object forever.
    if item.resource.kind != "Namespace" {
        let strip = serde_json::json!({"metadata": {"finalizers": null}});
        let _ = api
            .patch(&item.name, &PatchParams::default(), &Patch::Merge(&strip))
            .await;
    }
}

/// Whether the server evaluates CRD CEL rules (Kubernetes 1.25 and later).
pub async fn server_has_cel(client: &Client) -> bool {
    let v = client.apiserver_version().await.unwrap();
    let digits = |s: &str| {
        s.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    };
    let (major, minor): (u32, u32) = (
        digits(&v.major).parse().unwrap_or(0),
        digits(&v.minor).parse().unwrap_or(0),
    );
    (major, minor) >= (1, 25)
}

/// Installs both CRDs once per test process and waits until they are served. Server-side
/// apply with a fixed field manager makes this idempotent and safe when several test
/// processes install at the same time; the CRDs are shared and never deleted by tests.
pub async fn install_crds(client: &Client) -> bool {
    static INSTALLED: OnceCell<bool> = OnceCell::const_new();
    *INSTALLED
        .get_or_init(|| async {
            let cel = server_has_cel(client).await;
            let crds = if cel {
                crd::crds()
            } else {
                // Kubernetes < 1.25: no CEL in CRDs (see the module comment).
                crd::crds_without_cel()
            };
            let api: Api<CustomResourceDefinition> = Api::all(client.clone());
            for c in &crds {
                let name = c.metadata.name.clone().unwrap();
                api.patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(c),
                )
                .await
                .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
            }
            for c in &crds {
                let name = c.metadata.name.clone().unwrap();
                wait_until(
                    Duration::from_secs(60),
                    &format!("CRD {name} Established"),
                    || async {
                        let crd = api.get(&name).await.ok()?;
                        crd.status?
                            .conditions?
                            .iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                            .then_some(())
                    },
                )
                .await;
            }
            cel
        })
        .await
}
