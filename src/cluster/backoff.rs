//! How soon a binding or policy runs again after failures: [`Backoff`] counts consecutive
//! failures per object (5 s doubling up to 5 min, forgotten on success), kept in the
//! [`super::Context`] and used by the error policy ([`super::guard`]) and by a binding pass
//! that left a namespace failing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;

/// The key [`Backoff`] counts an object's failures under.
pub fn retry_key<K>(object: &K) -> String
where
    K: kube::Resource<DynamicType = ()>,
{
    format!("{}/{}", K::kind(&()), object.name_any())
}

/// First retry delay after a failed reconcile.
pub const BASE_RETRY: Duration = Duration::from_secs(5);
/// Longest retry delay after failed reconciles.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// How soon an object runs again after `failures` consecutive failed reconciles: [`BASE_RETRY`]
/// after the first, doubling with each further one, at most [`MAX_RETRY`].
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BASE_RETRY.saturating_mul(1u32 << doublings).min(MAX_RETRY)
}

/// Consecutive failures per object (failed reconciles, and passes that left a namespace
/// failing), so retries back off; a success forgets the object. Entries not touched for
/// longer than twice [`MAX_RETRY`] belong to objects that are gone and are dropped.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Backoff {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a failure of `key` at `now` and says how soon to try again.
    pub fn failed(&self, key: &str, now: Instant) -> Duration {
        let mut map = self.map();
        map.retain(|_, (_, at)| now.saturating_duration_since(*at) <= MAX_RETRY * 2);
        let entry = map.entry(key.to_owned()).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        retry_delay(entry.0)
    }

    /// Forgets the failures of `key`: its next failure starts from [`BASE_RETRY`] again.
    pub fn succeeded(&self, key: &str) {
        self.map().remove(key);
    }

    /// How many objects have failures counted.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no object has failures counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
