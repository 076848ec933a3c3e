//! Stage 1, resolve. Talks to the cluster: no (reads the policy and binding caches).
//!
//! The binding against its policy ([`crate::model::resolve`]): a token request and a selection,
//! or the [`Blocker`] that stops it. Every live binding is resolved too, since several bindings
//! share one Secret per namespace and every one of them contributes to it.

use crate::api::AcrRegistryBinding;
use crate::cluster::Context;
use crate::model::resolve::{Resolved, resolve};
use crate::model::status::Blocker;

/// This binding, resolved against the policy cache.
pub fn resolve_binding(ctx: &Context, binding: &AcrRegistryBinding) -> Result<Resolved, Blocker> {
    resolve(binding, &ctx.stores.policies, &ctx.config.resolve)
}

/// Live bindings (not being deleted) that resolve, in name order.
pub fn live_bindings(ctx: &Context) -> Vec<Resolved> {
    let mut out: Vec<Resolved> = ctx
        .stores
        .bindings
        .state()
        .iter()
        .filter(|b| b.metadata.deletion_timestamp.is_none())
        .filter_map(|b| resolve_binding(ctx, b).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
