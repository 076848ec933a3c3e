//! Throttling: the fake answers `Throttling.User` with `x-acs-retry-after`; the controller
//! waits at least that long between its calls (figure: minimum spacing), with no tight loop,
//! and binds once the throttling ends.

use std::time::Duration;

use crate::common::{Controller, Row, Start, binding_spec, scale};
use crate::controller_common::Harness;

const API: &str = "cr:GetAuthorizationToken";

#[tokio::test]
async fn throttling_honours_retry_after() {
    let retry_after_ms = 2000u64;
    let window = Duration::from_secs(scale(15, 40));
    let h = Harness::new("faults-throttle", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let _controller = Controller::start(&h, Start::default()).await;
    h.handle().throttle(API, retry_after_ms, None);
    let name = format!("{}-throttle", h.id);
    h.binding(&name, &binding_spec(&h, &format!("{{names: [{ns}]}}")))
        .await;
    tokio::time::sleep(window).await;
    h.handle().clear_faults();
    h.wait_ready(&name, "True", Duration::from_secs(120)).await;

    let calls: Vec<_> = h
        .handle()
        .log()
        .into_iter()
        .filter(|e| e.api == API)
        .collect();
    let throttled = calls.iter().filter(|e| e.status != 200).count();
    let spacing: Vec<f64> = calls
        .windows(2)
        .map(|w| w[1].time.duration_since(w[0].time).as_secs_f64() * 1000.0)
        .collect();
    let min = spacing.iter().copied().fold(f64::INFINITY, f64::min);
    let mut row = Row::new(
        5,
        "throttling",
        format!(
            "{API} throttled with x-acs-retry-after: {retry_after_ms} ms for {} s",
            window.as_secs()
        ),
    );
    row.figure = format!(
        "min spacing {min:.0} ms between {} calls ({throttled} throttled) in {:.0} s",
        calls.len(),
        window.as_secs_f64()
    );
    row.check(throttled >= 2, || {
        format!("only {throttled} throttled calls: the scenario did not throttle")
    });
    let timeline: Vec<String> = calls
        .iter()
        .map(|e| format!("{} {} {}", e.time, e.caller, e.status))
        .collect();
    row.check(min >= retry_after_ms as f64 * 0.95, || {
        format!("calls {min:.0} ms apart, retry-after was {retry_after_ms} ms: {timeline:?}")
    });
    row.finish();
}
