//! The pull Secrets this controller wrote that its watch cache has not shown yet.
//!
//! A reconcile reads each namespace's Secret from the cache. Right after a write the cache still
//! holds the old copy (or none) until the watch event arrives, and the next reconcile of the
//! binding (another namespace's event, a ServiceAccount's) may come first: at a few thousand
//! namespaces the rerun starts while the cache lags by seconds, and would create again what it just created, or replace with a stale
//! resourceVersion (a conflict, a re-read). So each write is remembered here, per namespace,
//! until the cache has caught up with it, and [`Written::current`] answers with the freshest of
//! the two. [`Written::follow`] also tells the echo of our own write apart, so that it triggers
//! no reconcile: the very version our write returned, or, while a write to the namespace is under
//! way (its response not in yet: the watch event often comes first), any version of the Secret
//! that is still ours (a same-named Secret someone else made theirs is news; a change of ours by
//! someone else while we write makes our version-checked write conflict and re-read it).
//!
//! The cache has caught up once it shows any version other than those our write replaced: the
//! version the cache held before the write, the versions we read or wrote on the way. Updates
//! are version-checked, so nothing lies between those and ours, and the cache only moves
//! forward (watch events come in order). That is checked on every read and on every watch
//! event; a re-list clears everything (it brings the current state). Resource versions are
//! compared for equality only, never ordered. An entry older than [`MAX_AGE`] is dropped
//! whatever happened, as a last resort.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::flights::{Flights, InFlight};
use crate::model::cached_secret::CachedSecret;

/// How long a write may stay ahead of the cache before the cache is believed again (a last
/// resort: the cache shows a write within moments, or a re-list clears everything).
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// A version of the namespace's Secret: its resourceVersion, `None` when there is none.
type Version = Option<String>;

fn version(secret: Option<&Secret>) -> Version {
    secret.and_then(|s| s.metadata.resource_version.clone())
}

/// The version of a cached Secret.
fn cached_version(secret: Option<&CachedSecret>) -> Version {
    secret.and_then(|s| s.resource_version())
}

/// What we last did to a namespace's Secret, not yet seen in the cache.
#[derive(Clone, Debug)]
struct Entry {
    /// The Secret as the API server returned it; `None`: we deleted it.
    secret: Option<Arc<Secret>>,
    /// Versions older than ours: while the cache shows one of them, it lags.
    stale: Vec<Version>,
    at: Instant,
}

/// What a write replaces, noted before it is sent (under the namespace's lock). While it lives,
/// the write is under way.
#[derive(Debug)]
pub struct Before {
    namespace: String,
    stale: Vec<Version>,
    _under_way: InFlight,
}

impl Before {
    /// A version read from the API server on the way (after a conflict): older than ours too.
    pub fn read(&mut self, secret: Option<&Secret>) {
        self.stale.push(version(secret));
    }
}

/// Our recent writes of the Secret named `name`, in front of its cache.
pub struct Written {
    cache: Store<CachedSecret>,
    name: String,
    pending: Mutex<HashMap<String, Entry>>,
    /// Writes under way, per namespace.
    under_way: Flights,
}

impl Written {
    pub fn new(cache: Store<CachedSecret>, name: impl Into<String>) -> Self {
        Self {
            cache,
            name: name.into(),
            pending: Mutex::new(HashMap::new()),
            under_way: Flights::default(),
        }
    }

    /// The namespace's Secret as we know it best: our last write while the cache has not shown
    /// it, else the cached copy (expanded from its compact form).
    pub fn current(&self, namespace: &str) -> Option<Arc<Secret>> {
        let cached = self
            .cache
            .get(&ObjectRef::new(&self.name).within(namespace));
        let expand = |c: Option<Arc<CachedSecret>>| c.map(|c| Arc::new(c.to_secret()));
        let mut pending = self.lock();
        let Some(entry) = pending.get(namespace) else {
            return expand(cached);
        };
        if entry.at.elapsed() > MAX_AGE || caught_up(entry, cached.as_deref()) {
            pending.remove(namespace);
            return expand(cached);
        }
        entry.secret.clone()
    }

    /// Notes, before a write to the namespace's Secret, the versions it replaces: the cached
    /// one, and our earlier writes the cache has not shown yet.
    pub fn before_write(&self, namespace: &str) -> Before {
        let cached = self
            .cache
            .get(&ObjectRef::new(&self.name).within(namespace));
        let mut stale = vec![cached_version(cached.as_deref())];
        if let Some(entry) = self.lock().get(namespace) {
            stale.extend(entry.stale.iter().cloned());
            stale.push(version(entry.secret.as_deref()));
        }
        Before {
            namespace: namespace.to_owned(),
            stale,
            _under_way: self.under_way.start(namespace),
        }
    }

    /// Records the Secret a create or an update returned, without its `managedFields` (as the
    /// cache keeps it: nothing reads them, and at a fan-out thousands of entries wait here).
    pub fn wrote(&self, before: Before, mut secret: Secret) {
        secret.metadata.managed_fields = None;
        self.record(before, Some(Arc::new(secret)));
    }

    /// Records that we deleted the namespace's Secret.
    pub fn deleted(&self, before: Before) {
        self.record(before, None);
    }

    fn record(&self, before: Before, secret: Option<Arc<Secret>>) {
        // The write stays under way until its entry is in (`before` drops at the end).
        let Before {
            namespace, stale, ..
        } = &before;
        let (namespace, stale) = (namespace.clone(), stale.clone());
        let namespace = namespace.as_str();
        let entry = Entry {
            secret,
            stale,
            at: Instant::now(),
        };
        let cached = self
            .cache
            .get(&ObjectRef::new(&self.name).within(namespace));
        let mut pending = self.lock();
        // The watch event may have come before the response.
        if caught_up(&entry, cached.as_deref()) {
            pending.remove(namespace);
        } else {
            pending.insert(namespace.to_owned(), entry);
        }
    }

    /// Follows the cache's watch stream (after the cache has applied the event): forgets what
    /// the cache now shows. Returns whether the event is only the echo of our own write (the
    /// very version it returned): nothing the reconcilers need to look at again.
    pub fn follow(&self, event: &watcher::Event<CachedSecret>) -> bool {
        if let watcher::Event::Apply(s) = event
            && s.is_ours()
            && s.namespace().is_some_and(|ns| self.under_way.any(&ns))
        {
            self.forget_shown(s);
            return true;
        }
        let mut pending = self.lock();
        if pending.is_empty() {
            return false;
        }
        match event {
            watcher::Event::Apply(s) => {
                let Some(ns) = s.namespace() else {
                    return false;
                };
                let Some(entry) = pending.get(&ns) else {
                    return false;
                };
                let echo = entry.secret.as_deref().is_some_and(|ours| {
                    ours.metadata.resource_version.is_some()
                        && ours.metadata.resource_version == s.resource_version()
                });
                if caught_up(entry, Some(s)) {
                    pending.remove(&ns);
                }
                echo
            }
            // Ours or a later deletion: either way the cache is right about it.
            watcher::Event::Delete(s) => {
                if let Some(ns) = s.namespace() {
                    pending.remove(&ns);
                }
                false
            }
            watcher::Event::InitDone => {
                pending.clear();
                false
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => false,
        }
    }

    /// Forgets an earlier write the cache now shows `s` past.
    fn forget_shown(&self, s: &CachedSecret) {
        let Some(ns) = s.namespace() else {
            return;
        };
        let mut pending = self.lock();
        if pending.get(&ns).is_some_and(|e| caught_up(e, Some(s))) {
            pending.remove(&ns);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
impl Written {
    /// How many writes the cache has not shown yet.
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache has shown every write.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `cached` shows the write or something later: none of the versions it replaced.
fn caught_up(entry: &Entry, cached: Option<&CachedSecret>) -> bool {
    !entry.stale.contains(&cached_version(cached))
}

#[cfg(test)]
mod tests;
