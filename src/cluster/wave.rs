//! The wave lane's queue: the renewal rewrites a reconcile deferred, each with its slot in the
//! wave ([`WaveItem::due`]) and the time it must be written by ([`WaveItem::latest`]). The wave
//! lane's worker (`binding::wave`) takes them in slot order, a few in flight at once, and
//! rewrites each namespace when its slot comes, within the write budget ([`super::budget`]).
//!
//! A namespace is queued once: scheduling it again keeps the earlier slot and the earlier
//! deadline. Whatever happened to the namespace meanwhile, the worker plans it afresh when its
//! turn comes (a namespace a reconcile already rewrote costs a plan and no write).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

use crate::cloud::clock::Clock;

/// One deferred renewal rewrite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaveItem {
    pub namespace: String,
    /// Its slot: not written before.
    pub due: Timestamp,
    /// Written by then, over budget if need be.
    pub latest: Timestamp,
    /// Its wave cannot finish in time within the budget: it does not wait for a token.
    pub over_budget: bool,
}

#[derive(Default)]
struct Items {
    by_namespace: HashMap<String, WaveItem>,
    /// (due, namespace), in slot order.
    order: BTreeSet<(Timestamp, String)>,
}

/// The deferred renewal rewrites, in slot order.
#[derive(Default)]
pub struct WaveQueue {
    items: Mutex<Items>,
    changed: tokio::sync::Notify,
}

/// How long the worker sleeps at most between two looks (a slot moved earlier wakes it too).
const MAX_NAP: Duration = Duration::from_secs(30);

impl WaveQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Items> {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a rewrite; a namespace already queued keeps the earlier slot and deadline.
    pub fn schedule(&self, item: WaveItem) {
        let mut items = self.lock();
        let merged = match items.by_namespace.get(&item.namespace) {
            Some(old) => WaveItem {
                due: old.due.min(item.due),
                latest: old.latest.min(item.latest),
                over_budget: old.over_budget || item.over_budget,
                namespace: item.namespace,
            },
            None => item,
        };
        if let Some(old) = items.by_namespace.get(&merged.namespace) {
            let key = (old.due, old.namespace.clone());
            items.order.remove(&key);
        }
        items.order.insert((merged.due, merged.namespace.clone()));
        items.by_namespace.insert(merged.namespace.clone(), merged);
        drop(items);
        self.changed.notify_one();
    }

    /// How many rewrites wait.
    pub fn len(&self) -> usize {
        self.lock().by_namespace.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest deadline of the rewrites waiting, if any.
    pub fn earliest_latest(&self) -> Option<Timestamp> {
        self.lock().by_namespace.values().map(|i| i.latest).min()
    }

    /// Takes the first rewrite whose slot has come at `now`; otherwise when the next one is
    /// due (`None`: nothing waits).
    pub fn take_due(&self, now: Timestamp) -> Result<WaveItem, Option<Timestamp>> {
        let mut items = self.lock();
        let Some((due, namespace)) = items.order.first().cloned() else {
            return Err(None);
        };
        if due > now {
            return Err(Some(due));
        }
        items.order.remove(&(due, namespace.clone()));
        items.by_namespace.remove(&namespace).ok_or(None)
    }

    /// Waits for the next rewrite whose slot has come, by `clock`.
    pub async fn next(&self, clock: &dyn Clock) -> WaveItem {
        loop {
            let changed = self.changed.notified();
            let nap = match self.take_due(clock.now()) {
                Ok(item) => {
                    crate::metrics::wave_pending(self.len());
                    return item;
                }
                Err(None) => MAX_NAP,
                Err(Some(due)) => {
                    Duration::try_from(clock.now().duration_until(due)).unwrap_or_default()
                }
            };
            tokio::select! {
                () = tokio::time::sleep(nap.min(MAX_NAP)) => {}
                () = changed => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn item(ns: &str, due: i64, latest: i64) -> WaveItem {
        WaveItem {
            namespace: ns.into(),
            due: at(due),
            latest: at(latest),
            over_budget: false,
        }
    }

    #[test]
    fn rewrites_come_out_in_slot_order_once_due() {
        let q = WaveQueue::default();
        q.schedule(item("b", 20, 100));
        q.schedule(item("a", 10, 100));
        q.schedule(item("c", 30, 90));
        assert_eq!(q.len(), 3);
        assert_eq!(q.earliest_latest(), Some(at(90)));
        assert_eq!(q.take_due(at(5)), Err(Some(at(10))));
        assert_eq!(q.take_due(at(25)).unwrap().namespace, "a");
        assert_eq!(q.take_due(at(25)).unwrap().namespace, "b");
        assert_eq!(q.take_due(at(25)), Err(Some(at(30))));
        assert_eq!(q.take_due(at(30)).unwrap().namespace, "c");
        assert_eq!(q.take_due(at(30)), Err(None));
        assert!(q.is_empty());
    }

    #[test]
    fn a_namespace_queued_twice_keeps_the_earlier_slot_and_deadline() {
        let q = WaveQueue::default();
        q.schedule(item("a", 10, 100));
        q.schedule(WaveItem {
            over_budget: true,
            ..item("a", 50, 80)
        });
        assert_eq!(q.len(), 1);
        let a = q.take_due(at(10)).unwrap();
        assert_eq!((a.due, a.latest, a.over_budget), (at(10), at(80), true));
        assert_eq!(q.take_due(at(1000)), Err(None));
    }
}
