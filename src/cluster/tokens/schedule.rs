//! When the token manager asks the cloud again (pure): the renewal time with its jitter, the
//! retry backoff after failures, and whether an adopted token's lifetime is one a cloud issues.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Most jitter subtracted from a renewal time.
pub const MAX_JITTER: Duration = Duration::from_secs(30);
/// First retry delay after a failure.
pub const BASE_RETRY: Duration = Duration::from_secs(5);
/// Longest retry delay.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// The longest a registry token lives: an hour, or as long as the STS credentials that asked
/// for it, whose longest session is 12 hours.
pub const MAX_TOKEN_LIFETIME: SignedDuration = SignedDuration::from_hours(12);
/// How far in the future an adopted token's issue time may be (clocks of two replicas differ).
pub const ADOPT_CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(1);

/// Whether a token issued at `issued` and expiring at `expires` could come from the cloud, as
/// seen at `now`: issued no later than now (give or take [`ADOPT_CLOCK_SKEW`]) and living no
/// longer than [`MAX_TOKEN_LIFETIME`].
pub fn plausible_lifetime(issued: Timestamp, expires: Timestamp, now: Timestamp) -> bool {
    let not_future = now
        .checked_add(ADOPT_CLOCK_SKEW)
        .is_ok_and(|latest| issued <= latest);
    let lifetime = expires.duration_since(issued);
    not_future && lifetime > SignedDuration::ZERO && lifetime <= MAX_TOKEN_LIFETIME
}

/// When a token issued at `issued` and expiring at `expires` should be renewed: `renewBefore`
/// ahead of expiry, minus `jitter` (at most a tenth of `renewBefore` and [`MAX_JITTER`]); when
/// `renewBefore` is not shorter than the lifetime, halfway through it.
pub fn renew_at(
    issued: Timestamp,
    expires: Timestamp,
    renew_before: Duration,
    jitter_fraction: f64,
) -> Timestamp {
    let lifetime = expires.duration_since(issued);
    let before = SignedDuration::try_from(renew_before).unwrap_or(SignedDuration::MAX);
    if lifetime <= SignedDuration::ZERO {
        return issued;
    }
    if before >= lifetime {
        return issued.checked_add(lifetime / 2).unwrap_or(issued);
    }
    let max_jitter = (renew_before / 10).min(MAX_JITTER).as_secs_f64();
    let jitter = SignedDuration::from_secs_f64(max_jitter * jitter_fraction.clamp(0.0, 1.0));
    let at = expires
        .checked_sub(before)
        .and_then(|t| t.checked_sub(jitter))
        .unwrap_or(issued);
    at.max(issued)
}

/// How long to wait before retrying after `failures` consecutive failures: doubling from
/// [`BASE_RETRY`] up to [`MAX_RETRY`], and never more than a quarter of what the current token
/// has left (`time_left`), so several attempts fit before it expires. At least one second.
pub fn retry_delay(failures: u32, time_left: Option<Duration>) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let mut delay = BASE_RETRY.saturating_mul(1u32 << exp).min(MAX_RETRY);
    if let Some(left) = time_left
        && !left.is_zero()
    {
        delay = delay.min(left / 4);
    }
    delay.max(Duration::from_secs(1))
}
