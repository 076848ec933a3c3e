//! Writes under way, counted per key (a namespace, or `namespace/name`): from just before a
//! write is sent until its outcome is recorded or it failed. [`super::written`] and
//! [`super::patched`] use it to tell the echo of our own write apart when the watch event comes
//! before the write's response. Talks to the cluster: no.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The writes under way, per key.
#[derive(Clone, Debug, Default)]
pub struct Flights(Arc<Mutex<HashMap<String, u32>>>);

impl Flights {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a write to `key` under way until the returned guard drops.
    pub fn start(&self, key: impl Into<String>) -> InFlight {
        let key = key.into();
        *self.lock().entry(key.clone()).or_default() += 1;
        InFlight {
            flights: self.clone(),
            key,
        }
    }

    /// Whether a write to `key` is under way.
    pub fn any(&self, key: &str) -> bool {
        self.lock().contains_key(key)
    }
}

/// One write under way, until it is dropped.
#[derive(Debug)]
pub struct InFlight {
    flights: Flights,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut flights = self.flights.lock();
        if let Some(n) = flights.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                flights.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_under_way_until_its_last_write_ends() {
        let flights = Flights::default();
        assert!(!flights.any("team-a"));
        let first = flights.start("team-a");
        let second = flights.start("team-a");
        assert!(flights.any("team-a"));
        assert!(!flights.any("team-b"));
        drop(first);
        assert!(flights.any("team-a"), "one write is still under way");
        drop(second);
        assert!(!flights.any("team-a"));
    }
}
