//! At most one trigger per key per period: the first at once, the ones after it folded into one
//! at the end of the period.
//!
//! The bindings' passes triggered by namespace, ServiceAccount and Secret events go through
//! this. Each pass goes over every namespace its binding selects, and at 10,000 namespaces a
//! burst of namespace events (100 created in ten seconds) kept a binding's passes running back
//! to back, most of the controller's CPU, for status counts the namespace pass
//! (`binding::touched`) had made true anyway: it converges each touched namespace at once. The
//! runner already folds triggers that come while a pass runs into one rerun; this also spaces
//! the reruns. kube-runtime's debounce would not do: it restarts its timer on every trigger, so
//! a steady stream of events would postpone the pass for as long as it lasts. Here a trigger
//! waits at most one period.

use std::collections::{BTreeSet, HashMap};
use std::future::Future as _;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

/// The throttle's bookkeeping, apart from the streams and the timer.
#[derive(Debug)]
struct Folds<T> {
    period: Duration,
    /// When each key last went out.
    last: HashMap<T, Instant>,
    /// Keys waiting for the end of their period, and when that is.
    waiting: HashMap<T, Instant>,
    /// The same, by time.
    due: BTreeSet<(Instant, u64)>,
    /// `due`'s tiebreaker, and which key each entry is.
    ids: HashMap<u64, T>,
    next_id: u64,
}

impl<T: Hash + Eq + Clone> Folds<T> {
    fn new(period: Duration) -> Self {
        Self {
            period,
            last: HashMap::new(),
            waiting: HashMap::new(),
            due: BTreeSet::new(),
            ids: HashMap::new(),
            next_id: 0,
        }
    }

    /// A trigger for `key` at `now`: `Some(key)` when it goes out at once; otherwise it waits
    /// (once, however many come meanwhile).
    fn offer(&mut self, key: T, now: Instant) -> Option<T> {
        if self.waiting.contains_key(&key) {
            return None;
        }
        match self.last.get(&key) {
            Some(at) if now < *at + self.period => {
                let due = *at + self.period;
                let id = self.next_id;
                self.next_id += 1;
                self.due.insert((due, id));
                self.ids.insert(id, key.clone());
                self.waiting.insert(key, due);
                None
            }
            _ => {
                self.sent(key.clone(), now);
                Some(key)
            }
        }
    }

    /// A waiting key whose period is over at `now`.
    fn take_due(&mut self, now: Instant) -> Option<T> {
        let &(due, id) = self.due.first()?;
        if due > now {
            return None;
        }
        self.due.remove(&(due, id));
        let key = self.ids.remove(&id)?;
        self.waiting.remove(&key);
        self.sent(key.clone(), now);
        Some(key)
    }

    /// When the next waiting key's period is over.
    fn next_due(&self) -> Option<Instant> {
        self.due.first().map(|(at, _)| *at)
    }

    fn sent(&mut self, key: T, now: Instant) {
        // Keys whose period is long over need no memory (bindings come and go).
        if self.last.len() > 1024 {
            let period = self.period;
            self.last.retain(|_, at| now < *at + period);
        }
        self.last.insert(key, now);
    }
}

/// `triggers`, at most one per key per `period` (see the module header). Ends when `triggers`
/// ends, after the waiting keys have gone out.
pub fn throttle<T, S>(triggers: S, period: Duration) -> impl Stream<Item = T> + Send
where
    T: Hash + Eq + Clone + Send + 'static,
    S: Stream<Item = T> + Send + 'static,
{
    let mut triggers = triggers.boxed();
    let mut folds = Folds::new(period);
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    let mut ended = false;
    futures::stream::poll_fn(move |cx: &mut Context<'_>| {
        loop {
            let now = Instant::now();
            if let Some(key) = folds.take_due(now) {
                return Poll::Ready(Some(key));
            }
            if !ended {
                match triggers.poll_next_unpin(cx) {
                    Poll::Ready(Some(key)) => match folds.offer(key, now) {
                        Some(key) => return Poll::Ready(Some(key)),
                        None => continue,
                    },
                    Poll::Ready(None) => ended = true,
                    Poll::Pending => {}
                }
            }
            let Some(due) = folds.next_due() else {
                timer = None;
                return if ended {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            };
            if ended {
                // Nothing more comes: the waiting keys go out now rather than keep the stream
                // open (it ends with the controller's shutdown).
                let key = folds.take_due(due);
                return Poll::Ready(key);
            }
            let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if sleep.deadline() != due {
                sleep.as_mut().reset(due);
            }
            match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_goes_at_once_the_rest_of_a_period_fold_into_one_at_its_end() {
        let t0 = Instant::now();
        let p = Duration::from_secs(2);
        let mut f = Folds::new(p);
        assert_eq!(f.offer("a", t0), Some("a"));
        assert_eq!(f.offer("b", t0), Some("b"), "keys are throttled apart");
        for ms in [10, 500, 1900] {
            assert_eq!(f.offer("a", t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(f.next_due(), Some(t0 + p));
        assert_eq!(f.take_due(t0 + Duration::from_millis(1999)), None);
        assert_eq!(f.take_due(t0 + p), Some("a"));
        assert_eq!(f.take_due(t0 + p), None, "folded into one");
        // The next one waits a period from that one.
        assert_eq!(f.offer("a", t0 + p + Duration::from_millis(1)), None);
        assert_eq!(f.next_due(), Some(t0 + p + p));
        // A key quiet for a period goes at once again.
        assert_eq!(f.offer("b", t0 + p), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_is_not_postponed_for_ever() {
        // One trigger every 100 ms for 5 s, throttled to one per second: the first at once, then
        // one at the end of each period, never more than a period late.
        let start = Instant::now();
        let triggers = futures::stream::iter(0..50).then(move |i| async move {
            tokio::time::sleep_until(start + Duration::from_millis(100 * i)).await;
            "binding"
        });
        let out: Vec<Duration> = throttle(triggers, Duration::from_secs(1))
            .map(|_| Instant::now() - start)
            .collect()
            .await;
        let secs: Vec<u64> = out.iter().map(|d| d.as_millis() as u64 / 100).collect();
        assert_eq!(secs, [0, 10, 20, 30, 40, 49], "{out:?}");
    }
}
