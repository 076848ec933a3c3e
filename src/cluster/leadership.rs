//! The write gate: whether this replica leads and may write ([`Leadership`]), and the client
//! that refuses every write while it does not ([`gated_client`]). The election loop that
//! keeps the Lease is `runtime::leader`; it drives this through [`Elected`].
//!
//! [`Leadership`] trusts the time since the last successful renewal, not only the loop's flag,
//! so writes stop by the renew deadline even when the loop cannot run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
// tokio's clock: the same as std's in production, and paused and advanced by tests.
use tokio::time::Instant;

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
    pub(crate) fn new(renew_deadline: Duration) -> Self {
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

/// The election loop's side of [`Leadership`]: it publishes whether this replica leads and
/// records its passes and renewals.
#[derive(Debug)]
pub struct Elected {
    pub leading: watch::Sender<bool>,
    beats: Arc<Beats>,
}

impl Elected {
    /// Records a pass of the loop at `at`.
    pub fn passed(&self, at: Instant) {
        self.beats.record(&self.beats.pass, at);
    }

    /// Records that a successful acquisition or renewal started at `at`.
    pub fn renewed(&self, at: Instant) {
        self.beats.record(&self.beats.renewed, at);
    }
}

impl Leadership {
    /// An election whose writes stay open `renew_deadline` after each renewal: the loop's side
    /// and the read side. Not leading until the loop says so.
    pub fn elected(renew_deadline: Duration) -> (Elected, Leadership) {
        let (tx, rx) = watch::channel(false);
        let beats = Arc::new(Beats::new(renew_deadline));
        let read = Leadership {
            leading: rx,
            heartbeat: Some(beats.clone()),
        };
        (Elected { leading: tx, beats }, read)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_election_a_replica_always_leads_and_never_loses() {
        let l = Leadership::always();
        assert!(l.is_leader());
        assert!(l.loop_alive(Duration::ZERO));
        l.acquired().await;
        let lost = tokio::time::timeout(Duration::from_millis(50), l.lost()).await;
        assert!(lost.is_err(), "leadership without election is never lost");
    }

    #[tokio::test]
    async fn a_loop_that_dies_while_leading_counts_as_lost() {
        let (elected, l) = Leadership::elected(Duration::from_secs(10));
        elected.leading.send(true).unwrap();
        assert!(l.is_leader());
        drop(elected);
        assert!(!l.is_leader(), "no loop, no writes");
        tokio::time::timeout(Duration::from_secs(1), l.lost())
            .await
            .expect("lost() completes when the loop is gone");
    }
}
