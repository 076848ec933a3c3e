//! Leader election on a `coordination.k8s.io/v1` Lease, modelled on client-go's leaderelection.
//!
//! Every replica watches and keeps warm caches; only the one holding the Lease writes. The loop
//! tries to acquire or renew every retry period; a leader whose renewals have not succeeded
//! within the renew deadline (or who finds the Lease held by someone else) stops leading at once,
//! before the lease duration lets another replica take over. On shutdown it releases the Lease
//! so a standby leads within one retry period. The loop runs in a `lease` span (the Lease and
//! this replica's identity).
//!
//! The loop drives the write gate's read side, [`Leadership`] (in `cluster::leadership`, with
//! the gated client), through [`Elected`]. The pure rules are in [`rules`]: [`decide`] over an
//! observed Lease, and [`LeaseTimings::validate`], which keeps the lease duration longer than
//! everything a leader may take to stop.

pub mod rules;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;
// tokio's clock: the same as std's in production, and paused and advanced by tests.
use tokio::time::Instant;

use crate::cluster::leadership::{Elected, Leadership};
pub use rules::{Decision, LeaseTimings, TIMING_MARGIN, decide};

/// Where the Lease is and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name (the Pod name), written as the Lease's holder.
    pub holder: String,
    pub timings: LeaseTimings,
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
    let (elected, leadership) = Leadership::elected(config.timings.renew_deadline);
    let (stop_tx, stop_rx) = oneshot::channel();
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    // Everything the loop logs names the Lease and this replica.
    let span = tracing::info_span!(
        parent: None,
        "lease",
        lease = %format!("{}/{}", config.namespace, config.name),
        replica = %config.holder,
    );
    let task = tokio::spawn(run_loop(api, config, elected, stop_rx).instrument(span));
    LeaseHandle {
        leadership,
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
    elected: Elected,
    mut stop: oneshot::Receiver<()>,
) {
    let leading = &elected.leading;
    let t = &config.timings;
    let mut observed = Observed {
        record: None,
        since: Instant::now(),
        last_renewal: None,
        followed: None,
    };
    let mut ticker = tokio::time::interval(t.retry_period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(replica = %config.holder, lease = %config.name, namespace = %config.namespace, "leader election started");
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
                elected.renewed(started);
                true
            }
            Ok(false) => false,
            Err(message) => {
                let within = observed
                    .last_renewal
                    .is_some_and(|at| at.elapsed() < t.renew_deadline);
                if was_leading {
                    tracing::warn!(replica = %config.holder, error = %message, still_leading = within, "could not renew the Lease");
                } else {
                    tracing::debug!(replica = %config.holder, error = %message, "could not read or acquire the Lease");
                }
                was_leading && within
            }
        };
        if now_leading != was_leading {
            publish(leading, &config, now_leading);
        }
        if !now_leading {
            observed.last_renewal = None;
        }
        elected.passed(Instant::now());
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
        tracing::info!(replica = %config.holder, lease = %config.name, "became the leader");
    } else {
        tracing::error!(replica = %config.holder, lease = %config.name, "lost the leadership; stopped writing");
    }
}

/// [`release`] within one retry period, logging how it went.
async fn release_in_time(api: &Api<Lease>, config: &LeaseConfig) {
    match tokio::time::timeout(config.timings.retry_period, release(api, config)).await {
        Ok(Ok(())) => {
            tracing::info!(replica = %config.holder, lease = %config.name, "released the Lease");
        }
        Ok(Err(e)) => {
            tracing::warn!(replica = %config.holder, error = %e, "could not release the Lease")
        }
        Err(_) => tracing::warn!(replica = %config.holder, "releasing the Lease timed out"),
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
        &config.holder,
        observed.since.elapsed(),
        t.lease_duration,
    ) {
        Decision::Follow { holder } => {
            if observed.followed.as_deref() != Some(holder.as_str()) {
                tracing::info!(replica = %config.holder, leader = %holder, "another replica leads; standing by");
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
            holder_identity: Some(config.holder.clone()),
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
    spec.holder_identity = Some(config.holder.clone());
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
    if spec.holder_identity.as_deref() != Some(config.holder.as_str()) {
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
