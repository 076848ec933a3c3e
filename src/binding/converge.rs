//! Stage 4, converge. Talks to the cluster: yes (the writes, and only the writes).
//!
//! Each namespace is converged under its lock (several bindings may reconcile one namespace at
//! once): [`super::plan`] decides its whole plan, then [`carry_out`] writes it in this order:
//!
//! 1. The pull Secret, when it is wanted and differs from the current one (the cached copy, or
//!    our own last write while the cache has not shown it yet, see
//!    [`crate::cluster::written`]): created by server-side apply (so RBAC can pin `create` to
//!    its name), updated in place with a version-checked replace (same object, same UID). A
//!    same-named Secret that only a create conflict reveals is left alone, and the plan falls
//!    back to [`model::plan::leave_others`].
//! 2. Every ServiceAccount whose entry must be added or removed: a version-checked JSON patch
//!    ([`model::service_accounts::plan`]), re-read and retried on conflicts.
//! 3. Our Secret, when no binding selects the namespace any more and every entry is gone: a
//!    delete with preconditions on the very object that was read.
//!
//! Every write takes from the write budget ([`crate::cluster::budget`]). In a binding's pass
//! ([`converge_paced`]) a Secret rewrite that only renews tokens, with the old token still good
//! for a while, is not written: it is queued in the wave lane at its slot
//! ([`crate::model::wave`]), and `super::wave` writes it then. Everything else (and every
//! rewrite when the budget is unlimited) goes at once, through the urgent lane.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::plan::{plan_namespace, service_accounts_by_namespace};
use crate::cluster::Context;
use crate::cluster::budget::Lane;
use crate::cluster::error::{Error, Result, is_status};
use crate::cluster::wave::WaveItem;
use crate::model::cached_service_account::CachedServiceAccount;
use crate::model::plan::{self, NamespaceOutcome, NamespacePlan, SecretWrite};
use crate::model::resolve::Resolved;
use crate::model::secret::{is_ours, merge_into, needs_update};
use crate::model::service_accounts;
use crate::model::wave::{self, WavePace};

/// How many namespaces one reconcile converges at once.
const PARALLEL_NAMESPACES: usize = 8;

/// How many times a Secret write is retried after conflicts.
const MAX_SECRET_ATTEMPTS: u32 = 4;

/// How many times a ServiceAccount patch is retried when the ServiceAccount changed under us.
pub const MAX_SERVICE_ACCOUNT_ATTEMPTS: u32 = 8;

/// How a namespace is converged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Everything at once, through the urgent lane.
    Now,
    /// A binding's pass: a rewrite that only renews tokens waits for its slot, that of the
    /// `rank`-th of the pass's `n` namespaces in the wave.
    Wave { rank: usize, n: usize },
    /// The wave lane's turn: the Secret's write was budgeted already.
    Turn,
    /// The namespace pass ([`super::touched`]): everything at once, through the urgent lane,
    /// except a rewrite that only renews tokens while the budget paces the wave; that one is
    /// left to the wave, where the binding's pass put it.
    Touched,
}

/// Converges `namespaces` against every live binding (`live`), a few at a time, each in a
/// `namespace` span (a child of the reconcile's span, so its lines name binding and namespace),
/// deferring nothing.
pub async fn converge_all(
    ctx: &Context,
    live: &[Resolved],
    namespaces: BTreeSet<String>,
) -> Vec<(String, Result<NamespaceOutcome>)> {
    converge_many(ctx, live, namespaces, false).await.0
}

/// Converges `namespaces` like [`converge_all`], but defers renewal rewrites to their slot in
/// the wave; also says how the wave fits the budget, when one was deferred.
pub async fn converge_paced(
    ctx: &Context,
    live: &[Resolved],
    namespaces: BTreeSet<String>,
) -> (Vec<(String, Result<NamespaceOutcome>)>, Option<WavePace>) {
    converge_many(ctx, live, namespaces, true).await
}

async fn converge_many(
    ctx: &Context,
    live: &[Resolved],
    namespaces: BTreeSet<String>,
    paced: bool,
) -> (Vec<(String, Result<NamespaceOutcome>)>, Option<WavePace>) {
    let service_accounts = service_accounts_by_namespace(ctx);
    let n = namespaces.len();
    let converged: Vec<(String, Result<Converged>)> =
        futures::stream::iter(namespaces.into_iter().enumerate())
            .map(|(rank, ns)| {
                let sas = service_accounts.get(&ns).map(Vec::as_slice).unwrap_or(&[]);
                let pacing = match paced {
                    true => Pacing::Wave { rank, n },
                    false => Pacing::Now,
                };
                let span = tracing::info_span!("namespace", namespace = %ns);
                async move {
                    let r = converge_namespace_paced(ctx, &ns, live, sas, pacing).await;
                    (ns, r)
                }
                .instrument(span)
            })
            .buffer_unordered(PARALLEL_NAMESPACES)
            .collect()
            .await;
    // The wave's pace as the namespace with the shortest window sees it.
    let pace = converged
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok()?.deferred.clone())
        .min_by_key(|p| p.window);
    if let Some(p) = &pace {
        crate::metrics::wave_pending(ctx.wave.len());
        tracing::info!(
            namespaces = p.namespaces,
            window_seconds = p.window.as_secs(),
            needed_per_second = p.needed(),
            over_budget = p.over_budget(),
            "renewal rewrites paced over the renewal window"
        );
    }
    let results = converged
        .into_iter()
        .map(|(ns, r)| (ns, r.map(|c| c.outcome)))
        .collect();
    (results, pace)
}

/// Converges namespace `namespace` against every live binding, under its lock: plans it, then
/// carries the plan out. `service_accounts` are the namespace's cached ServiceAccounts (see
/// [`service_accounts_by_namespace`]); patches are version-checked, so a slightly older copy
/// only costs a re-read.
pub async fn converge_namespace(
    ctx: &Context,
    namespace: &str,
    live: &[Resolved],
    service_accounts: &[Arc<CachedServiceAccount>],
) -> Result<NamespaceOutcome> {
    converge_namespace_paced(ctx, namespace, live, service_accounts, Pacing::Now)
        .await
        .map(|c| c.outcome)
}

/// One namespace converged, and the pace of the wave its Secret's rewrite was deferred to.
#[derive(Debug)]
pub struct Converged {
    pub outcome: NamespaceOutcome,
    pub deferred: Option<WavePace>,
}

/// [`converge_namespace`], paced as `pacing` says.
pub async fn converge_namespace_paced(
    ctx: &Context,
    namespace: &str,
    live: &[Resolved],
    service_accounts: &[Arc<CachedServiceAccount>],
    pacing: Pacing,
) -> Result<Converged> {
    let _guard = ctx.namespace_lock(namespace).await;
    let service_accounts = freshest(ctx, service_accounts);
    let service_accounts = service_accounts.as_slice();
    let mut plan = plan_namespace(ctx, namespace, live, service_accounts).await;
    let deferred = match (pacing, &plan.write) {
        (Pacing::Wave { rank, n }, Some(write)) if ctx.budget.limited() => {
            defer(ctx, namespace, live, &plan, write, rank, n).await
        }
        _ => None,
    };
    if pacing == Pacing::Touched
        && ctx.budget.limited()
        && let Some(write) = &plan.write
        && let Some(existing) = write.existing.as_deref()
        && wave::renews_only(existing, &write.desired).is_some()
    {
        plan.write = None;
    }
    let lane = match pacing {
        Pacing::Turn => Lane::Wave,
        Pacing::Now | Pacing::Wave { .. } | Pacing::Touched => Lane::Urgent,
    };
    if let Some((item, _)) = deferred.clone() {
        ctx.wave.schedule(item);
        // The Secret keeps the old token, valid with margin, until its slot.
        plan.write = None;
    }
    let outcome = carry_out(ctx, namespace, plan, service_accounts, lane).await?;
    Ok(Converged {
        outcome,
        deferred: deferred.map(|(_, pace)| pace),
    })
}

/// The namespace's ServiceAccounts as we know them best, under its lock: each as the cache shows
/// it now (a pass's list was taken at its start, which at 10,000 namespaces is a minute ago),
/// or as our own patch returned it while the cache has not shown that yet.
fn freshest(ctx: &Context, listed: &[Arc<CachedServiceAccount>]) -> Vec<Arc<CachedServiceAccount>> {
    listed
        .iter()
        .map(|sa| {
            let cached = ctx
                .stores
                .service_accounts
                .get(&ObjectRef::from_obj(&**sa))
                .unwrap_or_else(|| sa.clone());
            ctx.stores.patched.current(cached)
        })
        .collect()
}

/// The slot of a rewrite that only renews tokens and may wait (none when it may not), and the
/// pace of its wave: from the newest contributing token's issue to the deadline of the oldest
/// token in the Secret, as the `rank`-th of `n` namespaces.
async fn defer(
    ctx: &Context,
    namespace: &str,
    live: &[Resolved],
    plan: &NamespacePlan,
    write: &SecretWrite,
    rank: usize,
    n: usize,
) -> Option<(WaveItem, WavePace)> {
    let old = wave::renews_only(write.existing.as_deref()?, &write.desired)?;
    let contributors: Vec<&Resolved> = live
        .iter()
        .filter(|r| plan.contributors.contains(&r.name))
        .collect();
    let renew_before = contributors.iter().map(|r| r.renew_before).max()?;
    let mut issued = None;
    for r in &contributors {
        if let Some(t) = ctx.tokens.peek(&r.request.key()).await {
            issued = issued.max(Some(t.issued_at));
        }
    }
    let now = ctx.clock.now();
    let start = issued?.min(now);
    let latest = wave::deadline(old, renew_before);
    if latest <= now {
        return None;
    }
    let pace = WavePace {
        namespaces: n,
        window: Duration::try_from(start.duration_until(latest)).unwrap_or_default(),
        budget: ctx.budget.config().per_second,
    };
    let item = WaveItem {
        namespace: namespace.to_owned(),
        due: wave::slot(start, latest, rank, n),
        latest,
        over_budget: pace.over_budget(),
    };
    Some((item, pace))
}

/// Writes what `plan` says, in order: the Secret, the ServiceAccounts, the Secret's deletion.
/// The Secret's write takes `lane`; the others are urgent.
async fn carry_out(
    ctx: &Context,
    namespace: &str,
    mut plan: NamespacePlan,
    service_accounts: &[Arc<CachedServiceAccount>],
    lane: Lane,
) -> Result<NamespaceOutcome> {
    if let Some(write) = &plan.write {
        match write_secret(ctx, namespace, write, lane).await? {
            WriteOutcome::Ours => {
                tracing::info!(namespace, contributors = ?plan.contributors, "pull Secret written");
            }
            // Someone else's Secret took the name before the cache showed it: bind nothing to
            // it and do not count the namespace as synced.
            WriteOutcome::OwnedByOthers => {
                tracing::info!(
                    namespace,
                    "a same-named Secret that is not ours exists: left alone"
                );
                plan = plan::leave_others(service_accounts);
            }
        }
    }
    let secret_name = &ctx.config.secret_name;
    let sa_api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    let mut errors = Vec::new();
    let mut sas = Vec::with_capacity(plan.service_accounts.len());
    for step in &plan.service_accounts {
        let sa = &step.service_account;
        let wrote = match patch_service_account(ctx, &sa_api, sa, step.wanted).await {
            Ok(wrote) => Some(wrote),
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        };
        if wrote == Some(true)
            && let Some(binding_name) = &step.missed_injection
        {
            crate::metrics::patched_after_create(binding_name);
            tracing::info!(namespace, serviceaccount = %sa.name_any(), binding = %binding_name, "pull Secret added after creation although the binding asks for injection at creation");
        }
        sas.push(step.outcome(plan.bound_after(step, secret_name, wrote)));
    }
    // Nothing selects the namespace any more: our entries are gone, now the Secret goes too.
    if let Some(ours) = &plan.delete
        && errors.is_empty()
    {
        delete_secret(ctx, namespace, ours).await?;
    }
    Ok(NamespaceOutcome {
        secret: plan.state,
        contributors: plan.contributors,
        service_accounts: sas,
        service_account_errors: errors,
    })
}

/// What became of a Secret write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteOutcome {
    /// Ours, holding what we want (written now or already so).
    Ours,
    /// A conflict revealed a same-named Secret that is not ours: left alone.
    OwnedByOthers,
}

async fn write_secret(
    ctx: &Context,
    namespace: &str,
    write: &SecretWrite,
    lane: Lane,
) -> Result<WriteOutcome> {
    let desired = &write.desired;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let name = &ctx.config.secret_name;
    let params = PostParams {
        field_manager: Some(ctx.config.field_manager.clone()),
        ..PostParams::default()
    };
    let apply_params = PatchParams::apply(&ctx.config.field_manager);
    let mut current = write.existing.as_deref().cloned();
    let mut before = ctx.stores.written.before_write(namespace);
    for attempt in 0..MAX_SECRET_ATTEMPTS {
        // The wave lane budgeted its first attempt; retries after a conflict are urgent.
        if lane == Lane::Urgent || attempt > 0 {
            ctx.budget.urgent();
        }
        let creating = current.is_none();
        let result = match &current {
            // Created by server-side apply, which the API server authorizes as `create` of this
            // very name: the controller's RBAC can pin `create` to the Secret name, which a plain
            // POST cannot. Not forced: a same-named Secret someone else created meanwhile makes
            // it conflict (409) instead of being taken over.
            None => api.patch(name, &apply_params, &Patch::Apply(desired)).await,
            // An in-place update of the object we read (same UID), checked by its
            // resourceVersion; what others added (labels, annotations, owners) stays.
            Some(cur) => api.replace(name, &params, &merge_into(cur, desired)).await,
        };
        match result {
            Ok(written) => {
                let verb = if creating { "create" } else { "update" };
                crate::metrics::write("Secret", verb);
                // Until the cache shows it, the next pass reads this copy instead.
                ctx.stores.written.wrote(before, written);
                return Ok(WriteOutcome::Ours);
            }
            // 422 on create: a same-named Secret of another type appeared (type is immutable).
            Err(e) if is_status(&e, 409) || (creating && is_status(&e, 422)) => {
                // Changed or created meanwhile: read it again, and never write what is not ours.
                let fresh = api.get_opt(name).await?;
                before.read(fresh.as_ref());
                match fresh {
                    Some(fresh) if !is_ours(&fresh) => return Ok(WriteOutcome::OwnedByOthers),
                    Some(fresh) if !needs_update(&fresh, desired) => return Ok(WriteOutcome::Ours),
                    fresh => current = fresh,
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended {
        kind: "Secret",
        namespace: namespace.to_owned(),
        name: name.clone(),
        attempts: MAX_SECRET_ATTEMPTS,
    })
}

/// Makes one ServiceAccount reference (`want`) or stop referencing our Secret, starting from
/// `cached` (possibly stale) and re-reading after every conflict. Returns whether it wrote.
/// A ServiceAccount that no longer exists is not an error.
async fn patch_service_account(
    ctx: &Context,
    api: &Api<ServiceAccount>,
    cached: &CachedServiceAccount,
    want: bool,
) -> Result<bool> {
    let secret = &ctx.config.secret_name;
    let params = PatchParams {
        field_manager: Some(ctx.config.field_manager.clone()),
        ..PatchParams::default()
    };
    let name = cached
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let mut current = cached.clone();
    // The versions this patch replaces: the one it was planned on, and those read after a
    // conflict (see `cluster::patched`).
    let mut stale = vec![cached.meta().resource_version.clone()];
    for attempt in 1..=MAX_SERVICE_ACCOUNT_ATTEMPTS {
        let Some(patch) = service_accounts::plan(&current, secret, want) else {
            return Ok(false);
        };
        ctx.budget.urgent();
        let namespace = cached.meta().namespace.as_deref().unwrap_or_default();
        let _under_way = ctx.stores.patched.under_way(namespace, &name);
        match api.patch(&name, &params, &Patch::<()>::Json(patch)).await {
            Ok(patched) => {
                crate::metrics::write("ServiceAccount", "patch");
                ctx.stores.patched.patched(stale, patched);
                tracing::debug!(namespace = ?cached.meta().namespace, serviceaccount = %name, want, attempt, "patched imagePullSecrets");
                return Ok(true);
            }
            Err(e) if is_status(&e, 404) => return Ok(false),
            Err(e) if is_status(&e, 409) || is_status(&e, 422) => match api.get_opt(&name).await? {
                Some(fresh) => {
                    stale.push(fresh.metadata.resource_version.clone());
                    current = fresh.into();
                }
                None => return Ok(false),
            },
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended {
        kind: "ServiceAccount",
        namespace: cached.meta().namespace.clone().unwrap_or_default(),
        name,
        attempts: MAX_SERVICE_ACCOUNT_ATTEMPTS,
    })
}

/// Deletes our Secret from a namespace no binding selects any more (already gone is fine).
/// Only the very Secret we decided on goes: the delete carries its UID and resourceVersion as
/// preconditions, so a Secret the user put in its place (or relabelled as theirs) after the
/// cache was read survives; the next reconcile decides again from what the cache then shows.
async fn delete_secret(ctx: &Context, namespace: &str, decided_on: &Secret) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let before = ctx.stores.written.before_write(namespace);
    ctx.budget.urgent();
    match api
        .delete(&ctx.config.secret_name, &delete_params(decided_on))
        .await
    {
        Ok(_) => {
            crate::metrics::write("Secret", "delete");
            ctx.stores.written.deleted(before);
            tracing::info!(
                namespace,
                "pull Secret deleted: no binding selects the namespace"
            );
            Ok(())
        }
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) if is_status(&e, 409) => {
            tracing::info!(
                namespace,
                "pull Secret not deleted: it changed or was replaced since it was read"
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// A delete of exactly `secret`: its UID and resourceVersion as preconditions.
pub fn delete_params(secret: &Secret) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: secret.metadata.uid.clone(),
            resource_version: secret.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    }
}
