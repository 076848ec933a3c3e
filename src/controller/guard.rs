//! The envelope of every reconcile: wait until the watch caches have synced (through the one
//! shared [`Readiness`], never a store's own readiness), finish within a deadline, and one
//! error policy for both controllers. In front of it, [`leading`]: only the leader reconciles.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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

/// What to do after a failed reconcile of a binding or a policy: log it and try again soon.
pub fn error_policy<K>(object: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action
where
    K: kube::Resource<DynamicType = ()>,
{
    tracing::warn!(kind = %K::kind(&()), name = %object.name_any(), reason = error.reason(), error = %error, "reconcile failed");
    Action::requeue(RETRY_AFTER_ERROR)
}

/// How soon a failed reconcile runs again.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(10);
