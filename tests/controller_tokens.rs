//! Token lifecycle end to end with short-lived tokens from the fake cloud: renewal in place,
//! a cloud outage longer than a renewal period, and a controller restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod support;

use std::time::{Duration, Instant};

use acr_fake_cloud::OutageMode;
use base64::Engine;
use controller_common::{
    DOMAINS, Harness, OTHER_INSTANCE, SECRET_NAME, auths, pull_secret_names, ready_condition,
    wait_sa, wait_secret,
};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

async fn events_for(h: &Harness, binding: &str) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(h.client(), "default");
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(binding))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

fn password(secret: &k8s_openapi::api::core::v1::Secret) -> String {
    auths(secret)[DOMAINS[0]].1.clone()
}

#[tokio::test]
async fn renewal_updates_the_secret_in_place_without_a_gap() {
    // 60 s tokens renewed 40 s before expiry: a renewal about 20 s after issue.
    let h = Harness::new("ctrl-renew", 60, "40s").await;
    let ns = h.env.namespace().to_owned();
    h.with_controller(async |h| {
        let name = format!("{}-renew", h.id);
        h.bind(&name, &h.test_binding().names(&[&ns])).await;
        let first = h.wait_ready(&name, "True", Duration::from_secs(60)).await;
        let first_token = first.status.unwrap().token.unwrap();
        let secrets = h.secrets(&ns);
        let before = wait_secret(&secrets, "Secret", |_| true).await;
        let uid = before.metadata.uid.clone().unwrap();
        let old = password(&before);

        // Poll until the data changes; every Secret seen holds a token the cloud accepts.
        let start = Instant::now();
        let renewed = loop {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no renewal within 60 s"
            );
            let s = secrets.get(SECRET_NAME).await.unwrap();
            assert_eq!(
                s.metadata.uid.as_deref(),
                Some(uid.as_str()),
                "Secret was recreated"
            );
            let pw = password(&s);
            assert!(
                h.handle().registry_token_valid(&pw),
                "the Secret held an invalid token"
            );
            if pw != old {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(auths(&renewed).len(), DOMAINS.len());
        let b = h.wait_ready(&name, "True", Duration::from_secs(10)).await;
        let token = b.status.unwrap().token.unwrap();
        assert!(
            token.expires_at > first_token.expires_at,
            "status token times did not move"
        );
        // Events: issued, then renewed.
        support::wait_until(
            Duration::from_secs(10),
            "TokenIssued and TokenRenewed Events",
            || async {
                let reasons: Vec<String> = events_for(h, &name)
                    .await
                    .into_iter()
                    .map(|e| e.1)
                    .collect();
                (reasons.contains(&"TokenIssued".to_owned())
                    && reasons.contains(&"TokenRenewed".to_owned()))
                .then_some(())
                .ok_or(format!("{reasons:?}"))
            },
        )
        .await;
    })
    .await;
}

/// The "valid until ..." part of a token Event's note.
fn expiry(note: &str) -> Option<String> {
    let start = note.find("valid until ")?;
    let rest = &note[start..];
    Some(rest.split(',').next().unwrap_or(rest).to_owned())
}

#[tokio::test]
async fn each_renewal_event_tells_its_own_expiry() {
    // 60 s tokens renewed 40 s before expiry: renewals about 20 s and 40 s after issue.
    let h = Harness::new("ctrl-events", 60, "40s").await;
    let ns = h.env.namespace().to_owned();
    h.with_controller(async |h| {
        let name = format!("{}-events", h.id);
        h.bind(&name, &h.test_binding().names(&[&ns])).await;
        h.wait_ready(&name, "True", Duration::from_secs(60)).await;
        // Two renewals: two TokenRenewed notes, each with the expiry of its own token (an
        // Event recorder that folds by reason keeps the first note for both).
        let expiries = support::wait_until(
            Duration::from_secs(90),
            "two TokenRenewed Events with different expiries",
            || async {
                let events = events_for(h, &name).await;
                let mut renewed: Vec<String> = events
                    .iter()
                    .filter(|e| e.1 == "TokenRenewed")
                    .filter_map(|e| expiry(&e.2))
                    .collect();
                renewed.sort();
                renewed.dedup();
                (renewed.len() >= 2)
                    .then_some(renewed)
                    .ok_or(format!("{events:?}"))
            },
        )
        .await;
        // The issue Event keeps the first token's expiry.
        let issued: Vec<String> = events_for(h, &name)
            .await
            .iter()
            .filter(|e| e.1 == "TokenIssued")
            .filter_map(|e| expiry(&e.2))
            .collect();
        assert_eq!(issued.len(), 1, "{issued:?}");
        assert!(!expiries.contains(&issued[0]), "{issued:?} {expiries:?}");
    })
    .await;
}

#[tokio::test]
async fn cloud_outage_keeps_the_secret_and_recovers() {
    let h = Harness::new("ctrl-outage", 60, "40s").await;
    let ns = h.env.namespace().to_owned();
    h.with_controller(async |h| {
        let name = format!("{}-outage", h.id);
        h.bind(&name, &h.test_binding().names(&[&ns])).await;
        h.wait_ready(&name, "True", Duration::from_secs(60)).await;
        let secrets = h.secrets(&ns);
        let before = wait_secret(&secrets, "Secret", |_| true).await;
        let bytes = before.data.clone();
        // The cloud is down for longer than the ~20 s renewal period.
        let outage = Duration::from_secs(32);
        h.handle().outage(outage, OutageMode::Unavailable);
        let outage_end = Instant::now() + outage;

        // Degraded: still Ready (the token is valid), reason RenewalFailing with the cloud's error.
        let degraded = support::wait_until(Duration::from_secs(40), "Degraded condition", || {
            let api = h.bindings();
            let name = name.clone();
            async move {
                let b = api.get(&name).await.map_err(|e| e.to_string())?;
                let c = ready_condition(&b);
                (c.reason == "RenewalFailing")
                    .then_some(c.clone())
                    .ok_or(format!("{c:?}"))
            }
        })
        .await;
        assert_eq!(degraded.status, "True");
        assert!(
            degraded.message.contains("Degraded"),
            "{}",
            degraded.message
        );
        assert!(
            degraded.message.contains("ServiceUnavailable"),
            "{}",
            degraded.message
        );
        assert!(
            degraded.message.contains("RequestId"),
            "{}",
            degraded.message
        );
        // While the old token is valid the Secret stays byte-identical.
        while Instant::now() < outage_end {
            let s = secrets.get(SECRET_NAME).await.unwrap();
            assert_eq!(s.data, bytes, "Secret changed during the outage");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let warnings: Vec<_> = events_for(h, &name)
            .await
            .into_iter()
            .filter(|e| e.0 == "Warning")
            .collect();
        assert!(!warnings.is_empty(), "no Warning Event");
        assert!(
            warnings.iter().any(|e| e.2.contains("ServiceUnavailable")),
            "{warnings:?}"
        );

        // Recovery within one backoff step (capped at a quarter of the ~28 s left, so < 10 s).
        let recovered_at = Instant::now();
        let after = wait_secret(&secrets, "a renewed Secret", |s| s.data != bytes).await;
        assert!(h.handle().registry_token_valid(&password(&after)));
        // The Secret is written before the status: wait for the status to catch up.
        let b = h
            .wait_ready_reason(&name, "True", Some("Reconciled"), Duration::from_secs(15))
            .await;
        let ready = ready_condition(&b);
        assert_eq!(ready.reason, "Reconciled", "{ready:?}");
        assert!(
            recovered_at.elapsed() < Duration::from_secs(15),
            "recovery took {:?}",
            recovered_at.elapsed()
        );
        support::wait_until(Duration::from_secs(10), "TokenRecovered Event", || async {
            events_for(h, &name)
                .await
                .iter()
                .any(|e| e.1 == "TokenRecovered")
                .then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn restart_converges_without_duplicates_and_one_call_per_token() {
    let h = Harness::new("ctrl-restart", 3600, "15m").await;
    let ns1 = h.env.namespace().to_owned();
    let label = format!("restart-{}", h.id);
    h.env
        .apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns1}, labels: {{acr-test: {label}}}}}\n"))
        .await;
    let running = h.start();
    let name = format!("{}-restart", h.id);
    h.bind(&name, &h.test_binding().labelled("acr-test", &label))
        .await;
    // A second binding shares ns1's Secret.
    let other = format!("{}-restart2", h.id);
    let other_instance = h.test_binding().instance(OTHER_INSTANCE).names(&[&ns1]);
    h.bind(&other, &other_instance).await;
    h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    h.wait_ready(&other, "True", Duration::from_secs(60)).await;
    wait_secret(&h.secrets(&ns1), "both registries", |s| {
        auths(s).len() == DOMAINS.len() + 1
    })
    .await;
    wait_sa(&h.service_accounts(&ns1), "default", "bound", |sa| {
        pull_secret_names(sa).contains(&SECRET_NAME.to_owned())
    })
    .await;
    running.stop().await;
    assert_eq!(h.handle().count_ok("cr:GetAuthorizationToken"), 2);
    let before_restart = h.secrets(&ns1).get(SECRET_NAME).await.unwrap();

    // While it is down: a new namespace joins.
    let ns2 = h.env.extra_namespace("ctrl-restart-b").await;
    h.env
        .apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns2}, labels: {{acr-test: {label}}}}}\n"))
        .await;
    let running = h.start();
    wait_secret(&h.secrets(&ns2), "Secret in the new namespace", |_| true).await;
    for ns in [&ns1, &ns2] {
        let sa = wait_sa(&h.service_accounts(ns), "default", "bound", |sa| {
            pull_secret_names(sa).contains(&SECRET_NAME.to_owned())
        })
        .await;
        assert_eq!(
            pull_secret_names(&sa)
                .iter()
                .filter(|n| *n == SECRET_NAME)
                .count(),
            1,
            "duplicate entry in {ns}"
        );
    }
    h.wait_summary(&name, "2/2", Duration::from_secs(30)).await;
    h.wait_ready(&other, "True", Duration::from_secs(30)).await;
    // The restarted controller adopted the still-valid tokens from its Secrets: no cloud call,
    // and the shared Secret was not rewritten; the new namespace got the same token.
    assert_eq!(h.handle().count_ok("cr:GetAuthorizationToken"), 2);
    let after_restart = h.secrets(&ns1).get(SECRET_NAME).await.unwrap();
    assert_eq!(
        after_restart.metadata.resource_version,
        before_restart.metadata.resource_version
    );
    let new_ns = h.secrets(&ns2).get(SECRET_NAME).await.unwrap();
    assert_eq!(
        auths(&new_ns)[DOMAINS[0]],
        auths(&after_restart)[DOMAINS[0]]
    );
    running.stop().await;
}

#[tokio::test]
async fn a_token_a_tenant_planted_is_not_adopted_after_a_restart() {
    let h = Harness::new("ctrl-planted", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let running = h.start();
    let name = format!("{}-planted", h.id);
    h.bind(&name, &h.test_binding().names(&[&ns])).await;
    h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    let secrets = h.secrets(&ns);
    let issued = wait_secret(&secrets, "Secret", |_| true).await;
    running.stop().await;
    assert_eq!(h.handle().count_ok("cr:GetAuthorizationToken"), 1);

    // While the controller is down, a tenant who may edit Secrets in the namespace plants a
    // token of their own that claims to live until 2100 (owner references and labels stay).
    let mut planted = issued.clone();
    let forged = "forged";
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("cr_temp_user:{forged}"));
    let doc = serde_json::json!({"auths": DOMAINS.iter().map(|d| {
        (d.to_string(), serde_json::json!({"username": "cr_temp_user", "password": forged, "auth": auth}))
    }).collect::<serde_json::Map<_, _>>()});
    planted.data = Some(
        [(
            ".dockerconfigjson".to_owned(),
            k8s_openapi::ByteString(serde_json::to_vec(&doc).unwrap()),
        )]
        .into(),
    );
    planted.metadata.annotations = Some(
        [(
            "acrcredentials.io/expires-at".to_owned(),
            "2100-01-01T00:00:00Z".to_owned(),
        )]
        .into(),
    );
    secrets
        .replace(SECRET_NAME, &kube::api::PostParams::default(), &planted)
        .await
        .unwrap();

    // After the restart the controller asks the cloud and replaces the planted token.
    let running = h.start();
    let fixed = wait_secret(&secrets, "a token the cloud issued", |s| {
        h.handle().registry_token_valid(&password(s))
    })
    .await;
    assert_ne!(password(&fixed), forged);
    assert_eq!(h.handle().count_ok("cr:GetAuthorizationToken"), 2);
    let b = h.wait_ready(&name, "True", Duration::from_secs(30)).await;
    let expires = b.status.unwrap().token.unwrap().expires_at.unwrap().0;
    assert!(
        expires < "2099-01-01T00:00:00Z".parse().unwrap(),
        "status reports the planted expiry {expires}"
    );
    running.stop().await;
}
