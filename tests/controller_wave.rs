//! The renewal wave under the write budget, end to end with short-lived tokens from the fake
//! cloud: the Secrets of a binding are rewritten one after another across the renewal window
//! (not in one burst), each before its old token has used up half its `renewBefore` margin;
//! a namespace created during the wave is bound without waiting for it; and a budget too small
//! for the wave makes the binding say so while every token is still renewed in time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use acr_credential_controller::cluster::budget::BudgetConfig;
use acr_credential_controller::model::wave::expires_at;
use controller_common::{DOMAINS, Harness, SECRET_NAME, auths, pull_secret_names, wait_sa};
use k8s_openapi::api::core::v1::Secret;

/// Token life and renewBefore: renewal about 20 s after issue, the wave's window about 16 s
/// from there (until the old token has 24 s left: half of renewBefore and a tenth more).
const TOKEN_SECONDS: u64 = 60;
const RENEW_BEFORE: &str = "40s";
const HALF_MARGIN_SECONDS: i64 = 20;

fn password(secret: &Secret) -> String {
    auths(secret)[DOMAINS[0]].1.clone()
}

/// Creates namespace `<id>-<slug>` labelled `wave=<id>` (deleted with the test's env).
async fn labelled_namespace(h: &Harness, slug: &str) -> String {
    h.env
        .labelled_namespace(&h.named(slug), serde_json::json!({"wave": h.id}))
        .await
}

/// Every namespace's current Secret.
async fn secrets(h: &Harness, namespaces: &[String]) -> BTreeMap<String, Secret> {
    let mut out = BTreeMap::new();
    for ns in namespaces {
        if let Some(s) = h.secrets(ns).get_opt(SECRET_NAME).await.unwrap() {
            out.insert(ns.clone(), s);
        }
    }
    out
}

/// The binding's `RenewalPaced` condition, once it has one: (status, reason, message).
async fn renewal_paced(h: &Harness, name: &str) -> (String, String, String) {
    support::wait_until(
        Duration::from_secs(90),
        "a RenewalPaced condition",
        || async {
            let b = h.bindings().get(name).await.map_err(|e| e.to_string())?;
            b.status
                .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "RenewalPaced"))
                .map(|c| (c.status, c.reason, c.message))
                .ok_or_else(|| "none yet".to_owned())
        },
    )
    .await
}

/// Polls every Secret of `namespaces` until each holds a token other than its first, checking
/// on every look that each Secret holds a token the cloud accepts and, when a Secret changed,
/// that the token it replaced still had at least half of renewBefore left (by the expiry the
/// Secret recorded). Returns the order in which they changed, and when (since the start).
async fn watch_wave(
    h: &Harness,
    namespaces: &[String],
    mut during: impl AsyncFnMut(&[String]),
) -> Vec<(String, Duration)> {
    let first = secrets(h, namespaces).await;
    assert_eq!(
        first.len(),
        namespaces.len(),
        "every namespace has its Secret"
    );
    let mut changed: Vec<(String, Duration)> = Vec::new();
    let start = Instant::now();
    while changed.len() < namespaces.len() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not every Secret renewed: {changed:?}"
        );
        let now = jiff::Timestamp::now();
        for (ns, s) in secrets(h, namespaces).await {
            let pw = password(&s);
            assert!(
                h.handle().registry_token_valid(&pw),
                "the Secret in {ns} held a token the cloud refuses"
            );
            let old = &first[&ns];
            if pw != password(old) && !changed.iter().any(|(n, _)| *n == ns) {
                let old_expiry = expires_at(old).unwrap();
                let left = old_expiry.duration_since(now).as_secs();
                assert!(
                    left >= HALF_MARGIN_SECONDS,
                    "{ns}: its old token had {left} s left when it was replaced"
                );
                assert_eq!(
                    s.metadata.uid, old.metadata.uid,
                    "{ns}: the Secret was recreated"
                );
                changed.push((ns, start.elapsed()));
                let done: Vec<String> = changed.iter().map(|(n, _)| n.clone()).collect();
                during(&done).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    changed
}

#[tokio::test]
async fn a_paced_wave_renews_every_secret_in_time_and_a_new_namespace_does_not_wait_for_it() {
    let h = Harness::new("ctrl-wave", TOKEN_SECONDS, RENEW_BEFORE).await;
    let mut namespaces = Vec::new();
    for i in 0..8 {
        namespaces.push(labelled_namespace(&h, &format!("w{i}")).await);
    }
    h.with_controller(async |h| {
        let name = h.named("wave");
        h.bind(&name, &h.test_binding().labelled("wave", &h.id))
            .await;
        h.wait_ready(&name, "True", Duration::from_secs(60)).await;
        let initial = secrets(h, &namespaces).await;
        let mut late: Option<(String, usize)> = None;
        let order = watch_wave(h, &namespaces, async |done: &[String]| {
            // Right after the first rewrite: a new namespace, bound while the wave runs.
            if done.len() == 1 && late.is_none() {
                let ns = labelled_namespace(h, "late").await;
                wait_sa(&h.service_accounts(&ns), "default", "bound", |sa| {
                    pull_secret_names(sa).contains(&SECRET_NAME.to_owned())
                })
                .await;
                let old_still = secrets(h, &namespaces)
                    .await
                    .iter()
                    .filter(|(n, s)| password(s) == password(&initial[*n]))
                    .count();
                late = Some((ns, old_still));
            }
        })
        .await;
        // The rewrites came one after another, not in one burst, and the new namespace did
        // not wait for them: it was bound while Secrets still held their old token.
        let (late, old_still) = late.expect("a namespace was created during the wave");
        assert!(
            old_still > 0,
            "the new namespace was bound only after the wave: {order:?}"
        );
        assert!(
            order.first().unwrap().1 < order.last().unwrap().1,
            "every Secret was rewritten at one look: {order:?}"
        );
        let late_secret = h.secrets(&late).get(SECRET_NAME).await.unwrap();
        assert!(h.handle().registry_token_valid(&password(&late_secret)));
        let (status, reason, message) = renewal_paced(h, &name).await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "WithinBudget"),
            "{message}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_budget_too_small_for_the_wave_is_reported_and_exceeded_rather_than_a_token_near_expiry()
{
    let h = Harness::new("ctrl-wave-over", TOKEN_SECONDS, RENEW_BEFORE).await;
    let mut namespaces = Vec::new();
    for i in 0..4 {
        namespaces.push(labelled_namespace(&h, &format!("o{i}")).await);
    }
    // One write a minute: four namespaces cannot be renewed within a 16 s window.
    let config = acr_credential_controller::runtime::ControllerConfig {
        write_budget: BudgetConfig {
            per_second: 1.0 / 60.0,
            burst: 1,
        },
        ..h.config()
    };
    let running = h.start_with(config);
    let name = h.named("over");
    h.bind(&name, &h.test_binding().labelled("wave", &h.id))
        .await;
    // Urgent writes do not wait for the budget: the fan-out binds every namespace.
    h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    watch_wave(&h, &namespaces, async |_: &[String]| {}).await;
    let (status, reason, message) = renewal_paced(&h, &name).await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "RenewalOverBudget"),
        "{message}"
    );
    assert!(message.contains("4 namespaces"), "{message}");
    // Ready stays True: every token is valid with margin.
    h.wait_ready(&name, "True", Duration::from_secs(10)).await;
    running.stop().await;
}
