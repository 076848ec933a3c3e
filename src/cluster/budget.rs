//! The write budget: how many writes per second the controller allows itself, as client-go's
//! client-side rate limiter does it (a token bucket: `--write-budget` writes per second,
//! `--write-burst` at once), with two lanes so that urgent work never waits behind a wave:
//!
//! - [`WriteBudget::urgent`]: a new namespace, a drift repair, a binding's first fan-out, a
//!   rotation, a deletion, a status, an Event, a finalizer. Never waits; it takes its token all
//!   the same (into debt, at most one burst deep), so the wave lane gives way to it.
//! - [`WriteBudget::wave`]: a renewal rewrite that can wait ([`super::wave`]). Waits for a token,
//!   but never past the time it must be written by: then it goes over budget rather than let a
//!   token near expiry, and says so ([`crate::metrics::over_budget`]).
//!
//! A budget of 0 writes per second is unlimited: nothing waits, and renewal rewrites are not
//! deferred (every write goes at once, as fast as the API server takes them).
//!
//! [`Bucket`] is the arithmetic alone, with the time passed in (unit-tested by hand).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default writes per second: controller-runtime's default client rate (QPS 20), a small share
/// of what one API server takes (the benchmark's 2-core control plane takes about 300 Secret
/// and ServiceAccount writes per second at a fan-out).
pub const DEFAULT_WRITES_PER_SECOND: f64 = 20.0;
/// Default burst: controller-runtime's default (30).
pub const DEFAULT_BURST: u32 = 30;

/// The budget's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetConfig {
    /// Writes per second; 0: unlimited.
    pub per_second: f64,
    /// Writes that may go at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            per_second: DEFAULT_WRITES_PER_SECOND,
            burst: DEFAULT_BURST,
        }
    }
}

impl BudgetConfig {
    /// Unlimited: every write goes at once, renewal waves included.
    pub const UNLIMITED: Self = Self {
        per_second: 0.0,
        burst: 1,
    };

    /// Whether writes are paced at all.
    pub fn limited(&self) -> bool {
        self.per_second > 0.0 && self.per_second.is_finite()
    }
}

/// Which lane a write takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Goes at once (new namespaces, repairs, first writes, deletions, status).
    Urgent,
    /// A renewal rewrite that waits for the budget (until it must go).
    Wave,
}

/// The token bucket's arithmetic: `rate` tokens a second up to `burst`, never below
/// `-burst` (the deepest debt urgent writes may run up).
#[derive(Clone, Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = self.at.max(now);
    }

    /// Tokens in the bucket at `now` (negative: debt).
    pub fn tokens(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Takes a token whatever is left (an urgent write, or a wave write that must go):
    /// never waits, may run into debt down to one burst.
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(-self.burst);
    }

    /// Takes a token when one is there; otherwise how long until one is.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - self.tokens) / self.rate;
        Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(1)))
    }
}

/// How a wave write got its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Within the budget.
    Within,
    /// Over it: the write had to go by then.
    Over,
}

/// The controller's write budget, shared by every write path.
#[derive(Debug)]
pub struct WriteBudget {
    config: BudgetConfig,
    bucket: Option<Mutex<Bucket>>,
}

impl WriteBudget {
    pub fn new(config: BudgetConfig) -> Self {
        let bucket = config
            .limited()
            .then(|| Mutex::new(Bucket::new(config.per_second, config.burst, Instant::now())));
        Self { config, bucket }
    }

    /// The settings.
    pub fn config(&self) -> BudgetConfig {
        self.config
    }

    /// Whether writes are paced at all (renewal rewrites are deferred only then).
    pub fn limited(&self) -> bool {
        self.bucket.is_some()
    }

    fn bucket(&self) -> Option<std::sync::MutexGuard<'_, Bucket>> {
        self.bucket
            .as_ref()
            .map(|b| b.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// An urgent write: goes at once, and takes its token.
    pub fn urgent(&self) {
        if let Some(mut b) = self.bucket() {
            b.take(Instant::now());
        }
    }

    /// A wave write: waits for a token, but not past `latest`, nor at all when `over_budget`
    /// (its wave cannot finish in time within the budget).
    pub async fn wave(&self, latest: Instant, over_budget: bool) -> Turn {
        loop {
            let now = Instant::now();
            let wait = {
                let Some(mut b) = self.bucket() else {
                    return Turn::Within;
                };
                if over_budget || now >= latest {
                    b.take(now);
                    crate::metrics::over_budget();
                    return Turn::Over;
                }
                match b.try_take(now) {
                    Ok(()) => return Turn::Within,
                    Err(wait) => wait.min(latest - now),
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_one_write_per_tick() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        let wait = b.try_take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(b.try_take(t0 + secs(0.1)), Ok(()));
        assert!(b.try_take(t0 + secs(0.15)).is_err());
        // A quiet spell refills up to the burst, no further.
        assert!((b.tokens(t0 + secs(100.0)) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn urgent_writes_never_wait_and_push_the_wave_back_by_at_most_one_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 5, t0);
        for _ in 0..1000 {
            b.take(t0);
        }
        assert!(
            (b.tokens(t0) + 5.0).abs() < 1e-9,
            "debt is capped at one burst"
        );
        // The wave waits for the debt to be paid and one token more: 0.6 s at 10/s.
        let wait = b.try_take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.6).abs() < 1e-9, "{wait:?}");
        assert_eq!(b.try_take(t0 + secs(0.6)), Ok(()));
    }

    #[test]
    fn a_clock_going_backwards_neither_adds_nor_removes_tokens() {
        let t0 = Instant::now() + secs(10.0);
        let mut b = Bucket::new(10.0, 2, t0);
        b.take(t0);
        b.take(t0);
        assert!((b.tokens(t0 - secs(5.0))).abs() < 1e-9);
    }

    #[tokio::test]
    async fn an_unlimited_budget_never_waits_and_a_late_wave_write_goes_over_budget() {
        let unlimited = WriteBudget::new(BudgetConfig::UNLIMITED);
        assert!(!unlimited.limited());
        assert_eq!(
            unlimited.wave(Instant::now(), false).await,
            Turn::Within,
            "nothing to wait for"
        );
        let tiny = WriteBudget::new(BudgetConfig {
            per_second: 0.001,
            burst: 1,
        });
        assert_eq!(
            tiny.wave(Instant::now() + secs(5.0), false).await,
            Turn::Within
        );
        // The bucket is empty for the next 1,000 s: a write that must go by now goes over.
        assert_eq!(tiny.wave(Instant::now(), false).await, Turn::Over);
        // And one whose wave is over budget does not wait at all.
        assert_eq!(
            tiny.wave(Instant::now() + secs(60.0), true).await,
            Turn::Over
        );
    }
}
