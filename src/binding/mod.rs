//! The `AcrRegistryBinding` reconciler. Its stages, one file each, in the order a binding
//! passes through them (each file's header says whether it talks to the cluster):
//!
//! 1. [`resolve`]: the binding against its policy, and every live binding (no).
//! 2. [`token`]: the binding's registry token, from the token manager (the cloud; one Event),
//!    fresh when a rotation is requested (`acrcredentials.io/rotation-requested-at`).
//! 3. [`plan`]: the target namespaces, and per namespace the whole plan: its Secret and every
//!    ServiceAccount, decided before anything is written (no).
//! 4. [`converge`]: per namespace, under its lock: plan, then write (yes); a renewal rewrite
//!    that may wait is deferred to its slot in the wave instead.
//! 5. [`observe`]: the outcomes folded into the binding's view (no).
//! 6. [`status`]: every status of the binding, built by `model::status`, sent in one place
//!    (yes).
//!
//! Plus [`wave`]: the wave lane's worker, which writes the deferred renewal rewrites at their
//! slots within the write budget; [`touched`]: the namespace pass, which converges a namespace
//! on its own as soon as one of its objects changes; and [`finalizer`]: added in the pass that first converges a
//! binding. Deletion (behind the
//! finalizer) converges the same namespaces without the binding, which removes its domains from
//! shared Secrets, its ServiceAccount entries, and Secrets no binding wants any more.

pub mod converge;
pub mod finalizer;
pub mod observe;
pub mod plan;
pub mod resolve;
pub mod status;
pub mod token;
pub mod touched;
pub mod wave;

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use crate::api::AcrRegistryBinding;
use crate::cluster::backoff::retry_key;
use crate::cluster::guard::{self, guarded};
use crate::cluster::{Context, Error, Result};
use crate::model::token::TokenOutcome;

/// Reconciles one binding: once the caches have synced, and within the reconcile deadline,
/// either converges it (adding the finalizer in the same pass) or, when it is being deleted,
/// cleans up after it and releases the finalizer. Everything it logs is in its `reconcile`
/// span (the binding's name and generation; nothing else of the object).
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(binding = %binding.name_any(), generation = binding.metadata.generation)
)]
pub async fn reconcile(binding: Arc<AcrRegistryBinding>, ctx: Arc<Context>) -> Result<Action> {
    let work = guarded(&ctx.readiness, ctx.config.reconcile_timeout, async {
        let api: Api<AcrRegistryBinding> = Api::all(ctx.client.clone());
        if binding.metadata.deletion_timestamp.is_some() {
            if finalizer::has(&*binding) {
                cleanup(&binding, &ctx).await?;
                finalizer::remove(&api, &ctx.budget, &binding).await?;
            }
            ctx.retries.succeeded(&retry_key(&*binding));
            return Ok(Action::await_change());
        }
        apply(&api, &binding, &ctx).await
    });
    guard::leading(&ctx, "binding", work).await
}

/// Converges a live binding, its finalizer added before any Secret is written: one line per
/// stage. A rotation answered in a pass that then fails is answered again by the next one (at
/// least once, as after a restart: see [`token`]).
async fn apply(
    api: &Api<AcrRegistryBinding>,
    binding: &AcrRegistryBinding,
    ctx: &Context,
) -> Result<Action> {
    let resolved = match resolve::resolve_binding(ctx, binding) {
        Ok(r) => r,
        Err(blocker) => {
            finalizer::add(api, &ctx.budget, binding).await?;
            status::starting(ctx, binding).await?;
            status::blocked(ctx, binding, blocker).await?;
            // Spec and policy changes trigger sooner.
            ctx.retries.succeeded(&retry_key(binding));
            return Ok(Action::requeue(ctx.config.resync));
        }
    };
    let live = resolve::live_bindings(ctx);
    // The finalizer, the `Reconciling` status and the token need nothing of one another: they
    // go at once, since everything before the first Secret delays every namespace. The
    // finalizer is on before any Secret is written.
    let (finalized, started, token) = tokio::join!(
        finalizer::add(api, &ctx.budget, binding),
        status::starting(ctx, binding),
        token::token(ctx, binding, &resolved, &live),
    );
    let token::Token {
        outcome: token,
        rotation,
        rotated,
        event,
    } = token?;
    // The token's Event goes out while the namespaces converge, or before the pass fails.
    let announce = token::announce(ctx, binding, event);
    if let Err(e) = finalized.and(started) {
        announce.await;
        return Err(e);
    }
    let targets = plan::targets(ctx, &resolved);
    // A rotation asked for now is written now; a renewal waits for its slot in the wave.
    let converged = async {
        match rotated {
            true => (
                converge::converge_all(ctx, &live, targets.namespaces.clone()).await,
                None,
            ),
            false => converge::converge_paced(ctx, &live, targets.namespaces.clone()).await,
        }
    };
    let ((results, pace), ()) = tokio::join!(converged, announce);
    let mut observed = observe::observe(
        binding,
        &resolved,
        &token,
        &targets,
        &results,
        &ctx.config.secret_name,
    );
    observed.observation.rotation = rotation;
    observed.observation.renewal = pace;
    status::report(ctx, binding, &observed.observation).await?;
    Ok(Action::requeue(next_look(
        ctx,
        binding,
        &token,
        observed.retry_soon,
    )))
}

/// When to reconcile again: when the token needs a look (renewal, retry, expiry) or a deferred
/// renewal rewrite is due at the latest (should the wave lane not have written it, the pass
/// writes it then), at the latest after the resync period, and within the backoff when a
/// namespace failed (one that
/// keeps failing, by quota or an admission webhook, is retried like a failed reconcile; a pass
/// without failures resets it).
fn next_look(
    ctx: &Context,
    binding: &AcrRegistryBinding,
    token: &TokenOutcome,
    retry_soon: bool,
) -> Duration {
    let key = retry_key(binding);
    let retry = match retry_soon {
        true => Some(ctx.retries.failed(&key, std::time::Instant::now())),
        false => {
            ctx.retries.succeeded(&key);
            None
        }
    };
    let next_check = match ctx.wave.earliest_latest() {
        Some(latest) => token.next_check.min(latest),
        None => token.next_check,
    };
    let until_check = Duration::try_from(next_check.duration_since(ctx.clock.now()))
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_secs(1));
    let wait = until_check.min(ctx.config.resync);
    match retry {
        Some(retry) => wait.min(retry),
        None => wait,
    }
}

/// A binding being deleted: converges the namespaces it wrote to without it.
async fn cleanup(binding: &AcrRegistryBinding, ctx: &Context) -> Result<()> {
    let name = binding.name_any();
    let targets = match resolve::resolve_binding(ctx, binding) {
        Ok(resolved) => plan::targets(ctx, &resolved).namespaces,
        Err(_) => plan::namespaces_owned_by(ctx, &name),
    };
    let live = resolve::live_bindings(ctx);
    let results = converge::converge_all(ctx, &live, targets).await;
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
    ctx.tokens.retain(&token::live_requests(&live));
    tracing::info!(binding = %name, "binding removed: its Secrets and ServiceAccount entries are cleaned up");
    Ok(())
}
