//! The `AcrRegistryBinding` reconciler: resolve → token → converge every affected namespace →
//! status and Events. Deletion (behind the [`FINALIZER`]) converges the same namespaces without
//! the binding, which removes its domains from shared Secrets, its ServiceAccount entries, and
//! Secrets no binding wants any more.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::context::Context;
use super::error::{Error, Result};
use super::events;
use super::finalizer;
use super::guard::{self, guarded};
use super::observe::{observation, tally};
use super::resolve::{Resolved, resolve};
use super::selection::select_namespaces;
use super::status::{BindingObservation, Blocker, apply_status, binding_status};
use super::sync::{
    NamespaceOutcome, live_bindings, namespaces_owned_by, service_accounts_by_namespace,
    sync_namespace,
};
use super::tokens::TokenOutcome;
use crate::api::AcrRegistryBinding;

/// How many namespaces one reconcile converges at once.
const PARALLEL_NAMESPACES: usize = 8;

/// Reconciles one binding: once the caches have synced, and within the reconcile deadline,
/// either converges it (adding the finalizer in the same pass) or, when it is being deleted,
/// cleans up after it and releases the finalizer.
pub async fn reconcile(binding: Arc<AcrRegistryBinding>, ctx: Arc<Context>) -> Result<Action> {
    let work = guarded(&ctx.readiness, ctx.config.reconcile_timeout, async {
        let api: Api<AcrRegistryBinding> = Api::all(ctx.client.clone());
        if binding.metadata.deletion_timestamp.is_some() {
            if finalizer::has(&*binding) {
                cleanup(binding.clone(), &ctx).await?;
                finalizer::remove(&api, &binding).await?;
            }
            ctx.retries.succeeded(&guard::retry_key(&*binding));
            return Ok(Action::await_change());
        }
        finalizer::add(&api, &binding).await?;
        apply(binding, ctx.clone()).await
    });
    guard::leading(&ctx, "binding", work).await
}

async fn converge_all(
    ctx: &Context,
    live: &[Resolved],
    namespaces: BTreeSet<String>,
) -> Vec<(String, Result<NamespaceOutcome>)> {
    let service_accounts = service_accounts_by_namespace(ctx);
    futures::stream::iter(namespaces)
        .map(|ns| {
            let sas = service_accounts.get(&ns).map(Vec::as_slice).unwrap_or(&[]);
            async move {
                let r = sync_namespace(ctx, &ns, live, sas).await;
                (ns, r)
            }
        })
        .buffer_unordered(PARALLEL_NAMESPACES)
        .collect()
        .await
}

/// Converges a live binding, in named steps: resolve → token → plan namespaces → converge →
/// observe → write status → when to look again.
async fn apply(binding: Arc<AcrRegistryBinding>, ctx: Arc<Context>) -> Result<Action> {
    // kstatus: say `Reconciling` at once for a new generation, before any slow cloud call.
    if let Some(status) = super::status::reconciling_status(
        binding.status.as_ref(),
        binding.metadata.generation,
        ctx.clock.now(),
    ) {
        send_status(&ctx, &binding, &status).await?;
    }
    let resolved = match resolve(&binding, &ctx.stores.policies, &ctx.config) {
        Ok(r) => r,
        Err(blocker) => return blocked(&binding, &ctx, blocker).await,
    };
    let live = live_bindings(&ctx);
    let outcome = token(&binding, &ctx, &resolved, &live).await;
    let selection = select_namespaces(
        &resolved.namespaces,
        resolved.allowed.as_ref(),
        ctx.stores.namespaces.state().iter().map(|n| &**n),
    );
    let mut targets = selection.selected.clone();
    targets.extend(namespaces_owned_by(&ctx, &resolved.name));
    let results = converge_all(&ctx, &live, targets).await;
    let tally = tally(
        &resolved,
        binding.spec.policy_name(),
        &ctx.config.secret_name,
        &selection,
        &results,
    );
    let retry_soon = tally.retry_soon;
    let obs = observation(&binding, &resolved, &outcome, &selection, tally);
    write_status(&binding, &ctx, &obs).await?;
    // A namespace that keeps failing (quota, an admission webhook) is retried with the same
    // backoff as a failed reconcile; a pass without failures resets it.
    let key = guard::retry_key(&*binding);
    let retry = match retry_soon {
        true => Some(ctx.retries.failed(&key, std::time::Instant::now())),
        false => {
            ctx.retries.succeeded(&key);
            None
        }
    };
    Ok(Action::requeue(next_look(&ctx, &outcome, retry)))
}

/// The binding cannot be converged (invalid spec, missing or invalid policy): say so once, in
/// status and an Event, and look again now and then (spec and policy changes trigger sooner).
async fn blocked(binding: &AcrRegistryBinding, ctx: &Context, blocker: Blocker) -> Result<Action> {
    let obs = BindingObservation {
        generation: binding.metadata.generation,
        registry: binding.spec.registry.display(),
        blocker: Some(blocker.clone()),
        ..Default::default()
    };
    let status = binding_status(binding.status.as_ref(), &obs, ctx.clock.now());
    if binding.status.as_ref() != Some(&status) {
        ctx.event(
            binding,
            EventType::Warning,
            blocker.reason,
            events::actions::VALIDATE,
            blocker.message.clone(),
        )
        .await;
        send_status(ctx, binding, &status).await?;
    }
    ctx.retries.succeeded(&guard::retry_key(binding));
    Ok(Action::requeue(ctx.config.resync))
}

/// The binding's token: the held one, or a fresh one when due (adopted from its Secrets after
/// a restart), with an Event when something happened. Tokens no live binding uses are dropped.
async fn token(
    binding: &AcrRegistryBinding,
    ctx: &Context,
    resolved: &Resolved,
    live: &[Resolved],
) -> TokenOutcome {
    ctx.tokens.retain(&live_requests(live));
    super::adopt::adopt_previous_token(ctx, resolved).await;
    let outcome = ctx.tokens.get(&resolved.request).await;
    emit_token_event(ctx, binding, resolved, &outcome).await;
    outcome
}

/// Writes the status the observation calls for, if it differs from the current one.
async fn write_status(
    binding: &AcrRegistryBinding,
    ctx: &Context,
    obs: &BindingObservation,
) -> Result<()> {
    let status = binding_status(binding.status.as_ref(), obs, ctx.clock.now());
    if binding.status.as_ref() != Some(&status) {
        // Token failures have Events of their own (`emit_token_event`).
        if obs.token_failure.is_none() {
            warn_new_failure(ctx, binding, &status).await;
        }
        send_status(ctx, binding, &status).await?;
    }
    Ok(())
}

/// A Warning Event when writing Secrets or ServiceAccounts fails in a new way (e.g. Forbidden
/// after an RBAC change), once per distinct failure, as `status.lastFailure` records it.
async fn warn_new_failure(
    ctx: &Context,
    binding: &AcrRegistryBinding,
    status: &crate::api::AcrRegistryBindingStatus,
) {
    let Some(new) = &status.last_failure else {
        return;
    };
    let old = binding
        .status
        .as_ref()
        .and_then(|s| s.last_failure.as_ref());
    if old.is_some_and(|o| o.reason == new.reason && o.message == new.message) {
        return;
    }
    ctx.event(
        binding,
        EventType::Warning,
        &new.reason,
        "Sync",
        new.message.clone(),
    )
    .await;
}

/// Server-side-applies `status` on the binding's `/status` under our field manager.
async fn send_status(
    ctx: &Context,
    binding: &AcrRegistryBinding,
    status: &crate::api::AcrRegistryBindingStatus,
) -> Result<()> {
    let api: Api<AcrRegistryBinding> = Api::all(ctx.client.clone());
    apply_status(&api, &binding.name_any(), &ctx.config.field_manager, status).await
}

/// When to reconcile again: when the token needs a look (renewal, retry, expiry), at the
/// latest after the resync period, and within `retry` (the backoff) when a namespace failed.
fn next_look(ctx: &Context, outcome: &TokenOutcome, retry: Option<Duration>) -> Duration {
    let until_check = Duration::try_from(outcome.next_check.duration_since(ctx.clock.now()))
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_secs(1));
    let wait = until_check.min(ctx.config.resync);
    match retry {
        Some(retry) => wait.min(retry),
        None => wait,
    }
}

/// The token requests of every live binding: what the token manager must keep.
fn live_requests(live: &[Resolved]) -> Vec<super::tokens::TokenRequest> {
    live.iter().map(|r| r.request.clone()).collect()
}

/// Publishes the Event that says what the token manager did, if anything.
async fn emit_token_event(
    ctx: &Context,
    binding: &AcrRegistryBinding,
    resolved: &Resolved,
    outcome: &TokenOutcome,
) {
    let registry = resolved.request.registry.key();
    if let Some(e) = events::token_event(&registry, outcome, ctx.clock.now()) {
        ctx.event(binding, e.type_, e.reason, e.action, e.note)
            .await;
    }
}

async fn cleanup(binding: Arc<AcrRegistryBinding>, ctx: &Context) -> Result<()> {
    let name = binding.name_any();
    let mut targets = namespaces_owned_by(ctx, &name);
    if let Ok(resolved) = resolve(&binding, &ctx.stores.policies, &ctx.config) {
        let selection = select_namespaces(
            &resolved.namespaces,
            resolved.allowed.as_ref(),
            ctx.stores.namespaces.state().iter().map(|n| &**n),
        );
        targets.extend(selection.selected);
    }
    let live = live_bindings(ctx);
    let results = converge_all(ctx, &live, targets).await;
    for (ns, r) in results {
        match r {
            Ok(o) if o.service_account_errors.is_empty() => {}
            Ok(o) => {
                return Err(Error::ServiceAccounts {
                    namespace: ns,
                    message: o.service_account_errors.join("; "),
                });
            }
            Err(e) => return Err(e),
        }
    }
    ctx.tokens.retain(&live_requests(&live));
    tracing::info!(binding = %name, "binding removed: its Secrets and ServiceAccount entries are cleaned up");
    Ok(())
}
