//! Controller kill -9: killed every 5 s, 10 times, during a renewal wave over 1,000
//! namespaces, restarted each time. A poller lists every pull Secret continuously: at every
//! sample each one parses and holds a token the fake issued and that has not expired; at the
//! end none is missing, no ServiceAccount references ours twice, and the cloud was asked at most
//! once per token per restart.

use std::time::{Duration, Instant};

use crate::common::{Controller, Row, Start, bind_set, census, converge, namespace_set, scale};
use crate::controller_common::Harness;

const API: &str = "cr:GetAuthorizationToken";

#[tokio::test]
#[ignore = "a thousand namespaces and ten kills: run by scripts/faults.sh"]
async fn kill_9_during_a_renewal_wave() {
    let n = scale(50, 1000);
    let kills = 10u32;
    // 120 s tokens renewed 80 s before expiry: the wave starts 32-40 s after issue, and the old
    // token is still valid for 80 s, well past the 50 s of kills.
    let h = Harness::new("faults-kill", 120, "80s").await;
    let set = format!("{}-k", h.id);
    let namespaces = namespace_set(&h, &set, n).await;
    let mut controller = Controller::start(&h, Start::default()).await;
    bind_set(&h, &set, &set).await;
    let first = converge(&h, &namespaces, Duration::from_secs(300)).await;
    let b = h.wait_ready(&set, "True", Duration::from_secs(60)).await;
    let renew: jiff::Timestamp = b.status.unwrap().token.unwrap().renew_at.unwrap().0;
    let lead = jiff::Timestamp::now().duration_until(renew) - jiff::SignedDuration::from_secs(3);
    tokio::time::sleep(Duration::try_from(lead).unwrap_or_default()).await;

    // Continuous samples from here until the end: every pull Secret, every time.
    let calls_before = h.handle().count(API);
    let t0 = Instant::now();
    let mut samples = 0usize;
    let mut violations: Vec<String> = Vec::new();
    let sample =
        |c: Option<crate::common::Census>, samples: &mut usize, violations: &mut Vec<String>| {
            if let Some(c) = c {
                *samples += 1;
                if !c.missing.is_empty() || !c.invalid.is_empty() {
                    violations.push(format!(
                        "{:.1} s: missing {:?}, invalid {:?}",
                        t0.elapsed().as_secs_f64(),
                        &c.missing[..c.missing.len().min(3)],
                        &c.invalid[..c.invalid.len().min(3)]
                    ));
                }
            }
        };
    let mut restarts = 0u32;
    for _ in 0..kills {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            sample(census(&h, &namespaces).await, &mut samples, &mut violations);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        controller.kill();
        controller = Controller::start(&h, Start::default()).await;
        restarts += 1;
    }
    // After the last restart: keep sampling until converged (at most 2 minutes).
    let settle = Instant::now();
    let mut last = None;
    while settle.elapsed() < Duration::from_secs(120) {
        let c = census(&h, &namespaces).await;
        let complete = c.as_ref().is_some_and(|c| c.complete(n));
        last = c.as_ref().map(|c| (c.valid, c.bound, c.duplicates.len()));
        sample(c, &mut samples, &mut violations);
        if complete {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = settle.elapsed();
    let calls = h.handle().count(API) - calls_before;
    let final_census = census(&h, &namespaces).await.unwrap_or_default();

    let mut row = Row::new(
        3,
        "controller kill -9",
        format!(
            "kill -9 every 5 s, {kills}×, from 3 s before the renewal of one binding over {n} namespaces"
        ),
    );
    row.figure = format!(
        "{samples} samples of all {n} Secrets: {} with a missing, unparsable or expired one; at the end {} valid, {} bound, {} duplicate entries, converged {:.1} s after the last restart; token requests: {calls} for {restarts} restarts",
        violations.len(),
        final_census.valid,
        final_census.bound,
        final_census.duplicates.len(),
        settled.as_secs_f64()
    );
    row.check(first.is_ok(), || format!("no first fan-out: {first:?}"));
    row.check(violations.is_empty(), || {
        format!("bad samples: {:?}", &violations[..violations.len().min(5)])
    });
    row.check(final_census.complete(n), || {
        format!("not converged at the end: {last:?}")
    });
    row.check(u64::from(calls as u32) <= u64::from(restarts) + 1, || {
        format!("{calls} token requests for {restarts} restarts (at most one per restart, plus the renewal)")
    });
    row.check(controller.running(), || "the last controller exited".into());
    row.finish();
}
