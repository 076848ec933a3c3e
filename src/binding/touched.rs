//! The namespace pass. Talks to the cluster: yes (the namespace's Secret and ServiceAccounts).
//!
//! When one of a namespace's objects changes (the namespace created or relabelled, a
//! ServiceAccount created or edited, our pull Secret edited or deleted by someone else), the
//! watch puts the namespace in [`crate::cluster::touched`], and a few workers here converge it
//! on its own, against every live binding, exactly as a binding's pass would (same plan, same
//! lock), when one of this controller's bindings selects it or owns its Secret there: a new
//! namespace gets its Secret, a new ServiceAccount its entry, a repair is made, at once. The
//! same change also triggers the pass of each binding that cares, which keeps their
//! statuses true and finds the namespace converged already; but that pass goes over every
//! namespace its binding selects, so at thousands of namespaces, or while a renewal wave is
//! under way, waiting for it would keep a new ServiceAccount without its pull Secret for as
//! long as the pass takes.
//!
//! Only the leader converges (a standby drops what it is told), never before the caches have
//! synced, and a rewrite that only renews tokens is left to the wave ([`Pacing::Touched`]). A
//! failure is only logged: the binding's pass, triggered by the same change, retries it and
//! reports it in the binding's status.

use std::sync::Arc;

use tracing::Instrument;

use super::converge::{Pacing, converge_namespace_paced};
use super::plan::{concerns_us, service_accounts_in};
use super::resolve::live_bindings;
use crate::cluster::Context;

/// How many namespaces are converged at once.
const WORKERS: usize = 4;

/// Converges touched namespaces as they come, for ever (the runtime drops it on shutdown).
pub async fn run(ctx: Arc<Context>) {
    let workers = (0..WORKERS).map(|_| worker(&ctx));
    futures::future::join_all(workers).await;
}

async fn worker(ctx: &Context) {
    loop {
        let namespace = ctx.touched.next().await;
        if !ctx.config.leadership.is_leader() {
            continue;
        }
        ctx.readiness.wait().await;
        let span = tracing::info_span!(parent: None, "touched");
        let inner = tracing::info_span!(parent: &span, "namespace", namespace = %namespace);
        converge(ctx, &namespace).instrument(inner).await;
    }
}

/// One touched namespace, converged against every live binding.
async fn converge(ctx: &Context, namespace: &str) {
    let live = live_bindings(ctx);
    if !concerns_us(ctx, namespace, &live) {
        return;
    }
    let service_accounts = service_accounts_in(ctx, namespace);
    let converged = tokio::time::timeout(
        ctx.config.reconcile_timeout,
        converge_namespace_paced(ctx, namespace, &live, &service_accounts, Pacing::Touched),
    )
    .await;
    match converged {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "namespace pass failed; the binding's pass retries it");
        }
        Err(_) => tracing::debug!("namespace pass timed out; the binding's pass retries it"),
    }
}
