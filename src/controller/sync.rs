//! Converges one namespace: its pull Secret and the `imagePullSecrets` of its ServiceAccounts,
//! from every live binding at once (several bindings share one Secret per namespace).
//!
//! Runs under the namespace's lock. The desired Secret is built from the bindings that select
//! the namespace and hold a valid token; it is written only when it differs from the current one
//! (the cached copy, or our own last write while the cache has not shown it yet, see
//! [`super::written`]):
//! created by server-side apply (so RBAC can pin `create` to its name), updated in place with a
//! version-checked replace (same object, same UID). A same-named Secret without our label is left
//! alone, also when only a create conflict reveals it (then no ServiceAccount is bound to it).
//! When no binding selects the namespace any more, our ServiceAccount entries are removed
//! first, then our Secret is deleted, with preconditions on the very object that was read. A
//! namespace whose bindings merely lack a valid token right now keeps its Secret as it is:
//! never empty, never rewritten with an expired token.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;

use super::context::Context;
use super::error::{Error, Result, is_status};
use super::resolve::{Resolved, resolve};
use super::secret::{Contribution, desired_secret, is_ours, merge_into, needs_update};
use super::selection::service_account_selected;
use super::service_accounts::{converge, is_bound};

/// What happened to the namespace's Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretState {
    /// Ours and current.
    Current,
    /// No binding has a valid token for it yet (or any more); left as it is.
    Waiting,
    /// A same-named Secret that is not ours.
    OwnedByOthers,
    /// No Secret (none is wanted).
    Absent,
}

/// The outcome of converging one namespace.
#[derive(Clone, Debug)]
pub struct NamespaceOutcome {
    pub secret: SecretState,
    /// Bindings whose auths the Secret holds.
    pub contributors: BTreeSet<String>,
    /// Every ServiceAccount of the namespace, as converged.
    pub service_accounts: Vec<ServiceAccountOutcome>,
    /// ServiceAccount patches that failed.
    pub service_account_errors: Vec<String>,
}

/// One ServiceAccount after converging its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountOutcome {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Whether it lists our Secret now.
    pub bound: bool,
}

/// Live bindings (not being deleted) that resolve, in name order.
pub fn live_bindings(ctx: &Context) -> Vec<Resolved> {
    let mut out: Vec<Resolved> = ctx
        .stores
        .bindings
        .state()
        .iter()
        .filter(|b| b.metadata.deletion_timestamp.is_none())
        .filter_map(|b| resolve(b, &ctx.stores.policies, &ctx.config).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

async fn contributions(ctx: &Context, selecting: &[&Resolved]) -> Vec<Contribution> {
    let now = ctx.clock.now();
    let mut out = Vec::new();
    for b in selecting {
        // After a restart another binding's token may not be held yet: adopt it from its
        // Secrets rather than dropping its domains from this shared Secret.
        super::adopt::adopt_previous_token(ctx, b).await;
        let Some(token) = ctx.tokens.peek(&b.request.key()).await else {
            continue;
        };
        if !token.valid_at(now) {
            continue;
        }
        let domains = b.domains.clone().unwrap_or_else(|| token.domains.clone());
        out.push(Contribution {
            binding: b.name.clone(),
            binding_uid: b.uid.clone(),
            domains,
            username: token.username.clone(),
            password: token.password.clone(),
            expires_at: token.expires_at,
        });
    }
    out
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
    desired: &Secret,
    existing: Option<&Secret>,
) -> Result<WriteOutcome> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let name = &ctx.config.secret_name;
    let params = PostParams {
        field_manager: Some(ctx.config.field_manager.clone()),
        ..PostParams::default()
    };
    let apply_params = PatchParams::apply(&ctx.config.field_manager);
    let mut current = existing.cloned();
    let mut before = ctx.stores.written.before_write(namespace);
    for _ in 0..MAX_SECRET_ATTEMPTS {
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
                let verb = if current.is_none() {
                    "create"
                } else {
                    "update"
                };
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
        namespace: namespace.to_owned(),
        name: name.clone(),
        attempts: MAX_SECRET_ATTEMPTS,
    })
}

/// How many times a Secret write is retried after conflicts.
const MAX_SECRET_ATTEMPTS: u32 = 4;

/// The cached ServiceAccounts grouped by namespace: one pass over the cache for a whole
/// reconcile, instead of one per namespace (which made a reconcile quadratic in namespaces).
pub fn service_accounts_by_namespace(ctx: &Context) -> HashMap<String, Vec<Arc<ServiceAccount>>> {
    let mut by_namespace: HashMap<String, Vec<Arc<ServiceAccount>>> = HashMap::new();
    for sa in ctx.stores.service_accounts.state() {
        if let Some(ns) = sa.namespace() {
            by_namespace.entry(ns).or_default().push(sa);
        }
    }
    by_namespace
}

/// Converges namespace `namespace` against every live binding. `service_accounts` are the
/// namespace's cached ServiceAccounts (see [`service_accounts_by_namespace`]); patches are
/// version-checked, so a slightly older copy only costs a re-read.
pub async fn sync_namespace(
    ctx: &Context,
    namespace: &str,
    live: &[Resolved],
    service_accounts: &[Arc<ServiceAccount>],
) -> Result<NamespaceOutcome> {
    let _guard = ctx.namespace_lock(namespace).await;
    let secret_name = ctx.config.secret_name.clone();
    let selecting = selecting_bindings(ctx, namespace, live);
    let existing = ctx.stores.secret(namespace);
    let sa_api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);

    if existing.as_ref().is_some_and(|s| !is_ours(s)) {
        return Ok(leave_others_secret(ctx, &sa_api, service_accounts).await);
    }

    let contributions = contributions(ctx, &selecting).await;
    let contributors: BTreeSet<String> = contributions.iter().map(|c| c.binding.clone()).collect();
    let desired = desired_secret(&secret_name, namespace, &contributions);

    let secret_state = plan_secret(existing.is_some(), desired.is_some(), !selecting.is_empty());
    if let Some(d) = &desired
        && existing.as_ref().is_none_or(|e| needs_update(e, d))
    {
        match write_secret(ctx, namespace, d, existing.as_deref()).await? {
            WriteOutcome::Ours => {
                tracing::info!(namespace, contributors = ?contributors, "pull Secret written");
            }
            // Someone else's Secret took the name before the cache showed it: bind nothing to
            // it and do not count the namespace as synced.
            WriteOutcome::OwnedByOthers => {
                tracing::info!(
                    namespace,
                    "a same-named Secret that is not ours exists: left alone"
                );
                return Ok(leave_others_secret(ctx, &sa_api, service_accounts).await);
            }
        }
    }
    let secret_present = matches!(secret_state, SecretState::Current | SecretState::Waiting)
        && (existing.is_some() || desired.is_some());

    let (sas, errors) =
        bind_service_accounts(ctx, &sa_api, service_accounts, &selecting, secret_present).await;

    // Nothing selects the namespace any more: our entries are gone, now the Secret goes too.
    if secret_state == SecretState::Absent
        && let Some(ours) = &existing
        && errors.is_empty()
    {
        delete_secret(ctx, namespace, ours).await?;
    }
    Ok(NamespaceOutcome {
        secret: secret_state,
        contributors,
        service_accounts: sas,
        service_account_errors: errors,
    })
}

/// The live bindings that select the namespace (none when it is gone or being deleted).
fn selecting_bindings<'a>(
    ctx: &Context,
    namespace: &str,
    live: &'a [Resolved],
) -> Vec<&'a Resolved> {
    let labels = ctx
        .stores
        .namespaces
        .get(&ObjectRef::new(namespace))
        .filter(|ns| super::selection::namespace_usable(ns))
        .map(|ns| ns.labels().clone());
    match &labels {
        Some(l) => live.iter().filter(|b| b.selects(namespace, l)).collect(),
        None => Vec::new(),
    }
}

/// What becomes of our Secret (the cached one is ours or absent): current when a Secret is
/// wanted; otherwise left waiting while some binding selects the namespace, absent when none
/// does.
fn plan_secret(exists: bool, desired: bool, selected: bool) -> SecretState {
    match (exists, desired) {
        (_, true) => SecretState::Current,
        (true, false) if selected => SecretState::Waiting,
        (true, false) => SecretState::Absent,
        (false, false) if !selected => SecretState::Absent,
        (false, false) => SecretState::Waiting,
    }
}

/// A same-named Secret that is not ours: leave it alone, and bind no ServiceAccount to it;
/// still remove entries we recorded earlier if no binding wants them.
async fn leave_others_secret(
    ctx: &Context,
    sa_api: &Api<ServiceAccount>,
    service_accounts: &[Arc<ServiceAccount>],
) -> NamespaceOutcome {
    let secret_name = &ctx.config.secret_name;
    let mut errors = Vec::new();
    let mut sas = Vec::new();
    for sa in service_accounts {
        let wanted = false;
        if let Err(e) = converge(sa_api, sa, secret_name, wanted, &ctx.config.field_manager).await {
            errors.push(e.to_string());
        }
        sas.push(ServiceAccountOutcome {
            name: sa.name_any(),
            labels: sa.labels().clone(),
            bound: is_bound(sa, secret_name),
        });
    }
    NamespaceOutcome {
        secret: SecretState::OwnedByOthers,
        contributors: BTreeSet::new(),
        service_accounts: sas,
        service_account_errors: errors,
    }
}

/// ServiceAccounts: wanted when a selecting binding selects them and our Secret is there.
/// Returns every ServiceAccount as converged, and the messages of the patches that failed.
async fn bind_service_accounts(
    ctx: &Context,
    sa_api: &Api<ServiceAccount>,
    service_accounts: &[Arc<ServiceAccount>],
    selecting: &[&Resolved],
    secret_present: bool,
) -> (Vec<ServiceAccountOutcome>, Vec<String>) {
    let secret_name = &ctx.config.secret_name;
    let mut errors = Vec::new();
    let mut sas = Vec::new();
    for sa in service_accounts {
        let name = sa.name_any();
        let wanted = secret_present
            && sa.metadata.deletion_timestamp.is_none()
            && selecting
                .iter()
                .any(|b| service_account_selected(&b.service_accounts, &name, sa.labels()));
        let bound = match converge(sa_api, sa, secret_name, wanted, &ctx.config.field_manager).await
        {
            Ok(wrote) => {
                if wrote && wanted {
                    count_missed_injection(sa, selecting);
                }
                wanted || (is_bound(sa, secret_name) && !wanted_by_us_only(sa, secret_name))
            }
            Err(e) => {
                errors.push(e.to_string());
                is_bound(sa, secret_name)
            }
        };
        sas.push(ServiceAccountOutcome {
            name,
            labels: sa.labels().clone(),
            bound,
        });
    }
    (sas, errors)
}

/// Deletes our Secret from a namespace no binding selects any more (already gone is fine).
/// Only the very Secret we decided on goes: the delete carries its UID and resourceVersion as
/// preconditions, so a Secret the user put in its place (or relabelled as theirs) after the
/// cache was read survives; the next reconcile decides again from what the cache then shows.
async fn delete_secret(ctx: &Context, namespace: &str, decided_on: &Secret) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let before = ctx.stores.written.before_write(namespace);
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

/// Counts a ServiceAccount we just had to bind although a binding that selects it asked for
/// injection at creation and existed when the ServiceAccount was created (creation times are
/// whole seconds: the same second counts): the webhook was down, skipped it or was not called.
fn count_missed_injection(sa: &ServiceAccount, selecting: &[&Resolved]) {
    let Some(created) = sa.metadata.creation_timestamp.as_ref().map(|t| t.0) else {
        return;
    };
    let name = sa.name_any();
    let missed = selecting.iter().find(|b| {
        b.inject_on_create
            && b.created_at.is_some_and(|at| created >= at)
            && service_account_selected(&b.service_accounts, &name, sa.labels())
    });
    if let Some(b) = missed {
        crate::metrics::patched_after_create(&b.name);
        tracing::info!(namespace = ?sa.metadata.namespace, serviceaccount = %name, binding = %b.name, "pull Secret added after creation although the binding asks for injection at creation");
    }
}

/// Whether the entry is one only we put there (so it is gone after we removed it).
fn wanted_by_us_only(sa: &ServiceAccount, secret: &str) -> bool {
    super::service_accounts::recorded(sa).contains(secret)
}

/// Namespaces whose cached Secret names `binding` as an owner.
pub fn namespaces_owned_by(ctx: &Context, binding: &str) -> BTreeSet<String> {
    ctx.stores
        .secrets
        .state()
        .iter()
        .filter(|s| is_ours(s) && super::secret::owner_bindings(s).contains(binding))
        .filter_map(|s| s.namespace())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_secret_keeps_a_selected_namespace_waiting_and_lets_an_unselected_one_go() {
        // (exists, desired, selected) -> state
        let cases = [
            ((false, true, true), SecretState::Current),
            ((true, true, true), SecretState::Current),
            ((true, true, false), SecretState::Current),
            ((true, false, true), SecretState::Waiting),
            ((false, false, true), SecretState::Waiting),
            ((true, false, false), SecretState::Absent),
            ((false, false, false), SecretState::Absent),
        ];
        for ((exists, desired, selected), want) in cases {
            assert_eq!(
                plan_secret(exists, desired, selected),
                want,
                "exists={exists} desired={desired} selected={selected}"
            );
        }
    }
}
