#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use super::*;

#[tokio::test]
async fn locks_of_namespaces_nobody_holds_are_forgotten() {
    let locks = NamespaceLocks::default();
    // Namespace churn: 10,000 short-lived namespaces, each reconciled once.
    for i in 0..10_000 {
        let _g = locks.lock(&format!("ci-{i}")).await;
    }
    assert_eq!(locks.len(), 0, "the lock map kept namespaces nobody holds");
    let held = locks.lock("a").await;
    assert_eq!(locks.len(), 1);
    drop(held);
    assert!(locks.is_empty());
}

#[tokio::test]
async fn a_namespace_lock_excludes_and_survives_while_someone_waits() {
    let locks = Arc::new(NamespaceLocks::default());
    let first = locks.lock("team-a").await;
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let waiter = {
        let locks = locks.clone();
        tokio::spawn(async move {
            let _g = locks.lock("team-a").await;
            let _ = tx.send(());
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(rx.try_recv().is_err(), "two holders of one namespace lock");
    // Another namespace is not blocked.
    drop(locks.lock("team-b").await);
    // The holder lets go while the waiter waits: the entry must stay one lock, not be replaced
    // by a new one a third caller could take at the same time.
    drop(first);
    waiter.await.unwrap();
    rx.await.unwrap();
    assert!(locks.is_empty());
}

#[tokio::test]
async fn a_fresh_lock_after_removal_still_excludes() {
    let locks = Arc::new(NamespaceLocks::default());
    drop(locks.lock("x").await);
    let held = locks.lock("x").await;
    let again = {
        let locks = locks.clone();
        tokio::spawn(async move { drop(locks.lock("x").await) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!again.is_finished(), "the lock was taken twice");
    drop(held);
    again.await.unwrap();
    assert!(locks.is_empty());
}

#[tokio::test]
async fn a_wait_given_up_leaves_no_entry_behind() {
    let locks = Arc::new(NamespaceLocks::default());
    let held = locks.lock("x").await;
    // A reconcile cut off by its deadline while waiting for the lock.
    let gave_up = tokio::time::timeout(Duration::from_millis(50), locks.lock("x")).await;
    assert!(gave_up.is_err());
    assert_eq!(locks.len(), 1);
    drop(held);
    assert!(locks.is_empty(), "the abandoned wait kept the entry");
}
