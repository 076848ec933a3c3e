//! Long cloud outage: the fake is unavailable for longer than a token's life (60 s tokens, a
//! 90 s outage starting right after issue). While the token is valid the Secret stays
//! byte-identical; the binding says Degraded (Ready=True, RenewalFailing) within 2 minutes and
//! TokenExpired once it expired; calls stay within the backoff schedule (figure: calls per
//! minute for the one registry); after the outage the Secret is renewed within one backoff step.

use std::time::{Duration, Instant};

use acr_credential_controller::cluster::tokens::retry_delay;
use acr_fake_cloud::OutageMode;

use crate::common::{Controller, Row, Start, binding_spec, password, ready_of, scale};
use crate::controller_common::{Harness, SECRET_NAME, wait_secret};

const API: &str = "cr:GetAuthorizationToken";
/// Attempts the cloud client makes per token request for a 503 (`HttpConfig::default`).
const INLINE_ATTEMPTS: u64 = 3;

/// Token requests the controller's schedule allows from `renew` until `end` (seconds since
/// issue) for a token expiring at `expiry`, and the backoff step in force at `end`: the
/// product's `retry_delay`, simulated (the doubling starts again once the token expired).
fn scheduled_attempts(renew: f64, expiry: f64, end: f64) -> (u64, f64) {
    let (mut t, mut n, mut last_delay) = (renew, 0u64, 0.0);
    let (mut failures, mut without_token) = (0u32, 0u32);
    while t < end {
        n += 1;
        failures += 1;
        let left = (expiry - t > 0.0).then(|| Duration::from_secs_f64(expiry - t));
        let counted = match left {
            Some(_) => failures,
            None => {
                without_token += 1;
                without_token
            }
        };
        last_delay = retry_delay(counted, left).as_secs_f64();
        t += last_delay;
    }
    (n, last_delay)
}

#[tokio::test]
#[ignore = "waits out a token's life: run by scripts/faults.sh"]
async fn long_cloud_outage_keeps_the_secret_then_recovers() {
    let lifetime = 60u64;
    let outage = Duration::from_secs(scale(90, 90));
    let h = Harness::new("faults-outage", lifetime, "40s").await;
    let ns = h.env.namespace().to_owned();
    let mut controller = Controller::start(&h, Start::default()).await;
    let name = format!("{}-outage", h.id);
    h.binding(&name, &binding_spec(&h, &format!("{{names: [{ns}]}}")))
        .await;
    let b = h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    let token = b.status.unwrap().token.unwrap();
    let issued: jiff::Timestamp = token.issued_at.unwrap().0;
    let expires: jiff::Timestamp = token.expires_at.unwrap().0;
    let renew: jiff::Timestamp = token.renew_at.unwrap().0;
    let secrets = h.secrets(&ns);
    let before = wait_secret(&secrets, "the pull Secret", |_| true)
        .await
        .data;

    h.handle().clear_log();
    h.handle().outage(outage, OutageMode::Unavailable);
    let start = Instant::now();
    let outage_start = jiff::Timestamp::now();
    let (mut degraded_at, mut expired_at, mut changed_while_valid) = (None, None, 0usize);
    let mut recovered_at = None;
    let deadline = outage + Duration::from_secs(scale(120, 320));
    while start.elapsed() < deadline && recovered_at.is_none() {
        let now = jiff::Timestamp::now();
        if let Ok(s) = secrets.get(SECRET_NAME).await {
            if now < expires && s.data != before {
                changed_while_valid += 1;
            }
            if start.elapsed() >= outage
                && s.data != before
                && password(&s).is_some_and(|p| h.handle().registry_token_valid(&p))
            {
                recovered_at = Some(start.elapsed() - outage);
            }
        }
        if let Some((status, reason, _)) = ready_of(&h, &name).await {
            if degraded_at.is_none() && status == "True" && reason == "RenewalFailing" {
                degraded_at = Some(start.elapsed());
            }
            if expired_at.is_none() && status == "False" && reason == "TokenExpired" {
                expired_at = Some(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Calls while the cloud was down, against the schedule (seconds since issue).
    let since = |t: jiff::Timestamp| t.duration_since(issued).as_secs_f64();
    let outage_end = outage_start
        .checked_add(jiff::SignedDuration::try_from(outage).unwrap())
        .unwrap();
    let failed: Vec<jiff::Timestamp> = h
        .handle()
        .log()
        .into_iter()
        .filter(|e| e.api == API && e.status == 503)
        .map(|e| e.time)
        .collect();
    let minutes = outage.as_secs_f64() / 60.0;
    let per_minute = failed.len() as f64 / minutes;
    let (attempts, last_step) = scheduled_attempts(
        since(renew).max(since(outage_start)),
        since(expires),
        since(outage_end),
    );
    let cap = INLINE_ATTEMPTS * (attempts + 1);
    let expired_late = expired_at.map(|t| t.duration_since(expires).as_secs_f64());

    let mut row = Row::new(
        4,
        "long cloud outage",
        format!(
            "the fake answers 503 for {} s; tokens live {lifetime} s (renewBefore 40s)",
            outage.as_secs()
        ),
    );
    row.figure = format!(
        "{} calls ({per_minute:.1}/min for the one registry; schedule allows {cap}); Degraded after {}; TokenExpired {} after expiry; recovered {} after the outage (backoff step then {last_step:.0} s); Secret changed while valid: {changed_while_valid}×",
        failed.len(),
        degraded_at.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        expired_late.map_or("never".into(), |d| format!("{d:.1} s")),
        recovered_at.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())),
    );
    row.check(changed_while_valid == 0, || {
        "the Secret changed while its token was valid".into()
    });
    row.check(
        degraded_at.is_some_and(|d| d <= Duration::from_secs(120)),
        || format!("not Degraded within 2 min: {degraded_at:?}"),
    );
    row.check(expired_late.is_some_and(|d| d < 10.0), || {
        format!("TokenExpired not reported within 10 s of expiry: {expired_late:?}")
    });
    row.check(failed.len() as u64 <= cap, || {
        format!(
            "{} calls during the outage, the schedule allows {cap}",
            failed.len()
        )
    });
    row.check(
        recovered_at.is_some_and(|r| r.as_secs_f64() <= last_step + 2.0),
        || {
            format!(
                "recovery {recovered_at:?} after the outage, one backoff step is {last_step:.0} s"
            )
        },
    );
    row.check(controller.running(), || "the controller exited".into());
    row.finish();
}
