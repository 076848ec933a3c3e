//! The wave lane's worker. Talks to the cluster: yes (the deferred renewal rewrites).
//!
//! A binding's pass defers each renewal rewrite that may wait to its slot
//! ([`super::converge`], [`crate::cluster::wave`]); this worker takes them in slot order, waits
//! for the write budget's wave lane (never past the rewrite's deadline, and not at all when its
//! wave is over budget), and converges the namespace afresh: under its lock, against every live
//! binding as they are then, so it writes what the namespace needs now (often the rewrite, and
//! nothing when a pass got there first). A failed rewrite is queued again a little later, while
//! its deadline allows; past it, the binding's pass (requeued for that deadline) writes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::Instrument;

use super::converge::{Pacing, converge_namespace_paced};
use super::plan::service_accounts_in;
use super::resolve::live_bindings;
use crate::cluster::Context;
use crate::cluster::budget::Turn;
use crate::cluster::wave::WaveItem;

/// How many rewrites are under way at once: the budget sets the pace, and one at a time would
/// cap it at one per write's latency (too slow for a wave over budget at 10,000 namespaces,
/// whose rewrites then reached their deadlines and were written by the binding's pass in bursts).
const IN_FLIGHT: usize = 8;

/// How long after a failed rewrite it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Writes the deferred renewal rewrites at their slots, for ever (the runtime drops it on
/// shutdown). Each rewrite runs in a `wave` span (a root: it belongs to no reconcile) with the
/// `namespace` span inside it, as a binding's pass has `reconcile` > `namespace`.
pub async fn run(ctx: Arc<Context>) {
    let due = futures::stream::unfold(ctx.clone(), |ctx| async move {
        let item = ctx.wave.next(&*ctx.clock).await;
        Some((item, ctx))
    });
    due.for_each_concurrent(IN_FLIGHT, |item| {
        let ctx = ctx.clone();
        async move {
            // A replica that lost the Lease drops what it deferred; the new leader's passes
            // defer their own.
            if !ctx.config.leadership.is_leader() {
                return;
            }
            let span = tracing::info_span!(parent: None, "wave", due = %item.due);
            let inner =
                tracing::info_span!(parent: &span, "namespace", namespace = %item.namespace);
            rewrite(&ctx, item).instrument(inner).await;
        }
    })
    .await;
}

/// One deferred rewrite, when the budget lets it (or its deadline makes it) go.
async fn rewrite(ctx: &Context, item: WaveItem) {
    let left = Duration::try_from(ctx.clock.now().duration_until(item.latest)).unwrap_or_default();
    let turn = ctx
        .budget
        .wave(Instant::now() + left, item.over_budget)
        .await;
    let live = live_bindings(ctx);
    let service_accounts = service_accounts_in(ctx, &item.namespace);
    let result =
        converge_namespace_paced(ctx, &item.namespace, &live, &service_accounts, Pacing::Turn)
            .await;
    match result {
        Ok(_) if turn == Turn::Over => {
            tracing::debug!(namespace = %item.namespace, "renewal rewrite written over the write budget");
        }
        Ok(_) => {}
        Err(e) => {
            let retry = ctx
                .clock
                .now()
                .checked_add(jiff::SignedDuration::try_from(RETRY_AFTER).unwrap_or_default())
                .ok()
                .filter(|at| *at < item.latest);
            tracing::warn!(namespace = %item.namespace, error = %e, retry = retry.is_some(), "renewal rewrite failed");
            if let Some(at) = retry {
                ctx.wave.schedule(WaveItem { due: at, ..item });
            }
        }
    }
}
