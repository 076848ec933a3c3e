//! Leader election on a `coordination.k8s.io/v1` Lease, modelled on client-go's leaderelection.
//!
//! Every replica watches and keeps warm caches; only the one holding the Lease writes. The loop
//! tries to acquire or renew every retry period; a leader whose renewals have not succeeded
//! within the renew deadline (or who finds the Lease held by someone else) stops leading at once,
//! before the lease duration lets another replica take over. On shutdown it releases the Lease
//! so a standby leads within one retry period.
//!
//! [`Leadership`] is the read side that writers consult (and that the probes and metrics read):
//! it trusts the time since the last successful renewal, not only the loop's flag, so writes stop
//! by the renew deadline even when the loop cannot run. [`gated_client`] refuses writes while
//! not leading; [`decide`] is the pure rule over an observed Lease; [`LeaseTimings::validate`]
//! keeps the lease duration longer than everything a leader may take to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::{oneshot, watch};
// tokio's clock: the same as std's in production, and paused and advanced by tests.
use tokio::time::Instant;

/// Timings of the election (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long a Lease holds after its last renewal before another replica may take it.
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often every replica tries to acquire or renew.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What the lease duration must exceed the renew deadline plus the retry period by (see
/// [`LeaseTimings::validate`]).
pub const TIMING_MARGIN: Duration = Duration::from_secs(1);

impl LeaseTimings {
    /// Checks that a standby can never lead while this replica still writes:
    /// lease duration ≥ renew deadline + retry period + [`TIMING_MARGIN`], and client-go's
    /// renew deadline > 1.2 × retry period > 0.
    ///
    /// A standby takes over one lease duration after it saw the last renewal. The leader's write
    /// gate closes one renew deadline after that renewal started, and its loop, which passes once
    /// per retry period, gives the lead up (and the process exits) at most one retry period
    /// later. The margin is for what is still under way then: a write let through just before
    /// the gate closed, on its way to the API server, and the two nodes' clocks running at
    /// slightly different rates.
    pub fn validate(&self) -> Result<(), String> {
        if self.retry_period.is_zero() {
            return Err("the retry period must be positive".into());
        }
        let stops_by = self.renew_deadline + self.retry_period + TIMING_MARGIN;
        if self.lease_duration < stops_by {
            return Err(format!(
                "the lease duration ({:?}) must be at least the renew deadline ({:?}) plus the retry period ({:?}) plus {:?}, i.e. {:?}: a standby takes the Lease over one lease duration after the last renewal, and a leader that cannot renew stops writing by the renew deadline and gives the lead up within one more retry period; the {:?} covers a write still on its way to the API server and clocks running at different rates",
                self.lease_duration,
                self.renew_deadline,
                self.retry_period,
                TIMING_MARGIN,
                stops_by,
                TIMING_MARGIN,
            ));
        }
        if self.renew_deadline.as_secs_f64() <= 1.2 * self.retry_period.as_secs_f64() {
            return Err(format!(
                "the renew deadline ({:?}) must be longer than 1.2 × the retry period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }
}

/// Where the Lease is and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the Pod name), written as the Lease's holder.
    pub identity: String,
    pub timings: LeaseTimings,
}

/// The read side of the election: whether this replica leads now, and whether the loop lives.
#[derive(Clone, Debug)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
    /// The loop's clock; `None` when there is no loop (the election is off and this replica
    /// always leads).
    heartbeat: Option<Arc<Beats>>,
}

/// Instants the loop records and the read side checks, as milliseconds since `epoch` (rounded
/// down, so an instant read back is never later than the one recorded).
#[derive(Debug)]
struct Beats {
    epoch: Instant,
    /// The loop's last pass.
    pass: AtomicU64,
    /// When the last successful acquisition or renewal started.
    renewed: AtomicU64,
    /// How long after `renewed` writes stay open.
    renew_deadline: Duration,
}

impl Beats {
    fn new(renew_deadline: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            pass: AtomicU64::new(0),
            renewed: AtomicU64::new(0),
            renew_deadline,
        }
    }

    fn record(&self, slot: &AtomicU64, at: Instant) {
        let millis =
            u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        slot.store(millis, Ordering::Release);
    }

    /// How long ago the instant in `slot` was.
    fn since(&self, slot: &AtomicU64) -> Duration {
        let at = Duration::from_millis(slot.load(Ordering::Acquire));
        self.epoch.elapsed().saturating_sub(at)
    }
}

impl Leadership {
    /// No election: this replica always leads (one replica, or tests).
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        // The receiver keeps the last value after the sender is gone.
        drop(tx);
        Self {
            leading: rx,
            heartbeat: None,
        }
    }

    /// Whether this replica may write now: it leads, and (with election) the loop that keeps
    /// the Lease is still there and the last successful renewal started less than a renew
    /// deadline ago. The last condition holds even when the loop cannot run (a starved runtime,
    /// a frozen process) to notice that its renewals stopped.
    pub fn is_leader(&self) -> bool {
        let leading = *self.leading.borrow();
        match &self.heartbeat {
            None => leading,
            Some(beats) => {
                leading
                    && self.leading.has_changed().is_ok()
                    && beats.since(&beats.renewed) < beats.renew_deadline
            }
        }
    }

    /// A receiver of the leading flag (for other writers, e.g. a translator task).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Whether the election loop has made a pass within `max_age` (always true without one).
    pub fn loop_alive(&self, max_age: Duration) -> bool {
        match &self.heartbeat {
            None => true,
            Some(beats) => beats.since(&beats.pass) <= max_age,
        }
    }

    /// Completes when this replica leads (at once if it does).
    pub async fn acquired(&self) {
        let mut rx = self.leading.clone();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Completes when leadership, once held, is lost, or when the loop is gone while leading.
    pub async fn lost(&self) {
        let mut rx = self.leading.clone();
        if rx.wait_for(|l| *l).await.is_err() {
            // No loop and not leading: never acquired, so never lost.
            if !*rx.borrow() {
                return futures::future::pending().await;
            }
        }
        if self.heartbeat.is_none() {
            // Election off: always leads.
            return futures::future::pending().await;
        }
        // Err: the loop ended (its sender dropped) while we led.
        let _ = rx.wait_for(|l| !*l).await;
    }
}

/// A write refused because this replica does not lead.
#[derive(Debug, thiserror::Error)]
#[error("not the leader: writes are refused")]
pub struct NotLeading;

/// A Kubernetes client that refuses every request but reads (GET: gets, lists, watches) while
/// `leadership` says this replica does not lead: writes are gated at the one place they all
/// pass, so none can slip through a path that forgot to check. The election loop itself uses an
/// ungated client.
pub fn gated_client(config: kube::Config, leadership: Leadership) -> Result<Client, kube::Error> {
    let gate =
        tower::filter::FilterLayer::new(move |req: axum::http::Request<kube::client::Body>| {
            if req.method() == axum::http::Method::GET || leadership.is_leader() {
                Ok(req)
            } else {
                Err(NotLeading)
            }
        });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&gate)
        .build())
}

/// What to do about an observed Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create,
    /// Take the Lease over (free, released or expired).
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a live Lease.
    Follow { holder: String },
}

/// The pure rule: `observed` is the Lease as read (`None` when absent), `unchanged_for` how long
/// this replica has seen the same holder and renew time (measured on the local clock, as
/// client-go does, so clock skew between nodes does not matter).
pub fn decide(
    observed: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    lease_duration: Duration,
) -> Decision {
    let Some(spec) = observed else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(lease_duration, Duration::from_secs);
    if unchanged_for > duration {
        Decision::Acquire
    } else {
        Decision::Follow {
            holder: holder.to_owned(),
        }
    }
}

/// The running loop: its read side and the means to stop it (releasing the Lease).
pub struct LeaseHandle {
    pub leadership: Leadership,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseHandle {
    /// Stops the loop; a leader releases the Lease so a standby takes over at once.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Stops the loop without releasing (as a crash would; for tests).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Starts the election loop.
pub fn start(client: Client, config: LeaseConfig) -> LeaseHandle {
    let (tx, rx) = watch::channel(false);
    let beats = Arc::new(Beats::new(config.timings.renew_deadline));
    let (stop_tx, stop_rx) = oneshot::channel();
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let task = tokio::spawn(run_loop(api, config, tx, beats.clone(), stop_rx));
    LeaseHandle {
        leadership: Leadership {
            leading: rx,
            heartbeat: Some(beats),
        },
        stop: Some(stop_tx),
        task,
    }
}

/// What the loop remembers between passes.
struct Observed {
    /// Holder and renew time last seen, and when they last changed (local clock).
    record: Option<(Option<String>, Option<MicroTime>)>,
    since: Instant,
    /// When the last successful renewal started, while leading.
    last_renewal: Option<Instant>,
    /// The other replica last logged as the leader.
    followed: Option<String>,
}

async fn run_loop(
    api: Api<Lease>,
    config: LeaseConfig,
    leading: watch::Sender<bool>,
    beats: Arc<Beats>,
    mut stop: oneshot::Receiver<()>,
) {
    let t = &config.timings;
    let mut observed = Observed {
        record: None,
        since: Instant::now(),
        last_renewal: None,
        followed: None,
    };
    let mut ticker = tokio::time::interval(t.retry_period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(identity = %config.identity, lease = %config.name, namespace = %config.namespace, "leader election started");
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let was_leading = *leading.borrow();
        // The API server stores the renewal after this instant, so a standby counts its lease
        // duration from later than the gate counts its renew deadline.
        let started = Instant::now();
        // One attempt may not outlast the time left before the renew deadline.
        let attempt = tokio::time::timeout(t.retry_period, try_once(&api, &config, &mut observed));
        let outcome = match attempt.await {
            Ok(r) => r,
            Err(_) => Err("the Lease request timed out".to_owned()),
        };
        let now_leading = match outcome {
            Ok(true) => {
                observed.last_renewal = Some(started);
                // Before the flag is published, so the gate opens on a fresh renewal.
                beats.record(&beats.renewed, started);
                true
            }
            Ok(false) => false,
            Err(message) => {
                let within = observed
                    .last_renewal
                    .is_some_and(|at| at.elapsed() < t.renew_deadline);
                if was_leading {
                    tracing::warn!(identity = %config.identity, error = %message, still_leading = within, "could not renew the Lease");
                } else {
                    tracing::debug!(identity = %config.identity, error = %message, "could not read or acquire the Lease");
                }
                was_leading && within
            }
        };
        if now_leading != was_leading {
            publish(&leading, &config, now_leading);
        }
        if !now_leading {
            observed.last_renewal = None;
        }
        beats.record(&beats.pass, Instant::now());
    }
    if *leading.borrow() {
        // Stop writing before the Lease can pass on.
        let _ = leading.send(false);
        release_in_time(&api, &config).await;
    }
}

/// Says that this replica now leads or no longer does. Publishes first: writers stop before
/// anyone reads the log line.
fn publish(leading: &watch::Sender<bool>, config: &LeaseConfig, now_leading: bool) {
    let _ = leading.send(now_leading);
    crate::metrics::set_leader(now_leading);
    if now_leading {
        tracing::info!(identity = %config.identity, lease = %config.name, "became the leader");
    } else {
        tracing::error!(identity = %config.identity, lease = %config.name, "lost the leadership; stopped writing");
    }
}

/// [`release`] within one retry period, logging how it went.
async fn release_in_time(api: &Api<Lease>, config: &LeaseConfig) {
    match tokio::time::timeout(config.timings.retry_period, release(api, config)).await {
        Ok(Ok(())) => {
            tracing::info!(identity = %config.identity, lease = %config.name, "released the Lease");
        }
        Ok(Err(e)) => {
            tracing::warn!(identity = %config.identity, error = %e, "could not release the Lease")
        }
        Err(_) => tracing::warn!(identity = %config.identity, "releasing the Lease timed out"),
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// One pass: read the Lease and act on [`decide`]. `Ok(true)`: we hold it now.
async fn try_once(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Observed,
) -> Result<bool, String> {
    let t = &config.timings;
    let lease = api
        .get_opt(&config.name)
        .await
        .map_err(|e| format!("reading the Lease: {e}"))?;
    let spec = lease.as_ref().and_then(|l| l.spec.clone());
    let record = spec
        .as_ref()
        .map(|s| (s.holder_identity.clone(), s.renew_time.clone()));
    if record != observed.record {
        observed.record = record;
        observed.since = Instant::now();
    }
    let seconds = i32::try_from(t.lease_duration.as_secs()).unwrap_or(i32::MAX);
    match decide(
        spec.as_ref(),
        &config.identity,
        observed.since.elapsed(),
        t.lease_duration,
    ) {
        Decision::Follow { holder } => {
            if observed.followed.as_deref() != Some(holder.as_str()) {
                tracing::info!(identity = %config.identity, leader = %holder, "another replica leads; standing by");
                observed.followed = Some(holder);
            }
            Ok(false)
        }
        Decision::Create => {
            api.create(&PostParams::default(), &new_lease(config, seconds))
                .await
                .map_err(|e| format!("creating the Lease: {e}"))?;
            observed.followed = None;
            Ok(true)
        }
        decision @ (Decision::Acquire | Decision::Renew) => {
            let Some(mut lease) = lease else {
                return Err("the Lease vanished".into());
            };
            lease.spec = Some(claimed(spec.unwrap_or_default(), decision, config, seconds));
            // The resourceVersion read above makes this a compare-and-swap: of two replicas
            // acquiring at once, one gets a conflict.
            let name = lease.name_any();
            api.replace(&name, &PostParams::default(), &lease)
                .await
                .map_err(|e| format!("writing the Lease: {e}"))?;
            observed.followed = None;
            Ok(true)
        }
    }
}

/// A new Lease held by this replica.
fn new_lease(config: &LeaseConfig, seconds: i32) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

/// The Lease spec once this replica acquired it (a transition more) or renewed it.
fn claimed(
    mut spec: LeaseSpec,
    decision: Decision,
    config: &LeaseConfig,
    seconds: i32,
) -> LeaseSpec {
    if decision == Decision::Acquire {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(config.identity.clone());
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(now());
    spec
}

/// Gives the Lease up: no holder, so any standby may acquire at its next pass.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), String> {
    let Some(mut lease) = api
        .get_opt(&config.name)
        .await
        .map_err(|e| format!("reading the Lease: {e}"))?
    else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    let name = lease.name_any();
    api.replace(&name, &PostParams::default(), &lease)
        .await
        .map_err(|e| format!("releasing the Lease: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests;
