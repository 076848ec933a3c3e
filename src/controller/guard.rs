//! The envelope of every reconcile: wait until the watch caches have synced (through the one
//! shared [`Readiness`], never a store's own readiness), finish within a deadline, and one
//! error policy for both controllers, backing off per object ([`Backoff`]: 5 s doubling up to
//! 5 min, forgotten on success). In front of it, [`leading`]: only the leader reconciles.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::caches::Readiness;
use super::context::Context;
use super::error::{Error, Result};

/// Runs one reconcile's `work` after the watch caches have synced, cut off at `deadline`: a
/// reconcile that hangs becomes an error (and a requeue) instead of holding its object's slot.
pub async fn guarded<F>(readiness: &Readiness, deadline: Duration, work: F) -> Result<Action>
where
    F: Future<Output = Result<Action>>,
{
    let run = async {
        readiness.wait().await;
        work.await
    };
    match tokio::time::timeout(deadline, run).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            seconds: deadline.as_secs(),
            waiting_for: readiness.pending(),
        }),
    }
}

/// Runs a reconcile of `controller` only while this replica leads (a standby's reconcile does
/// nothing; winning the election re-runs them all), counting its result and duration.
pub async fn leading<F>(ctx: &Context, controller: &'static str, work: F) -> Result<Action>
where
    F: Future<Output = Result<Action>>,
{
    if !ctx.config.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    let started = std::time::Instant::now();
    let result = work.await;
    let label = match &result {
        Ok(_) => "ok",
        Err(e) => e.reason(),
    };
    crate::metrics::reconcile(controller, label, started.elapsed());
    result
}

/// What to do after a failed reconcile of a binding or a policy: log it and try again, later
/// after each consecutive failure of the same object ([`Backoff`]).
pub fn error_policy<K>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: kube::Resource<DynamicType = ()>,
{
    let delay = ctx.retries.failed(&retry_key(&*object), Instant::now());
    tracing::warn!(kind = %K::kind(&()), name = %object.name_any(), reason = error.reason(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

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
