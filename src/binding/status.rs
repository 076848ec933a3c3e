//! Stage 6, status. Talks to the cluster: yes (the binding's `/status`, and Warning Events).
//!
//! Every status a binding reconcile writes is built by [`crate::model::status`] and sent here,
//! by [`send`], only when it differs from the current one:
//! - [`starting`], alongside the token stage and before any Secret is written: a new
//!   generation says `Reconciling=True` and `Ready=Unknown` at once (kstatus, Flux), without
//!   waiting for the cloud, so the old generation's `Ready=True` is not read as the new spec's;
//! - [`blocked`], when resolving stops the binding (invalid spec, missing or invalid policy),
//!   with a Warning Event naming the blocker;
//! - [`report`], at the end: the status the observation calls for, with a Warning Event when
//!   writing Secrets or ServiceAccounts fails in a new way.

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::EventType;

use crate::api::{AcrRegistryBinding, AcrRegistryBindingStatus};
use crate::cluster::status::apply_status;
use crate::cluster::{Context, Result};
use crate::model::events::actions;
use crate::model::status::{BindingObservation, Blocker, binding_status, reconciling_status};

/// kstatus: says `Reconciling` (and `Ready=Unknown`) at once for a generation the status does
/// not describe yet.
pub async fn starting(ctx: &Context, binding: &AcrRegistryBinding) -> Result<()> {
    let generation = binding.metadata.generation;
    match reconciling_status(binding.status.as_ref(), generation, ctx.clock.now()) {
        Some(status) => send(ctx, binding, &status).await,
        None => Ok(()),
    }
}

/// The binding cannot be converged: say so once, in status and an Event.
pub async fn blocked(ctx: &Context, binding: &AcrRegistryBinding, blocker: Blocker) -> Result<()> {
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
            actions::VALIDATE,
            blocker.message.clone(),
        )
        .await;
        send(ctx, binding, &status).await?;
    }
    Ok(())
}

/// Writes the status the observation calls for, if it differs from the current one.
pub async fn report(
    ctx: &Context,
    binding: &AcrRegistryBinding,
    obs: &BindingObservation,
) -> Result<()> {
    let status = binding_status(binding.status.as_ref(), obs, ctx.clock.now());
    if binding.status.as_ref() != Some(&status) {
        // Token failures have Events of their own (`super::token`).
        if obs.token_failure.is_none() {
            warn_new_failure(ctx, binding, &status).await;
        }
        send(ctx, binding, &status).await?;
    }
    Ok(())
}

/// A Warning Event when writing Secrets or ServiceAccounts fails in a new way (e.g. Forbidden
/// after an RBAC change), once per distinct failure, as `status.lastFailure` records it.
async fn warn_new_failure(
    ctx: &Context,
    binding: &AcrRegistryBinding,
    status: &AcrRegistryBindingStatus,
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
        actions::SYNC,
        new.message.clone(),
    )
    .await;
}

/// Server-side-applies `status` on the binding's `/status` under our field manager.
async fn send(
    ctx: &Context,
    binding: &AcrRegistryBinding,
    status: &AcrRegistryBindingStatus,
) -> Result<()> {
    let api: Api<AcrRegistryBinding> = Api::all(ctx.client.clone());
    ctx.budget.urgent();
    apply_status(&api, &binding.name_any(), &ctx.config.field_manager, status).await
}
