//! Shared parts of the fault scenarios: scale, the row each scenario records, the controller
//! binary as a child process (JSON logs kept, probe port known), and small readers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

use crate::controller_common::{Harness, INSTANCE, OWNER_LABEL};
use crate::support;

/// True under `scripts/faults.sh` (full durations and sizes); false in the test suite.
pub fn full() -> bool {
    std::env::var("ACC_FAULTS_FULL").is_ok_and(|v| v == "true" || v == "1")
}

/// `fast` in the test suite, `full` under `scripts/faults.sh`.
pub fn scale<T>(fast: T, full_value: T) -> T {
    if full() { full_value } else { fast }
}

/// One row of the table. `order` is the scenario's place in the table.
pub struct Row {
    pub order: u32,
    pub scenario: &'static str,
    pub injected: String,
    pub figure: String,
    pub pass: bool,
    /// What failed, when something did.
    pub problems: Vec<String>,
}

impl Row {
    pub fn new(order: u32, scenario: &'static str, injected: impl Into<String>) -> Row {
        Row {
            order,
            scenario,
            injected: injected.into(),
            figure: String::new(),
            pass: true,
            problems: Vec::new(),
        }
    }

    /// Records a condition that must hold.
    pub fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.pass = false;
            self.problems.push(problem());
        }
    }

    /// Appends the row to `ACC_FAULTS_ROWS` (when set), prints it, and fails the test if a
    /// check failed.
    pub fn finish(self) {
        let line = serde_json::json!({
            "order": self.order,
            "scenario": self.scenario,
            "injected": self.injected,
            "figure": self.figure,
            "pass": self.pass,
            "problems": self.problems,
        });
        eprintln!("[faults] {line}");
        if let Some(path) = std::env::var_os("ACC_FAULTS_ROWS") {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("opening ACC_FAULTS_ROWS");
            writeln!(f, "{line}").expect("writing a row");
        }
        assert!(
            self.pass,
            "{}: {}\nfigure: {}",
            self.scenario,
            self.problems.join("\n"),
            self.figure
        );
    }
}

/// `p`-th percentile (0..=1) of `samples` in milliseconds, nearest rank.
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort();
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1].as_secs_f64() * 1000.0
}

/// The controller binary as a child process.
pub struct Controller {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    pub probe: String,
}

/// Options for starting the controller.
pub struct Start<'a> {
    pub kubeconfig: Option<&'a Path>,
    pub rust_log: &'a str,
    pub extra: Vec<String>,
}

impl Default for Start<'_> {
    fn default() -> Self {
        Start {
            kubeconfig: None,
            rust_log: "info",
            extra: Vec::new(),
        }
    }
}

impl Controller {
    /// `acr-credential-controller run` for the harness's objects: the binary named by
    /// `ACC_FAULTS_CONTROLLER` (the release build under `scripts/faults.sh`) or this build's.
    pub async fn start(h: &Harness, opts: Start<'_>) -> Controller {
        let default_kubeconfig = support::cluster()
            .kubeconfig
            .clone()
            .expect("the fault scenarios need the local control plane");
        let binary = std::env::var("ACC_FAULTS_CONTROLLER")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_acr-credential-controller").to_owned());
        let mut child = Command::new(binary)
            .args(["run", "--log-format", "json"])
            .arg("--kubeconfig")
            .arg(opts.kubeconfig.unwrap_or(&default_kubeconfig))
            .args(["--cloud-endpoint", h.fake.base_url().as_str()])
            .args(["--object-selector", &format!("{OWNER_LABEL}={}", h.id)])
            .args(["--probe-address", "127.0.0.1:0"])
            .args(["--resync-seconds", "60"])
            .args(&opts.extra)
            // ACC_FAULTS_RUST_LOG overrides every scenario's level, for diagnosing one.
            .env(
                "RUST_LOG",
                std::env::var("ACC_FAULTS_RUST_LOG").unwrap_or_else(|_| opts.rust_log.to_owned()),
            )
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the controller binary");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut c = Controller {
            child,
            logs,
            probe: String::new(),
        };
        let started = Instant::now();
        loop {
            let found = c.logs.lock().unwrap().iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["fields"]["message"] == "probe and metrics server listening")
                    .then(|| v["fields"]["address"].as_str().map(str::to_owned))
                    .flatten()
            });
            if let Some(address) = found {
                c.probe = address;
                return c;
            }
            assert!(
                c.running(),
                "the controller exited at start:\n{}",
                c.log_text()
            );
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no probe address within 60 s:\n{}",
                c.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Log lines at `level` (`ERROR`, `WARN`, ...).
    pub fn lines_at(&self, level: &str) -> Vec<String> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&format!("\"level\":\"{level}\"")))
            .cloned()
            .collect()
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How it exited, if it did.
    pub fn exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.probe))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
        // ACC_FAULTS_LOG_DIR keeps each controller's whole log, for diagnosing a scenario.
        if let Ok(dir) = std::env::var("ACC_FAULTS_LOG_DIR") {
            let path = Path::new(&dir).join(format!("controller-{}.log", self.child.id()));
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(path, self.log_text());
        }
    }
}

/// A binding spec (four-space indented) for the harness's policy and `INSTANCE`.
pub fn binding_spec(h: &Harness, namespaces: &str) -> String {
    format!(
        "  registry: {{instanceId: {INSTANCE}}}\n  policyRef: {{name: {}}}\n  namespaces: {namespaces}\n  serviceAccounts: {{names: [default]}}\n",
        h.policy
    )
}

/// The registry password in a pull Secret, if it parses as one.
pub fn password(secret: &Secret) -> Option<String> {
    let bytes = &secret.data.as_ref()?.get(".dockerconfigjson")?.0;
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    doc["auths"]
        .as_object()?
        .values()
        .next()?
        .get("password")?
        .as_str()
        .map(str::to_owned)
}

/// Runs `scripts/cluster.sh ARGS` for the control plane the tests use.
pub fn cluster_sh(args: &[&str]) {
    let out = Command::new("bash")
        .arg(support::repo_root().join("scripts/cluster.sh"))
        .args(args)
        .output()
        .expect("running scripts/cluster.sh");
    assert!(
        out.status.success(),
        "scripts/cluster.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the fault scenario may stop control plane components: only on a control plane of
/// its own (`scripts/faults.sh` sets `ACC_FAULTS_OWN_CLUSTER`), never one shared with other tests.
pub fn own_cluster() -> bool {
    support::cluster().local && std::env::var("ACC_FAULTS_OWN_CLUSTER").is_ok_and(|v| v == "true")
}

/// The Ready condition's (status, reason, message) of a binding, if readable.
pub async fn ready_of(h: &Harness, name: &str) -> Option<(String, String, String)> {
    let b = h.bindings().get(name).await.ok()?;
    let c = b
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

/// Lists the pull Secrets named `name` in every namespace (name → Secret), or `None` when the
/// API server does not answer.
pub async fn list_secrets(api: &Api<Secret>, name: &str) -> Option<Vec<Secret>> {
    api.list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .await
        .ok()
        .map(|l| l.items)
}

/// Label that groups a scenario's namespaces (value: the set's name).
pub const SET_LABEL: &str = "acrcredentials.io/fault-set";

/// Creates `n` namespaces labelled `SET_LABEL=<set>` (deleted with the harness's env) and
/// waits until each has its `default` ServiceAccount with its token Secret, so the token
/// controller's own write is done before the scenario starts.
pub async fn namespace_set(h: &Harness, set: &str, n: usize) -> Vec<String> {
    use futures::StreamExt as _;
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    let names: Vec<String> = (0..n).map(|i| format!("{set}-{i:04}")).collect();
    let api: Api<Namespace> = Api::all(h.client());
    futures::stream::iter(names.clone())
        .for_each_concurrent(16, |name| {
            let api = api.clone();
            let set = set.to_owned();
            async move {
                let ns: Namespace = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "labels": {SET_LABEL: set, support::TEST_LABEL: "true"}},
                }))
                .unwrap();
                api.create(&Default::default(), &ns).await.unwrap();
            }
        })
        .await;
    for name in &names {
        h.env.track_cluster_object::<Namespace>(name);
    }
    let sas: Api<ServiceAccount> = Api::all(h.client());
    let wanted: std::collections::HashSet<&String> = names.iter().collect();
    support::wait_until(Duration::from_secs(300), "default ServiceAccounts", || {
        let sas = sas.clone();
        let wanted = &wanted;
        async move {
            let list = sas
                .list(&ListParams::default().fields("metadata.name=default"))
                .await
                .map_err(|e| e.to_string())?;
            let ready = list
                .items
                .iter()
                .filter(|sa| {
                    sa.metadata
                        .namespace
                        .as_ref()
                        .is_some_and(|n| wanted.contains(n))
                        && sa.secrets.as_ref().is_some_and(|s| !s.is_empty())
                })
                .count();
            (ready == wanted.len())
                .then_some(())
                .ok_or(format!("{ready} of {}", wanted.len()))
        }
    })
    .await;
    names
}

/// What the cluster holds for a set of namespaces right now.
#[derive(Debug, Default)]
pub struct Census {
    /// Namespaces whose pull Secret parses and holds a token the fake issued and that has not expired.
    pub valid: usize,
    pub missing: Vec<String>,
    /// Present but unparsable, or holding an unknown or expired token.
    pub invalid: Vec<String>,
    /// `default` ServiceAccounts referencing the pull Secret exactly once.
    pub bound: usize,
    /// ServiceAccounts referencing it more than once.
    pub duplicates: Vec<String>,
}

impl Census {
    pub fn complete(&self, n: usize) -> bool {
        self.valid == n && self.bound == n && self.duplicates.is_empty()
    }
}

/// Lists the pull Secrets and `default` ServiceAccounts of `namespaces` (two list calls); `None`
/// when the API server does not answer.
pub async fn census(h: &Harness, namespaces: &[String]) -> Option<Census> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let secrets: Api<Secret> = Api::all(h.client());
    let sas: Api<ServiceAccount> = Api::all(h.client());
    let by_ns = |items: Vec<Secret>| -> std::collections::HashMap<String, Secret> {
        items
            .into_iter()
            .filter_map(|s| Some((s.metadata.namespace.clone()?, s)))
            .collect()
    };
    let found = by_ns(list_secrets(&secrets, crate::controller_common::SECRET_NAME).await?);
    let sa_list = sas
        .list(&ListParams::default().fields("metadata.name=default"))
        .await
        .ok()?
        .items;
    let fake = h.handle();
    let mut c = Census::default();
    for ns in namespaces {
        match found.get(ns) {
            None => c.missing.push(ns.clone()),
            Some(s) if password(s).is_some_and(|p| fake.registry_token_valid(&p)) => c.valid += 1,
            Some(_) => c.invalid.push(ns.clone()),
        }
    }
    let wanted: std::collections::HashSet<&String> = namespaces.iter().collect();
    for sa in sa_list {
        let Some(ns) = sa.metadata.namespace.clone() else {
            continue;
        };
        if !wanted.contains(&ns) {
            continue;
        }
        let ours = crate::controller_common::pull_secret_names(&sa)
            .iter()
            .filter(|n| *n == crate::controller_common::SECRET_NAME)
            .count();
        match ours {
            1 => c.bound += 1,
            0 => {}
            _ => c.duplicates.push(ns),
        }
    }
    Some(c)
}

/// Polls [`census`] until `namespaces` are complete or `timeout` passes; how long it took.
pub async fn converge(
    h: &Harness,
    namespaces: &[String],
    timeout: Duration,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut last = None;
    while t0.elapsed() < timeout {
        if let Some(c) = census(h, namespaces).await {
            if c.complete(namespaces.len()) {
                return Ok(t0.elapsed());
            }
            last = Some(c);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(match last {
        Some(c) => format!(
            "after {timeout:?}: {} valid, {} bound of {}; missing {:?}, invalid {:?}, duplicates {:?}",
            c.valid,
            c.bound,
            namespaces.len(),
            &c.missing[..c.missing.len().min(5)],
            &c.invalid[..c.invalid.len().min(5)],
            &c.duplicates[..c.duplicates.len().min(5)]
        ),
        None => format!("the API server did not answer within {timeout:?}"),
    })
}

/// A binding over the namespace set `set` (label selector).
pub async fn bind_set(h: &Harness, binding: &str, set: &str) {
    h.binding(
        binding,
        &binding_spec(
            h,
            &format!("{{selector: {{matchLabels: {{{SET_LABEL}: {set}}}}}}}"),
        ),
    )
    .await;
}
