use super::*;

fn spec(holder: Option<&str>, seconds: Option<i32>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: holder.map(str::to_owned),
        lease_duration_seconds: seconds,
        ..LeaseSpec::default()
    }
}

const D: Duration = Duration::from_secs(15);

#[test]
fn absent_lease_is_created() {
    assert_eq!(decide(None, "a", Duration::ZERO, D), Decision::Create);
}

#[test]
fn own_lease_is_renewed_however_old() {
    let s = spec(Some("a"), Some(15));
    assert_eq!(
        decide(Some(&s), "a", Duration::from_secs(60), D),
        Decision::Renew
    );
}

#[test]
fn free_or_released_lease_is_acquired_at_once() {
    for s in [spec(None, Some(1)), spec(Some(""), None)] {
        assert_eq!(decide(Some(&s), "b", Duration::ZERO, D), Decision::Acquire);
    }
}

#[test]
fn live_lease_of_another_is_followed_until_it_expires() {
    let s = spec(Some("a"), Some(15));
    assert_eq!(
        decide(Some(&s), "b", Duration::from_secs(14), D),
        Decision::Follow { holder: "a".into() }
    );
    assert_eq!(
        decide(Some(&s), "b", Duration::from_secs(16), D),
        Decision::Acquire
    );
    // The Lease's own duration wins over ours.
    let short = spec(Some("a"), Some(3));
    assert_eq!(
        decide(Some(&short), "b", Duration::from_secs(4), D),
        Decision::Acquire
    );
}

#[test]
fn timings_follow_client_go_rules() {
    assert_eq!(LeaseTimings::default().validate(), Ok(()));
    let t = |l, r, p| LeaseTimings {
        lease_duration: Duration::from_secs(l),
        renew_deadline: Duration::from_secs(r),
        retry_period: Duration::from_secs(p),
    };
    assert!(t(10, 10, 2).validate().is_err(), "lease must exceed renew");
    assert!(
        t(15, 12, 10).validate().is_err(),
        "renew must exceed 1.2 × retry"
    );
    assert!(t(15, 10, 0).validate().is_err(), "retry must be positive");
    assert_eq!(t(6, 4, 1).validate(), Ok(()));
}

#[tokio::test]
async fn without_election_a_replica_always_leads_and_never_loses() {
    let l = Leadership::always();
    assert!(l.is_leader());
    assert!(l.loop_alive(Duration::ZERO));
    l.acquired().await;
    let lost = tokio::time::timeout(Duration::from_millis(50), l.lost()).await;
    assert!(lost.is_err(), "leadership without election is never lost");
}

#[tokio::test]
async fn a_loop_that_dies_while_leading_counts_as_lost() {
    let (tx, rx) = watch::channel(true);
    let l = Leadership {
        leading: rx,
        heartbeat: Some((Instant::now(), Arc::new(AtomicU64::new(0)))),
    };
    assert!(l.is_leader());
    drop(tx);
    assert!(!l.is_leader(), "no loop, no writes");
    tokio::time::timeout(Duration::from_secs(1), l.lost())
        .await
        .expect("lost() completes when the loop is gone");
}
