//! acr-fake-cloud: a strict fake of the Alibaba Cloud services acr-credential-controller uses,
//! for its integration tests, the sandbox and the benchmark. A crate of its own so the product
//! never links it; it verifies signatures with the controller's own `cloud::sign` code.
//!
//! It serves STS 2015-04-01, CR 2018-12-01, CR 2016-06-07 and the ECS metadata service on one
//! loopback port, verifies every signature style as the real service does, and models the
//! accounts, keys, roles, trust, OIDC providers, instances and permissions of a [`Scenario`].
//! Faults (error codes, throttling, latency, outages) can be injected at run time, and every
//! request is logged by API and caller.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use acr_fake_cloud::{FakeCloud, Scenario};
//! let fake = FakeCloud::start(Scenario::from_str_resolved("accounts: []")?).await?;
//! let base = fake.base_url();        // point every endpoint override here
//! let handle = fake.handle();        // faults, log, clock, credentials
//! assert_eq!(handle.count("sts:AssumeRole"), 0);
//! # Ok(()) }
//! ```
//!
//! Modules: [`scenario`] (the world), [`state`] (issued credentials, nonces, faults, log),
//! [`auth`] (signature verification), [`server`] (routing, faults, envelopes), [`sts`],
//! [`cr`], [`metadata`], [`realm`] (the registries' Docker token realm), [`control`] (the
//! `/__fake/` API).

pub mod auth;
pub mod control;
pub mod cr;
pub mod metadata;
pub mod realm;
pub mod scenario;
pub mod server;
pub mod state;
pub mod sts;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use scenario::{Scenario, ScenarioError};
pub use state::{Fault, FaultKind, Issued, LogEntry, OutageMode};

use state::{Inner, Outage, State};

/// A running fake cloud. Dropping it stops the server.
pub struct FakeCloud {
    base_url: url::Url,
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeCloud {
    /// Starts on a free loopback port.
    pub async fn start(scenario: Scenario) -> std::io::Result<Self> {
        Self::start_on(scenario, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (use a loopback address).
    pub async fn start_on(scenario: Scenario, addr: SocketAddr) -> std::io::Result<Self> {
        let state = Arc::new(State {
            inner: std::sync::Mutex::new(Inner {
                scenario,
                ..Inner::default()
            }),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let base_url = url::Url::parse(&format!("http://{addr}"))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = server::router(state.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "fake cloud server stopped");
            }
        });
        Ok(Self {
            base_url,
            addr,
            state,
            shutdown: Some(tx),
        })
    }

    /// `http://127.0.0.1:<port>/`: the override URL for every service.
    pub fn base_url(&self) -> &url::Url {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registries' token realm (`auth.token.realm` of a registry trusting this fake).
    pub fn realm_url(&self) -> String {
        format!("http://{}/auth", self.addr)
    }

    /// A handle to change faults and read the log, usable after the fake moved elsewhere.
    pub fn handle(&self) -> FakeHandle {
        FakeHandle {
            state: self.state.clone(),
        }
    }
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Controls a running fake.
#[derive(Clone)]
pub struct FakeHandle {
    state: Arc<State>,
}

impl FakeHandle {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> Option<R> {
        self.state.inner.lock().ok().map(|mut inner| f(&mut inner))
    }

    /// Adds a fault.
    pub fn add_fault(&self, fault: Fault) {
        self.with(|i| i.faults.push(fault));
    }

    /// Makes `api` fail `times` times with `status`/`code`.
    pub fn fail(&self, api: &str, status: u16, code: &str, times: Option<u32>) {
        self.add_fault(Fault {
            api: api.into(),
            caller: None,
            times,
            kind: FaultKind::Error {
                status,
                code: code.into(),
                message: None,
            },
        });
    }

    /// Throttles `api` `times` times with `x-acs-retry-after: retry_after_ms`.
    pub fn throttle(&self, api: &str, retry_after_ms: u64, times: Option<u32>) {
        self.add_fault(Fault {
            api: api.into(),
            caller: None,
            times,
            kind: FaultKind::Throttle { retry_after_ms },
        });
    }

    /// Delays every answer of `api`.
    pub fn latency(&self, api: &str, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.add_fault(Fault {
            api: api.into(),
            caller: None,
            times: None,
            kind: FaultKind::Latency { ms },
        });
    }

    /// Every API fails (or hangs) for `duration` from now.
    pub fn outage(&self, duration: Duration, mode: OutageMode) {
        self.with(|i| {
            let until = i.now().checked_add(duration).unwrap_or_else(|_| i.now());
            i.outage = Some(Outage { until, mode });
        });
    }

    /// Removes all faults and any outage.
    pub fn clear_faults(&self) {
        self.with(|i| {
            i.faults.clear();
            i.outage = None;
        });
    }

    /// The request log.
    pub fn log(&self) -> Vec<LogEntry> {
        self.with(|i| i.log.clone()).unwrap_or_default()
    }

    pub fn clear_log(&self) {
        self.with(|i| i.log.clear());
    }

    /// Requests per (api, caller).
    pub fn counts(&self) -> BTreeMap<(String, String), usize> {
        self.with(|i| i.counts()).unwrap_or_default()
    }

    /// Requests to `api` by anyone.
    pub fn count(&self, api: &str) -> usize {
        self.with(|i| i.log.iter().filter(|e| e.api == api).count())
            .unwrap_or(0)
    }

    /// Successful requests to `api`.
    pub fn count_ok(&self, api: &str) -> usize {
        self.with(|i| {
            i.log
                .iter()
                .filter(|e| e.api == api && e.status == 200)
                .count()
        })
        .unwrap_or(0)
    }

    /// Shifts the fake's clock (freshness checks, issued expiries).
    pub fn set_clock_offset(&self, offset: jiff::SignedDuration) {
        self.with(|i| i.clock_offset = offset);
    }

    /// Issues STS credentials for a role directly (e.g. to write a managedRole token file).
    pub fn issue_role_credentials(
        &self,
        account: &str,
        role: &str,
        session: &str,
        lifetime: Duration,
    ) -> Result<Issued, String> {
        self.with(|i| {
            if i.role(account, role).is_none() {
                return Err(format!("no role {role} in account {account}"));
            }
            let lifetime = jiff::SignedDuration::try_from(lifetime).map_err(|e| e.to_string())?;
            Ok(i.issue(account, role, session, lifetime))
        })
        .unwrap_or_else(|| Err("fake state poisoned".into()))
    }

    /// Enables or disables an AccessKey.
    pub fn set_access_key_enabled(&self, id: &str, enabled: bool) -> Result<(), String> {
        self.with(|i| {
            let key = i
                .scenario
                .accounts
                .iter_mut()
                .flat_map(|a| a.access_keys.iter_mut())
                .find(|k| k.id == id);
            match key {
                Some(k) => {
                    k.enabled = enabled;
                    Ok(())
                }
                None => Err(format!("no access key {id}")),
            }
        })
        .unwrap_or_else(|| Err("fake state poisoned".into()))
    }

    /// Puts `text` inside every STS secret, security token and registry password issued from
    /// now on (a canary to search the controller's outputs for).
    pub fn set_marker(&self, text: &str) {
        self.with(|i| i.marker = text.to_owned());
    }

    /// Changes the lifetimes of what is issued from now on.
    pub fn set_lifetimes(&self, lifetimes: scenario::Lifetimes) {
        self.with(|i| i.scenario.lifetimes = lifetimes);
    }

    /// When the registry token `password` expires, if this fake issued it (expired or not).
    pub fn registry_token_expiry(&self, password: &str) -> Option<jiff::Timestamp> {
        self.with(|i| i.registry_tokens.get(password).map(|t| t.expires))
            .flatten()
    }

    /// Whether `password` is a registry token this fake issued and that has not expired.
    pub fn registry_token_valid(&self, password: &str) -> bool {
        self.with(|i| {
            i.registry_tokens
                .get(password)
                .is_some_and(|t| t.expires > i.now())
        })
        .unwrap_or(false)
    }
}
