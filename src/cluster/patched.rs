//! The ServiceAccounts this controller patched that its watch cache has not shown yet.
//!
//! Every ServiceAccount patch is version-checked (a JSON patch testing the resourceVersion it was
//! planned on), so a patch planned on a stale copy fails and costs a re-read. A stale copy is
//! what the next pass over a namespace reads right after our own patch, while the cache lags:
//! at 10,000 namespaces a fan-out's second pass (triggered by the first one's events) started
//! while the cache lagged by seconds, and one patch in nine failed that way. So each patch is
//! remembered here until the cache shows it, and [`Patched::current`] answers with the freshest
//! of the two, as [`super::written`] does for our Secrets.
//!
//! The cache has caught up once it shows a version other than those our patch replaced (the one
//! it was planned on, and those read after a conflict): patches are version-checked, so nothing
//! lies between those and ours, and watch events come in order. Resource versions are compared
//! for equality only. [`Patched::follow`] also tells the echo of our own patch apart (the very
//! version the patch returned), so that it triggers nothing: it tells the controller nothing
//! new, and at a fan-out each echo would otherwise rerun the binding's pass and the namespace's.
//! While a patch is under way ([`Patched::under_way`]: its response not in yet, and the watch
//! event often comes first), any event of that ServiceAccount is taken for its echo: a change by
//! someone else meanwhile makes our version-checked patch fail and re-read it.
//! A re-list clears everything; an entry older than [`MAX_AGE`] is dropped whatever happened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Resource;
use kube::runtime::watcher;

use super::flights::{Flights, InFlight};
use crate::model::cached_service_account::CachedServiceAccount;

/// How long a patch may stay ahead of the cache before the cache is believed again.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// A resourceVersion, `None` when an object has none.
type Version = Option<String>;

fn version(sa: &CachedServiceAccount) -> Version {
    sa.meta().resource_version.clone()
}

/// `namespace/name` of a ServiceAccount.
fn key(sa: &CachedServiceAccount) -> Option<String> {
    let meta = sa.meta();
    Some(format!(
        "{}/{}",
        meta.namespace.as_deref()?,
        meta.name.as_deref()?
    ))
}

struct Entry {
    /// The ServiceAccount as the patch returned it (in the cache's form).
    patched: Arc<CachedServiceAccount>,
    /// Versions older than ours: while the cache shows one of them, it lags.
    stale: Vec<Version>,
    at: Instant,
}

/// Our recent ServiceAccount patches, in front of the ServiceAccount cache.
#[derive(Default)]
pub struct Patched {
    pending: Mutex<HashMap<String, Entry>>,
    /// Patches under way, per `namespace/name`.
    under_way: Flights,
}

impl Patched {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a patch of ServiceAccount `name` in `namespace` under way until the guard drops
    /// (after [`Patched::patched`] has recorded its outcome, or when it failed).
    pub fn under_way(&self, namespace: &str, name: &str) -> InFlight {
        self.under_way.start(format!("{namespace}/{name}"))
    }

    /// `cached` as we know it best: our patch of it while the cache has not shown it, else
    /// `cached` itself.
    pub fn current(&self, cached: Arc<CachedServiceAccount>) -> Arc<CachedServiceAccount> {
        let mut pending = self.lock();
        if pending.is_empty() {
            return cached;
        }
        let Some(key) = key(&cached) else {
            return cached;
        };
        let Some(entry) = pending.get(&key) else {
            return cached;
        };
        if entry.at.elapsed() <= MAX_AGE && entry.stale.contains(&version(&cached)) {
            return entry.patched.clone();
        }
        pending.remove(&key);
        cached
    }

    /// Records a patch: `stale` are the versions it replaced (the one it was planned on, and
    /// those read after a conflict), `patched` what the API server returned.
    pub fn patched(&self, stale: Vec<Version>, mut patched: ServiceAccount) {
        patched.metadata.managed_fields = None;
        super::caches::trim::service_account(&mut patched);
        let patched = CachedServiceAccount::from(patched);
        let Some(key) = key(&patched) else {
            return;
        };
        let mut pending = self.lock();
        pending.retain(|_, e| e.at.elapsed() <= MAX_AGE);
        pending.insert(
            key,
            Entry {
                patched: Arc::new(patched),
                stale,
                at: Instant::now(),
            },
        );
    }

    /// Follows the cache's watch stream (after the cache has applied the event): forgets what
    /// the cache now shows. Returns whether the event is only the echo of our own patch.
    pub fn follow(&self, event: &watcher::Event<CachedServiceAccount>) -> bool {
        if let watcher::Event::Apply(sa) = event
            && let Some(key) = key(sa)
            && self.under_way.any(&key)
        {
            let mut pending = self.lock();
            if pending
                .get(&key)
                .is_some_and(|e| !e.stale.contains(&version(sa)))
            {
                pending.remove(&key);
            }
            return true;
        }
        let mut pending = self.lock();
        if pending.is_empty() {
            return false;
        }
        match event {
            watcher::Event::Apply(sa) => {
                let Some(key) = key(sa) else {
                    return false;
                };
                let Some(entry) = pending.get(&key) else {
                    return false;
                };
                let seen = version(sa);
                let echo = seen.is_some() && version(&entry.patched) == seen;
                if !entry.stale.contains(&seen) {
                    pending.remove(&key);
                }
                echo
            }
            watcher::Event::Delete(sa) => {
                if let Some(key) = key(sa) {
                    pending.remove(&key);
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

    /// How many patches the cache has not shown yet.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache has shown every patch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;

    use super::*;

    fn sa(rv: &str, pulls: &[&str]) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                namespace: Some("team-a".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            image_pull_secrets: Some(
                pulls
                    .iter()
                    .map(|n| k8s_openapi::api::core::v1::LocalObjectReference { name: (*n).into() })
                    .collect(),
            ),
            ..ServiceAccount::default()
        }
    }

    fn cached(rv: &str, pulls: &[&str]) -> CachedServiceAccount {
        sa(rv, pulls).into()
    }

    fn seen(sa: &CachedServiceAccount) -> Option<&str> {
        sa.meta().resource_version.as_deref()
    }

    #[test]
    fn a_lagging_cache_is_answered_with_our_patch_until_it_shows_it() {
        let p = Patched::default();
        p.patched(vec![Some("1".into())], sa("2", &["acr-credentials"]));
        // The cache still shows the version the patch was planned on.
        let now = p.current(Arc::new(cached("1", &[])));
        assert_eq!(seen(&now), Some("2"));
        // Its echo is ours and brings the cache up to date.
        assert!(p.follow(&watcher::Event::Apply(cached("2", &["acr-credentials"]))));
        assert!(p.is_empty());
        let now = p.current(Arc::new(cached("2", &["acr-credentials"])));
        assert_eq!(seen(&now), Some("2"));
    }

    #[test]
    fn a_later_change_by_someone_else_is_no_echo_and_wins() {
        let p = Patched::default();
        p.patched(vec![Some("1".into())], sa("2", &["acr-credentials"]));
        assert!(!p.follow(&watcher::Event::Apply(cached("3", &[]))));
        assert!(p.is_empty());
        let now = p.current(Arc::new(cached("3", &[])));
        assert_eq!(seen(&now), Some("3"));
    }

    #[test]
    fn a_version_read_after_a_conflict_is_stale_too() {
        let p = Patched::default();
        p.patched(
            vec![Some("1".into()), Some("5".into())],
            sa("6", &["acr-credentials"]),
        );
        assert!(!p.follow(&watcher::Event::Apply(cached("5", &[]))));
        assert_eq!(p.len(), 1);
        let now = p.current(Arc::new(cached("5", &[])));
        assert_eq!(seen(&now), Some("6"));
    }

    #[test]
    fn an_event_that_comes_before_the_patch_response_is_its_echo() {
        let p = Patched::default();
        let flight = p.under_way("team-a", "default");
        assert!(p.follow(&watcher::Event::Apply(cached("2", &["acr-credentials"]))));
        p.patched(vec![Some("1".into())], sa("2", &["acr-credentials"]));
        drop(flight);
        // Done: a later change is news again, and so is one after a failed patch.
        assert!(!p.follow(&watcher::Event::Apply(cached("3", &[]))));
        drop(p.under_way("team-a", "default"));
        assert!(!p.follow(&watcher::Event::Apply(cached("4", &[]))));
    }

    #[test]
    fn a_relist_or_a_deletion_forgets() {
        let p = Patched::default();
        p.patched(vec![Some("1".into())], sa("2", &["acr-credentials"]));
        assert!(!p.follow(&watcher::Event::InitDone));
        assert!(p.is_empty());
        p.patched(vec![Some("1".into())], sa("2", &["acr-credentials"]));
        assert!(!p.follow(&watcher::Event::Delete(cached("2", &[]))));
        assert!(p.is_empty());
    }
}
