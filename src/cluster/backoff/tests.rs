use std::time::{Duration, Instant};

use super::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn retries_double_from_five_seconds_up_to_five_minutes() {
    let schedule: Vec<Duration> = (1..=10).map(retry_delay).collect();
    assert_eq!(
        schedule,
        [
            secs(5),
            secs(10),
            secs(20),
            secs(40),
            secs(80),
            secs(160),
            secs(300),
            secs(300),
            secs(300),
            secs(300)
        ]
    );
    // No overflow however long an object keeps failing.
    assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
    assert_eq!(retry_delay(0), BASE_RETRY);
}

#[test]
fn each_object_backs_off_on_its_own_and_a_success_resets_it() {
    let backoff = Backoff::default();
    let now = Instant::now();
    let a = "AcrRegistryBinding/a";
    let b = "AcrRegistryBinding/b";
    assert_eq!(backoff.failed(a, now), secs(5));
    assert_eq!(backoff.failed(a, now), secs(10));
    assert_eq!(backoff.failed(a, now), secs(20));
    // Another object starts from the beginning.
    assert_eq!(backoff.failed(b, now), secs(5));
    // A success forgets a's failures: its next failure waits 5 s again.
    backoff.succeeded(a);
    assert_eq!(backoff.len(), 1);
    assert_eq!(backoff.failed(a, now), secs(5));
    assert_eq!(backoff.failed(b, now), secs(10));
}

#[test]
fn objects_that_stopped_failing_long_ago_are_forgotten() {
    let backoff = Backoff::default();
    let start = Instant::now();
    backoff.failed("AcrRegistryBinding/gone", start);
    // Any object still failing is retried at least every MAX_RETRY; one not seen for twice
    // that is gone.
    backoff.failed("AcrRegistryBinding/other", start + MAX_RETRY * 2 + secs(1));
    assert_eq!(backoff.len(), 1);
}
