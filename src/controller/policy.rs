//! The `AcrCredentialPolicy` reconciler: validates the policy and reports it in status
//! (`Ready`, the source kind, `observedGeneration`). Bindings that use the policy are
//! reconciled by the binding controller when the policy changes.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::context::Context;
use super::error::{Error, Result};
use super::status::{apply_status, time};
use crate::api::conditions::{NewCondition, reasons, set_condition, status as st, types};
use crate::api::{AcrCredentialPolicy, AcrCredentialPolicyStatus, validate_policy};

/// The status a policy should have.
pub fn policy_status(
    policy: &AcrCredentialPolicy,
    now: jiff::Timestamp,
) -> AcrCredentialPolicyStatus {
    let mut status = policy.status.clone().unwrap_or_default();
    status.observed_generation = policy.metadata.generation;
    status.source = policy.spec.source.kind().map(|k| k.as_str().to_owned());
    let (ok, reason, message) = match validate_policy(&policy.spec) {
        Ok(()) => (
            true,
            reasons::RECONCILED,
            "the policy is valid; bindings using it report their tokens".to_owned(),
        ),
        Err(errors) => (
            false,
            reasons::INVALID_SPEC,
            format!(
                "invalid spec: {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
    };
    set_condition(
        &mut status.conditions,
        NewCondition {
            type_: types::READY,
            status: if ok { st::TRUE } else { st::FALSE },
            reason,
            message,
            observed_generation: policy.metadata.generation,
        },
        time(now),
    );
    status
}

/// Reconciles one policy.
pub async fn reconcile(policy: Arc<AcrCredentialPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let status = policy_status(&policy, ctx.clock.now());
    if policy.status.as_ref() != Some(&status) {
        let api: Api<AcrCredentialPolicy> = Api::all(ctx.client.clone());
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
                "Validate",
                c.message.clone(),
            )
            .await;
        }
    }
    Ok(Action::requeue(ctx.config.resync))
}

/// What to do after a failed reconcile.
pub fn error_policy(policy: Arc<AcrCredentialPolicy>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(policy = %policy.name_any(), reason = error.reason(), error = %error, "policy reconcile failed");
    Action::requeue(Duration::from_secs(10))
}
