//! The `AcrCredentialPolicy` reconciler: validates the policy, asks the token manager how its
//! credentials fare, and reports both in status ([`status`]: `Ready`, `Stalled` for an invalid
//! spec, the source kind, the credentials' expiry, `observedGeneration`; `Reconciling` and
//! `Ready=Unknown` first on a new generation) with a Warning Event when it is not Ready. Talks to the cluster: yes (`/status` and Events). Bindings that use
//! the policy are reconciled by the binding controller when the policy changes.

pub mod status;

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::AcrCredentialPolicy;
use crate::api::conditions::{status as st, types};
use crate::cloud::from_api;
use crate::cluster::backoff::retry_key;
use crate::cluster::guard::{self, guarded};
use crate::cluster::status::apply_status;
use crate::cluster::{Context, Result};
use crate::model::events;
use crate::model::token::chain_key;
use status::{CredentialHealth, policy_reconciling_status, policy_status};

/// Reconciles one policy, in a `reconcile` span that names it and its generation.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(policy = %policy.name_any(), generation = policy.metadata.generation)
)]
pub async fn reconcile(policy: Arc<AcrCredentialPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let key = retry_key(&*policy);
    let work = guarded(
        &ctx.readiness,
        ctx.config.reconcile_timeout,
        refresh(policy, &ctx),
    );
    let result = guard::leading(&ctx, "policy", work).await;
    if result.is_ok() {
        ctx.retries.succeeded(&key);
    }
    result
}

async fn refresh(policy: Arc<AcrCredentialPolicy>, ctx: &Context) -> Result<Action> {
    let health = from_api::provider_config(&policy.spec, &ctx.config.resolve.token_files)
        .map(|config| {
            let (failure, any_valid) = ctx.tokens.chain_health(&chain_key(&config));
            let expires_at = ctx.tokens.credentials_expire_at(&config);
            CredentialHealth {
                failure,
                any_valid,
                expires_at,
            }
        })
        .unwrap_or_default();
    let api: Api<AcrCredentialPolicy> = Api::all(ctx.client.clone());
    let mut previous = policy.status.clone();
    // kstatus: a new generation says Reconciling (and Ready=Unknown) before its verdict.
    if let Some(starting) = policy_reconciling_status(&policy, ctx.clock.now()) {
        ctx.budget.urgent();
        apply_status(
            &api,
            &policy.name_any(),
            &ctx.config.field_manager,
            &starting,
        )
        .await?;
        previous = Some(starting);
    }
    let status = policy_status(&policy, &health, ctx.clock.now());
    if previous.as_ref() != Some(&status) {
        ctx.budget.urgent();
        apply_status(&api, &policy.name_any(), &ctx.config.field_manager, &status).await?;
        if let Some(c) = status
            .conditions
            .iter()
            .find(|c| c.type_ == types::READY && c.status == st::FALSE)
        {
            ctx.event(
                &*policy,
                EventType::Warning,
                c.reason.as_str(),
                events::actions::VALIDATE,
                c.message.clone(),
            )
            .await;
        }
    }
    // Token outcomes do not trigger policy reconciles: look again every minute.
    Ok(Action::requeue(POLICY_REFRESH.min(ctx.config.resync)))
}

/// How often a policy's status is refreshed from the token manager.
const POLICY_REFRESH: Duration = Duration::from_secs(60);
