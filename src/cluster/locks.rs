//! The per-namespace locks that serialise writes to one namespace's Secret and ServiceAccounts
//! (several bindings may reconcile the same namespace at once). An entry lives only while
//! someone holds or waits for its lock, so the map does not grow with every namespace ever seen
//! (namespace churn, e.g. in CI clusters).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One namespace's lock and how many holders and waiters it has.
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    users: usize,
}

/// One lock per namespace name that someone holds or waits for.
#[derive(Default)]
pub struct NamespaceLocks {
    slots: Mutex<HashMap<String, Slot>>,
}

/// Holds one namespace's lock until dropped (or, while [`NamespaceLocks::lock`] waits, its
/// place in the line); the last user out removes the namespace's entry.
pub struct NamespaceGuard<'a> {
    locks: &'a NamespaceLocks,
    namespace: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for NamespaceGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut slots = self.locks.slots();
        if let Some(slot) = slots.get_mut(&self.namespace) {
            slot.users = slot.users.saturating_sub(1);
            if slot.users == 0 {
                slots.remove(&self.namespace);
            }
        }
    }
}

impl NamespaceLocks {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for the lock of `namespace` and holds it until the guard is dropped. Cancelling
    /// the wait gives up the place in the line (and the entry, when nobody else uses it).
    pub async fn lock(&self, namespace: &str) -> NamespaceGuard<'_> {
        let lock = {
            let mut slots = self.slots();
            let slot = slots.entry(namespace.to_owned()).or_insert_with(|| Slot {
                lock: Arc::default(),
                users: 0,
            });
            slot.users += 1;
            slot.lock.clone()
        };
        // Counted from here on: dropped while waiting, the guard still gives its place back.
        let mut held = NamespaceGuard {
            locks: self,
            namespace: namespace.to_owned(),
            guard: None,
        };
        held.guard = Some(lock.lock_owned().await);
        held
    }

    /// How many namespaces have a lock entry (someone holds or waits for their lock).
    pub fn len(&self) -> usize {
        self.slots().len()
    }

    /// Whether no namespace has a lock entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
