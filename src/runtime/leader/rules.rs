//! The election's pure rules: the timings and the check that a standby can never lead while
//! the leader still writes ([`LeaseTimings::validate`]), and what to do about an observed Lease
//! ([`decide`]).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;

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
    replica: &str,
    unchanged_for: Duration,
    lease_duration: Duration,
) -> Decision {
    let Some(spec) = observed else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == replica {
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
