//! The envelope of every reconcile: wait until the watch caches have synced (through the one
//! shared [`Readiness`], never a store's own readiness), finish within a deadline, and one
//! error policy for both controllers, backing off per object ([`super::backoff`]) and
//! publishing the failure as a Warning Event on the object, its reason the error's bounded
//! [`Error::reason`]. In front of it, [`leading`]: only the leader reconciles.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::Instrument;

use super::backoff::retry_key;
use super::caches::Readiness;
use super::context::Context;
use super::error::{Error, Result};
use crate::model::events;

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

/// What to do after a failed reconcile of a binding or a policy: log it, say it in a Warning
/// Event on the object (reason: [`Error::reason`]; identical repeats are counted, not
/// repeated), and try again, later after each consecutive failure of the same object
/// ([`super::backoff::Backoff`]).
pub fn error_policy<K>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: kube::Resource<DynamicType = ()>,
{
    let delay = ctx.retries.failed(&retry_key(&*object), Instant::now());
    tracing::warn!(kind = %K::kind(&()), name = %object.name_any(), reason = error.reason(), error = %error, retry_in = ?delay, "reconcile failed");
    let regarding = object.object_ref(&());
    let (reason, note) = (error.reason(), format!("reconcile failed: {error}"));
    let span =
        tracing::info_span!("reconcile failed", kind = %K::kind(&()), name = %object.name_any());
    tokio::spawn(
        async move {
            ctx.event_about(
                &regarding,
                EventType::Warning,
                reason,
                events::actions::RECONCILE,
                note,
            )
            .await;
        }
        .instrument(span),
    );
    Action::requeue(delay)
}
