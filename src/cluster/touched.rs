//! The namespaces whose objects just changed (a namespace created or relabelled, a
//! ServiceAccount created or edited, our pull Secret edited or deleted by someone else), for
//! the namespace pass (`binding::touched`): each is converged on its own, at once, instead of
//! waiting behind a whole binding's pass over every namespace it selects.
//!
//! First come, first served; a namespace already waiting is not queued twice (the pass plans it
//! afresh, so it sees every change that came before it).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

#[derive(Default)]
struct Queue {
    order: VecDeque<String>,
    waiting: HashSet<String>,
}

/// The touched namespaces not converged yet, in the order they were touched.
#[derive(Default)]
pub struct TouchedNamespaces {
    queue: Mutex<Queue>,
    added: tokio::sync::Notify,
}

impl TouchedNamespaces {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `namespace`, unless it waits already.
    pub fn touch(&self, namespace: &str) {
        let mut q = self.lock();
        if q.waiting.insert(namespace.to_owned()) {
            q.order.push_back(namespace.to_owned());
            drop(q);
            self.added.notify_one();
        }
    }

    /// Takes the longest-waiting namespace, if any.
    pub fn take(&self) -> Option<String> {
        let mut q = self.lock();
        let ns = q.order.pop_front()?;
        q.waiting.remove(&ns);
        Some(ns)
    }

    /// How many namespaces wait.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the next touched namespace.
    pub async fn next(&self) -> String {
        loop {
            let added = self.added.notified();
            if let Some(ns) = self.take() {
                // Another worker may be waiting too: wake it for the rest.
                if !self.is_empty() {
                    self.added.notify_one();
                }
                return ns;
            }
            added.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_touched_first_taken_and_each_namespace_once() {
        let q = TouchedNamespaces::default();
        for ns in ["b", "a", "b", "c", "a"] {
            q.touch(ns);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.take().as_deref(), Some("b"));
        // Taken: touching it again queues it again, behind the others.
        q.touch("b");
        let rest: Vec<String> = std::iter::from_fn(|| q.take()).collect();
        assert_eq!(rest, ["a", "c", "b"]);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_waiting_worker_wakes_when_a_namespace_is_touched() {
        let q = std::sync::Arc::new(TouchedNamespaces::default());
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.touch("late");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
        assert_eq!(got, "late");
    }
}
