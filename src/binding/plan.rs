//! Stage 3, plan. Talks to the cluster: no (reads the watch caches and the token manager).
//!
//! Which namespaces a reconcile converges ([`targets`]: those the binding selects, and those it
//! still owns a Secret in), and for one namespace, under its lock, the inputs of its plan: the
//! live bindings that select it, the Secret it holds, and the valid tokens of those bindings
//! (adopted from their Secrets after a restart). The plan itself is
//! [`crate::model::plan::plan_namespace`], decided in full before [`super::converge`] writes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::token::adopt_previous_token;
use crate::cluster::Context;
use crate::model::cached_service_account::CachedServiceAccount;
use crate::model::plan::{self, NamespacePlan};
use crate::model::resolve::Resolved;
use crate::model::secret::{Contribution, owner_bindings};
use crate::model::selection::{NamespaceSelectionResult, namespace_usable, select_namespaces};

/// The namespaces one reconcile of a binding converges.
#[derive(Clone, Debug)]
pub struct Targets {
    /// What the binding's selection says over every cached namespace.
    pub selection: NamespaceSelectionResult,
    /// The selected namespaces, and those the binding still owns a Secret in.
    pub namespaces: BTreeSet<String>,
}

/// The namespaces `resolved` selects now, and those it still owns a Secret in.
pub fn targets(ctx: &Context, resolved: &Resolved) -> Targets {
    let selection = select_namespaces(
        &resolved.namespaces,
        resolved.allowed.as_ref(),
        ctx.stores.namespaces.state().iter().map(|n| &**n),
    );
    let mut namespaces = selection.selected.clone();
    namespaces.extend(namespaces_owned_by(ctx, &resolved.name));
    Targets {
        selection,
        namespaces,
    }
}

/// Namespaces whose cached Secret names the binding `binding_name` as an owner (read from each
/// Secret's compact form: this scans every cached Secret on every pass of every binding).
pub fn namespaces_owned_by(ctx: &Context, binding_name: &str) -> BTreeSet<String> {
    ctx.stores
        .secrets
        .state()
        .iter()
        .filter(|s| s.is_ours() && s.owned_by_binding(binding_name))
        .filter_map(|s| s.namespace())
        .collect()
}

/// The cached ServiceAccounts grouped by namespace: one pass over the cache for a whole
/// reconcile, instead of one per namespace (which made a reconcile quadratic in namespaces).
pub fn service_accounts_by_namespace(
    ctx: &Context,
) -> HashMap<String, Vec<Arc<CachedServiceAccount>>> {
    let mut by_namespace: HashMap<String, Vec<Arc<CachedServiceAccount>>> = HashMap::new();
    for sa in ctx.stores.service_accounts.state() {
        // A key allocated per namespace, not per ServiceAccount.
        let Some(ns) = sa.meta().namespace.as_deref() else {
            continue;
        };
        match by_namespace.get_mut(ns) {
            Some(list) => list.push(sa),
            None => {
                let ns = ns.to_owned();
                by_namespace.insert(ns, vec![sa]);
            }
        }
    }
    by_namespace
}

/// The cached ServiceAccounts of one namespace (a scan of the cache that allocates nothing
/// per ServiceAccount: the namespace pass and the wave lane run it once per namespace).
pub fn service_accounts_in(ctx: &Context, namespace: &str) -> Vec<Arc<CachedServiceAccount>> {
    ctx.stores
        .service_accounts
        .state()
        .into_iter()
        .filter(|sa| sa.meta().namespace.as_deref() == Some(namespace))
        .collect()
}

/// The whole plan of `namespace` (run under its lock): a same-named Secret that is not ours is
/// left alone; otherwise the Secret and every ServiceAccount are decided from the live bindings
/// that select the namespace and hold a valid token.
pub async fn plan_namespace(
    ctx: &Context,
    namespace: &str,
    live: &[Resolved],
    service_accounts: &[Arc<CachedServiceAccount>],
) -> NamespacePlan {
    let existing = ctx.stores.secret(namespace);
    if plan::others_secret(existing.as_deref()) {
        return plan::leave_others(service_accounts);
    }
    let selecting = selecting_bindings(ctx, namespace, live);
    let contributions = contributions(ctx, &selecting).await;
    plan::plan_namespace(
        &ctx.config.secret_name,
        namespace,
        existing,
        &selecting,
        &contributions,
        service_accounts,
    )
}

/// Whether a binding of this controller has a say in `namespace`: a live one selects it, or one
/// it caches owns the Secret there. A namespace pass converges nothing else: another
/// controller's bindings (a sharded install, with its own object selector) may own it.
pub fn concerns_us(ctx: &Context, namespace: &str, live: &[Resolved]) -> bool {
    if !selecting_bindings(ctx, namespace, live).is_empty() {
        return true;
    }
    let Some(secret) = ctx.stores.secret(namespace) else {
        return false;
    };
    let owners = owner_bindings(&secret);
    !owners.is_empty()
        && ctx
            .stores
            .bindings
            .state()
            .iter()
            .any(|b| owners.contains(&b.name_any()))
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
        .filter(|ns| namespace_usable(ns))
        .map(|ns| ns.labels().clone());
    match &labels {
        Some(l) => live.iter().filter(|r| r.selects(namespace, l)).collect(),
        None => Vec::new(),
    }
}

/// What each selecting binding puts into the Secret: its valid token and its domains.
async fn contributions(ctx: &Context, selecting: &[&Resolved]) -> Vec<Contribution> {
    let now = ctx.clock.now();
    let mut out = Vec::new();
    for resolved in selecting {
        // After a restart another binding's token may not be held yet: adopt it from its
        // Secrets rather than dropping its domains from this shared Secret.
        adopt_previous_token(ctx, resolved).await;
        let Some(token) = ctx.tokens.peek(&resolved.request.key()).await else {
            continue;
        };
        if !token.valid_at(now) {
            continue;
        }
        let domains = resolved
            .domains
            .clone()
            .unwrap_or_else(|| token.domains.clone());
        out.push(Contribution {
            binding: resolved.name.clone(),
            binding_uid: resolved.uid.clone(),
            domains,
            username: token.username.clone(),
            password: token.password.clone(),
            expires_at: token.expires_at,
        });
    }
    out
}
