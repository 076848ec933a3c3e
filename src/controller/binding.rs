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
use super::finalizer;
use super::guard::{self, guarded};
use super::resolve::{Resolved, resolve};
use super::selection::{select_namespaces, service_account_selected};
use super::status::{BindingObservation, apply_status, binding_status};
use super::sync::{
    NamespaceOutcome, SecretState, live_bindings, namespaces_owned_by,
    service_accounts_by_namespace, sync_namespace,
};
use super::tokens::Activity;
use crate::api::conditions::reasons;
use crate::api::{AcrRegistryBinding, NamespaceFailure};

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

async fn apply(binding: Arc<AcrRegistryBinding>, ctx: Arc<Context>) -> Result<Action> {
    let name = binding.name_any();
    let now = ctx.clock.now();
    let api: Api<AcrRegistryBinding> = Api::all(ctx.client.clone());
    let registry = binding.spec.registry.display();
    let resolved = match resolve(&binding, &ctx.stores.policies, &ctx.config.default_region) {
        Ok(r) => r,
        Err(blocker) => {
            let obs = BindingObservation {
                generation: binding.metadata.generation,
                registry,
                blocker: Some(blocker.clone()),
                ..Default::default()
            };
            let status = binding_status(binding.status.as_ref(), &obs, now);
            if binding.status.as_ref() != Some(&status) {
                ctx.event(
                    &*binding,
                    EventType::Warning,
                    blocker.reason,
                    "Validate",
                    blocker.message.clone(),
                )
                .await;
                apply_status(&api, &name, &ctx.config.field_manager, &status).await?;
            }
            // Policy and spec changes trigger a reconcile; look again now and then anyway.
            return Ok(Action::requeue(ctx.config.resync));
        }
    };

    let live = live_bindings(&ctx);
    ctx.tokens.retain(&live_requests(&live));
    super::sync::adopt_previous_token(&ctx, &resolved).await;
    let outcome = ctx.tokens.get(&resolved.request).await;
    emit_token_event(&ctx, &binding, &resolved, &outcome).await;

    let selection = select_namespaces(
        &resolved.namespaces,
        resolved.allowed.as_ref(),
        ctx.stores.namespaces.state().iter().map(|n| &**n),
    );
    let mut targets = selection.selected.clone();
    targets.extend(namespaces_owned_by(&ctx, &name));
    let results = converge_all(&ctx, &live, targets).await;

    // This binding's view of the namespaces.
    let mut synced = 0usize;
    let mut failures: Vec<NamespaceFailure> = selection
        .not_allowed
        .iter()
        .map(|ns| NamespaceFailure {
            name: ns.clone(),
            reason: reasons::NAMESPACE_NOT_ALLOWED.into(),
            message: format!(
                "selected, but policy {} does not allow it (allowedNamespaces)",
                binding.spec.policy_name()
            ),
        })
        .collect();
    let mut sa_selected = 0usize;
    let mut sa_bound = 0usize;
    let mut sa_errors = Vec::new();
    let mut retry_soon = false;
    for (ns, result) in &results {
        if !selection.selected.contains(ns) {
            if result.is_err() {
                retry_soon = true;
            }
            continue;
        }
        match result {
            Ok(o) => {
                match o.secret {
                    SecretState::Current if o.contributors.contains(&name) => synced += 1,
                    SecretState::OwnedByOthers => failures.push(NamespaceFailure {
                        name: ns.clone(),
                        reason: reasons::SECRET_OWNED_BY_OTHERS.into(),
                        message: format!(
                            "a Secret named {} exists and is not managed by this controller; it is left untouched",
                            ctx.config.secret_name
                        ),
                    }),
                    _ => {}
                }
                for (sa, labels, bound) in &o.service_accounts {
                    if service_account_selected(&resolved.service_accounts, sa, labels) {
                        sa_selected += 1;
                        if *bound && o.secret != SecretState::OwnedByOthers {
                            sa_bound += 1;
                        }
                    }
                }
                sa_errors.extend(o.service_account_errors.iter().cloned());
                retry_soon |= !o.service_account_errors.is_empty();
            }
            Err(e) => {
                retry_soon = true;
                failures.push(NamespaceFailure {
                    name: ns.clone(),
                    reason: reasons::SECRET_SYNC_FAILED.into(),
                    message: e.to_string(),
                });
            }
        }
    }

    let token = outcome.token.clone().map(|mut t| {
        if let Some(d) = &resolved.domains {
            t.domains = d.clone();
        }
        t
    });
    let obs = BindingObservation {
        generation: binding.metadata.generation,
        registry,
        blocker: None,
        domains: token
            .as_ref()
            .map(|t| t.domains.clone())
            .unwrap_or_default(),
        token,
        token_failure: outcome.failure.clone(),
        namespaces_selected: selection.selected.len(),
        namespaces_synced: synced,
        namespace_failures: failures,
        service_accounts_selected: sa_selected,
        service_accounts_bound: sa_bound,
        service_account_failures: sa_errors,
    };
    let status = binding_status(binding.status.as_ref(), &obs, now);
    if binding.status.as_ref() != Some(&status) {
        apply_status(&api, &name, &ctx.config.field_manager, &status).await?;
    }

    let until_check = Duration::try_from(outcome.next_check.duration_since(ctx.clock.now()))
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_secs(1));
    let mut wait = until_check.min(ctx.config.resync);
    if retry_soon {
        wait = wait.min(Duration::from_secs(10));
    }
    Ok(Action::requeue(wait))
}

/// The token requests of every live binding: what the token manager must keep.
fn live_requests(live: &[Resolved]) -> Vec<super::tokens::TokenRequest> {
    live.iter().map(|r| r.request.clone()).collect()
}

async fn emit_token_event(
    ctx: &Context,
    binding: &AcrRegistryBinding,
    resolved: &Resolved,
    outcome: &super::tokens::TokenOutcome,
) {
    let registry = resolved.request.registry.key();
    let times = outcome
        .token
        .as_ref()
        .map(|t| {
            format!(
                "valid until {}, renewal at {}",
                super::status::time(t.expires_at).0,
                super::status::time(t.renew_at).0
            )
        })
        .unwrap_or_default();
    match outcome.activity {
        Activity::None => {}
        Activity::Issued => {
            ctx.event(
                binding,
                EventType::Normal,
                "TokenIssued",
                "IssueToken",
                format!("registry token for {registry} issued, {times}"),
            )
            .await;
        }
        Activity::Renewed => {
            ctx.event(
                binding,
                EventType::Normal,
                "TokenRenewed",
                "RenewToken",
                format!("registry token for {registry} renewed, {times}"),
            )
            .await;
        }
        Activity::Recovered => {
            ctx.event(
                binding,
                EventType::Normal,
                "TokenRecovered",
                "RenewToken",
                format!("registry token for {registry} obtained again after failures, {times}"),
            )
            .await;
        }
        Activity::Failed => {
            let failure = outcome
                .failure
                .as_ref()
                .map(|f| f.message.clone())
                .unwrap_or_default();
            let still = outcome
                .token
                .as_ref()
                .filter(|t| t.valid_at(ctx.clock.now()))
                .map(|t| {
                    format!(
                        "Degraded: the current token stays valid until {}. ",
                        super::status::time(t.expires_at).0
                    )
                })
                .unwrap_or_default();
            let reason = outcome
                .failure
                .as_ref()
                .map(|f| f.reason)
                .unwrap_or("TokenRequestFailed");
            ctx.event(
                binding,
                EventType::Warning,
                reason,
                "RenewToken",
                format!(
                    "{still}registry token request for {registry} failed ({} in a row): {failure}",
                    outcome.failures
                ),
            )
            .await;
        }
    }
}

async fn cleanup(binding: Arc<AcrRegistryBinding>, ctx: &Context) -> Result<()> {
    let name = binding.name_any();
    let mut targets = namespaces_owned_by(ctx, &name);
    if let Ok(resolved) = resolve(&binding, &ctx.stores.policies, &ctx.config.default_region) {
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
