#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::*;

pub(crate) fn timings() -> CertTimings {
    CertTimings {
        validity: Duration::from_secs(100),
        renew_before: Duration::from_secs(40),
        overlap: Duration::from_secs(10),
    }
}

pub(crate) fn serving_names() -> ServingNames {
    ServingNames {
        dns_names: vec!["acr-webhook.acr-system.svc".into()],
        ip_addresses: vec!["127.0.0.1".parse().unwrap()],
    }
}

pub(crate) fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// Whether the state's serving certificate verifies, for `name` at `now`, against `bundle`.
pub(crate) fn verifies(bundle: &[String], serving: &Pair, name: &str, now: Timestamp) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for pem in bundle {
        roots
            .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let leaf = CertificateDer::from_pem_slice(serving.cert.as_bytes()).unwrap();
    let when = UnixTime::since_unix_epoch(Duration::from_secs(now.as_second() as u64));
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            when,
        )
        .is_ok()
}

/// One leader pass at `now` over `state`, the configuration carrying its bundle (published
/// at the pass after each step).
fn step(state: Option<&CertState>, now: Timestamp) -> (Step, Option<CertState>) {
    use crate::webhook::plan::{Publication, plan};
    let publication = if state.is_some() {
        Publication::Carried
    } else {
        Publication::Missing
    };
    let p = plan(state, publication, &[], now, &timings(), &serving_names()).unwrap();
    (p.step, p.write)
}

#[test]
fn timings_are_checked() {
    assert!(timings().validate().is_ok());
    assert!(CertTimings::default().validate().is_ok());
    let tight = CertTimings {
        renew_before: Duration::from_secs(20),
        ..timings()
    };
    assert!(tight.validate().is_err());
    let short = CertTimings {
        validity: Duration::from_secs(40),
        ..timings()
    };
    assert!(short.validate().is_err());
}

#[test]
fn a_fresh_pair_serves_the_names_and_ip() {
    let (s, state) = step(None, t(0));
    assert_eq!(s, Step::Create);
    let state = state.unwrap();
    assert_eq!(state.bundle, vec![state.ca.cert.clone()]);
    for name in ["acr-webhook.acr-system.svc", "127.0.0.1"] {
        assert!(
            verifies(&state.bundle, &state.serving, name, t(1)),
            "{name}"
        );
    }
    assert!(!verifies(&state.bundle, &state.serving, "other.svc", t(1)));
    assert!(!verifies(
        &state.bundle,
        &state.serving,
        "127.0.0.1",
        t(101)
    ));
    assert_eq!(state.not_after, t(100));
    assert_eq!(step(Some(&state), t(59)).0, Step::Nothing);
}

/// Through a whole rotation, whatever the API server trusts (the bundle published at the
/// previous step or at this one) verifies whatever a replica serves (the certificate of the
/// previous step or of this one).
#[test]
fn every_step_of_a_rotation_keeps_old_and_new_verifying() {
    let mut state = step(None, t(0)).1.unwrap();
    let mut now = 0;
    let mut seen = Vec::new();
    while seen.len() < 7 {
        now += 1;
        let (s, next) = step(Some(&state), t(now));
        let Some(next) = next else { continue };
        if s == Step::Nothing {
            // The publication recorded.
            assert_eq!(next.published_at, Some(t(now)));
            state = next;
            continue;
        }
        for bundle in [&state.bundle, &next.bundle] {
            for serving in [&state.serving, &next.serving] {
                assert!(
                    verifies(bundle, serving, "127.0.0.1", t(now)),
                    "step {s:?} at {now}"
                );
            }
        }
        seen.push((s, now));
        state = next;
    }
    let steps: Vec<Step> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        steps,
        [
            Step::AddNextCa,
            Step::Switch,
            Step::DropOldCa,
            Step::AddNextCa,
            Step::Switch,
            Step::DropOldCa,
            Step::AddNextCa
        ]
    );
    // The steps are `overlap` apart, counted from the publication of the bundle (one pass
    // after the step that changed it), and rotation starts `renew_before` ahead of expiry.
    assert_eq!(seen[0].1, 60);
    assert_eq!(seen[1].1, 71);
    assert_eq!(seen[2].1, 81);
    assert_eq!(seen[3].1, 71 + 60);
}

#[test]
fn a_name_change_reissues_from_the_same_ca_and_expiry_starts_over() {
    let state = step(None, t(0)).1.unwrap();
    let other = ServingNames {
        dns_names: vec!["renamed.acr-system.svc".into()],
        ip_addresses: vec![],
    };
    let s = next_step(Some(&state), t(5), &timings(), &other);
    assert_eq!(s, Step::Reissue);
    let next = take_step(s, Some(&state), t(5), &timings(), &other)
        .unwrap()
        .unwrap();
    assert_eq!(next.ca, state.ca);
    assert!(verifies(
        &state.bundle,
        &next.serving,
        "renamed.acr-system.svc",
        t(6)
    ));
    assert_eq!(step(Some(&state), t(100)).0, Step::Create);
}

#[test]
fn the_secret_round_trips_and_incomplete_ones_are_none() {
    let state = step(Some(&step(None, t(0)).1.unwrap()), t(60)).1.unwrap();
    assert!(state.next_ca.is_some());
    let (data, annotations) = to_secret(&state);
    assert_eq!(from_secret(&data, &annotations), Some(state.clone()));
    let published = CertState {
        published_at: Some(t(61)),
        ..state.clone()
    };
    let (pdata, pannotations) = to_secret(&published);
    assert_eq!(from_secret(&pdata, &pannotations), Some(published));
    let mut partial = data.clone();
    partial.remove(key::TLS_KEY);
    assert_eq!(from_secret(&partial, &annotations), None);
    assert_eq!(from_secret(&data, &BTreeMap::new()), None);
    assert_eq!(split_pem(&bundle_pem(&state)), state.bundle);
    assert!(!format!("{state:?}").contains("PRIVATE KEY"));
}

/// Minted certificates are valid from an hour before: an API server whose clock lags the
/// leader's by up to that still accepts a fresh one (they were backdated 60 s).
#[test]
fn certificates_are_valid_from_an_hour_before_they_are_minted() {
    let state = step(None, t(0)).1.unwrap();
    assert!(verifies(
        &state.bundle,
        &state.serving,
        "127.0.0.1",
        t(-3590)
    ));
    assert!(!verifies(
        &state.bundle,
        &state.serving,
        "127.0.0.1",
        t(-3610)
    ));
    let next = step(Some(&state), t(60)).1.unwrap();
    let next_ca = next.next_ca.unwrap();
    let (serving, _) = mint_serving(&next_ca, t(60), &timings(), &serving_names()).unwrap();
    assert!(verifies(
        &[next_ca.cert],
        &serving,
        "127.0.0.1",
        t(60 - 3590)
    ));
}
