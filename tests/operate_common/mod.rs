//! Shared parts of the `operate_*` tests: the real `acr-credential-controller run` binary as a
//! replica (leader election on, probes on a free port, JSON logs collected), scraping its
//! `/metrics`, and reading the local control plane's audit log of writes by user agent;
//! [`exports`] checks PromQL the project ships against a real scrape.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod exports;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::controller_common::{Harness, OWNER_LABEL};
use crate::support;

/// Election timings of the tests (seconds): short, in client-go's proportions.
pub const LEASE: f64 = 6.0;
pub const RENEW: f64 = 4.0;
pub const RETRY: f64 = 1.0;

/// One controller process.
pub struct Replica {
    pub identity: String,
    child: Child,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Every line the process wrote, as written: (`"stdout"` or `"stderr"`, line).
    raw: Arc<Mutex<Vec<(&'static str, String)>>>,
    pub probe: String,
}

impl Replica {
    /// Starts `acr-credential-controller run` for the harness's objects, electing on the Lease
    /// `lease` in the harness's namespace, and waits for its probe address.
    pub async fn start(h: &Harness, lease: &str, identity: &str) -> Replica {
        let kubeconfig = support::cluster()
            .kubeconfig
            .clone()
            .expect("the operate tests need the local control plane");
        Self::start_as(h, lease, identity, &kubeconfig).await
    }

    /// As [`Replica::start`], connecting with `kubeconfig` (e.g. a ServiceAccount's).
    pub async fn start_as(
        h: &Harness,
        lease: &str,
        identity: &str,
        kubeconfig: &std::path::Path,
    ) -> Replica {
        Self::start_with(h, lease, identity, kubeconfig, &[]).await
    }

    /// As [`Replica::start_as`], with `extra` arguments to `run` (e.g. the webhook's).
    pub async fn start_with(
        h: &Harness,
        lease: &str,
        identity: &str,
        kubeconfig: &std::path::Path,
        extra: &[String],
    ) -> Replica {
        Self::start_logging(h, lease, identity, kubeconfig, extra, "info").await
    }

    /// As [`Replica::start_with`], logging at `rust_log` (`RUST_LOG`).
    pub async fn start_logging(
        h: &Harness,
        lease: &str,
        identity: &str,
        kubeconfig: &std::path::Path,
        extra: &[String],
        rust_log: &str,
    ) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_acr-credential-controller"))
            .args(["run", "--leader-elect", "--log-format", "json"])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--cloud-endpoint", h.fake.base_url().as_str()])
            .args(["--object-selector", &format!("{OWNER_LABEL}={}", h.id)])
            .args(["--lease-namespace", h.env.namespace()])
            .args(["--lease-name", lease])
            .args(["--replica-name", identity])
            .args(["--lease-duration-seconds", &LEASE.to_string()])
            .args(["--renew-deadline-seconds", &RENEW.to_string()])
            .args(["--retry-period-seconds", &RETRY.to_string()])
            .args(["--probe-address", "127.0.0.1:0"])
            .args(["--resync-seconds", "60"])
            .args(extra)
            .env("RUST_LOG", rust_log)
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the controller binary");
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (sink, raw_sink) = (logs.clone(), raw.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"fields": {"message": line}}));
                sink.lock().unwrap().push(v);
                raw_sink.lock().unwrap().push(("stderr", line));
            }
        });
        let raw_sink = raw.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                raw_sink.lock().unwrap().push(("stdout", line));
            }
        });
        let mut replica = Replica {
            identity: identity.to_owned(),
            child,
            logs,
            raw,
            probe: String::new(),
        };
        let line = replica
            .wait_log(
                "probe and metrics server listening",
                Duration::from_secs(60),
            )
            .await;
        replica.probe = line["fields"]["address"].as_str().unwrap().to_owned();
        replica
    }

    /// The log lines whose message is `message`.
    pub fn logged(&self, message: &str) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l["fields"]["message"] == message)
            .cloned()
            .collect()
    }

    /// Every line written to stdout and stderr so far, as written, with its stream.
    pub fn raw_lines(&self) -> Vec<(&'static str, String)> {
        self.raw.lock().unwrap().clone()
    }

    /// Every log line, as text (for failure messages).
    pub fn log_text(&self) -> String {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|l| format!("{l}\n"))
            .collect()
    }

    pub async fn wait_log(&mut self, message: &str, timeout: Duration) -> serde_json::Value {
        let started = Instant::now();
        loop {
            if let Some(l) = self.logged(message).into_iter().next() {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before logging {message:?}:\n{}",
                    self.identity,
                    self.log_text()
                );
            }
            assert!(
                started.elapsed() < timeout,
                "{} did not log {message:?} within {timeout:?}:\n{}",
                self.identity,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET `path` on the probe port: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{}{path}", self.probe))
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                started.elapsed() < timeout,
                "{} still runs after {timeout:?}:\n{}",
                self.identity,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample `name` with labels containing `labels` (as `k="v"` pairs), summed
/// over the series that match, from OpenMetrics text (quick reads; the exposition format
/// itself is checked by a real parser in `operate_ha`).
pub fn sample_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            if n != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// One write in the API server's audit log.
#[derive(Clone, Debug)]
pub struct AuditWrite {
    pub user_agent: String,
    pub verb: String,
    pub resource: String,
    pub namespace: String,
    pub at: jiff::Timestamp,
}

/// The writes in the local control plane's audit log (writes only; Leases are not logged).
pub fn audit_writes() -> Vec<AuditWrite> {
    let dir = std::env::var_os("ACC_CLUSTER_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| support::repo_root().join(".cluster"));
    let run = std::fs::read_to_string(dir.join("run")).expect(".cluster/run");
    let path = std::path::Path::new(run.trim()).join("audit.log");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (a control plane started before the audit log was added: \
             `scripts/cluster.sh down` and run again)",
            path.display()
        )
    });
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|e| AuditWrite {
            user_agent: e["userAgent"].as_str().unwrap_or("").to_owned(),
            verb: e["verb"].as_str().unwrap_or("").to_owned(),
            resource: e["objectRef"]["resource"].as_str().unwrap_or("").to_owned(),
            namespace: e["objectRef"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            at: e["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        })
        .collect()
}

/// The audit-logged writes of replica `identity` (its user agent names it).
pub fn writes_by(identity: &str) -> Vec<AuditWrite> {
    let tag = format!("({identity})");
    audit_writes()
        .into_iter()
        .filter(|w| w.user_agent.ends_with(&tag))
        .collect()
}
