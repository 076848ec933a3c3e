#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::webhook::certs::tests::{serving_names, t, timings, verifies};

fn pass(
    state: Option<&CertState>,
    publication: Publication,
    configured: &[String],
    now: i64,
) -> Plan {
    plan(
        state,
        publication,
        configured,
        t(now),
        &timings(),
        &serving_names(),
    )
    .unwrap()
}

/// A state created at 0 and published at 1 (overlap 10, rotation due at 60).
fn settled() -> CertState {
    let created = pass(None, Publication::Missing, &[], 0).write.unwrap();
    let published = pass(Some(&created), Publication::Carried, &[], 1);
    assert_eq!(published.step, Step::Nothing);
    let state = published.write.unwrap();
    assert_eq!(state.published_at, Some(t(1)));
    state
}

/// The new CA was added to the Secret at 60 but reached the configuration only at 75 (the
/// update conflicted until then). The certificate it signs is served only one overlap after
/// 75: the pass that publishes records the time and switches nothing.
#[test]
fn a_bundle_published_late_still_gets_its_whole_overlap() {
    let added = pass(Some(&settled()), Publication::Carried, &[], 60);
    assert_eq!(added.step, Step::AddNextCa);
    let added = added.write.unwrap();
    assert_eq!(added.bundle.len(), 2);
    assert_eq!(added.published_at, None);
    for now in 61..75 {
        let p = pass(Some(&added), Publication::Missing, &[], now);
        assert_eq!((p.step, p.write), (Step::Nothing, None), "at {now}");
    }
    let published = pass(Some(&added), Publication::Published, &[], 75);
    assert_eq!(
        published.step,
        Step::Nothing,
        "switched as the bundle was published"
    );
    let published = published.write.unwrap();
    assert_eq!(published.serving, added.serving);
    assert_eq!(published.published_at, Some(t(75)));
    assert_eq!(
        pass(Some(&published), Publication::Carried, &[], 84).step,
        Step::Nothing
    );
    let switched = pass(Some(&published), Publication::Carried, &[], 85);
    assert_eq!(switched.step, Step::Switch);
    assert_ne!(switched.write.unwrap().serving, added.serving);
}

/// A configuration that stopped carrying the bundle (reset by an upgrade, say) clears the
/// publication time: nothing switches until it carries it again for one overlap.
#[test]
fn a_bundle_the_configuration_lost_is_published_again_before_any_switch() {
    let added = pass(Some(&settled()), Publication::Carried, &[], 60)
        .write
        .unwrap();
    let published = pass(Some(&added), Publication::Carried, &[], 61)
        .write
        .unwrap();
    let lost = pass(Some(&published), Publication::Missing, &[], 70);
    assert_eq!(lost.step, Step::Nothing);
    let lost = lost.write.unwrap();
    assert_eq!(lost.published_at, None);
    let again = pass(Some(&lost), Publication::Published, &[], 72)
        .write
        .unwrap();
    assert_eq!(
        pass(Some(&again), Publication::Carried, &[], 81).step,
        Step::Nothing
    );
    assert_eq!(
        pass(Some(&again), Publication::Carried, &[], 82).step,
        Step::Switch
    );
}

/// The Secret stopped parsing (an annotation stripped): the new bundle keeps the CA the
/// configuration carried, so replicas still serving the previous certificate stay trusted,
/// and it leaves one overlap after the new bundle was published.
#[test]
fn a_secret_that_stops_parsing_keeps_the_published_ca_for_one_overlap() {
    let old = settled();
    let configured = old.bundle.clone();
    let created = pass(None, Publication::Missing, &configured, 20);
    assert_eq!(created.step, Step::Create);
    let created = created.write.unwrap();
    assert_eq!(
        created.bundle.len(),
        2,
        "the previous CA left the bundle at once"
    );
    assert_eq!(created.bundle[0], created.ca.cert);
    assert!(created.bundle.contains(&old.ca.cert));
    for serving in [&old.serving, &created.serving] {
        assert!(verifies(&created.bundle, serving, "127.0.0.1", t(20)));
    }
    let published = pass(Some(&created), Publication::Carried, &[], 22)
        .write
        .unwrap();
    assert_eq!(
        pass(Some(&published), Publication::Carried, &[], 31).step,
        Step::Nothing
    );
    let dropped = pass(Some(&published), Publication::Carried, &[], 32);
    assert_eq!(dropped.step, Step::DropOldCa);
    assert_eq!(dropped.write.unwrap().bundle, vec![created.ca.cert]);
}

/// A configuration carrying many CAs (edited by hand) does not make the bundle grow without
/// bound.
#[test]
fn create_keeps_at_most_a_few_previous_cas() {
    let cas: Vec<String> = (0..6)
        .map(|_| {
            crate::webhook::certs::mint_ca(t(0), &timings())
                .unwrap()
                .cert
        })
        .collect();
    let created = pass(None, Publication::Missing, &cas, 0).write.unwrap();
    assert_eq!(created.bundle.len(), 1 + MAX_KEPT);
    assert_eq!(created.bundle[1..], cas[2..]);
}
