//! Stage 2, token. Talks to the cloud: yes, through the token manager (only when a token is
//! due, or a rotation is requested). Talks to the cluster: one Event, saying what the token
//! manager did ([`announce`], sent while the namespaces converge); and, only when the caches
//! say a rotation request is pending, a fresh read of the binding and its policy.
//!
//! The binding's token is the held one, or a fresh one when due; after a restart, the one its
//! pull Secrets hold is adopted first when the binding's status proves the controller issued it
//! ([`crate::model::adopt`]). Tokens no live binding uses are dropped.
//!
//! Rotation on demand ([`crate::model::rotation`]): when the binding's or its policy's
//! `acrcredentials.io/rotation-requested-at` differs from the value `status.rotation` records
//! as handled, the token manager obtains a fresh token ([`TokenManager::rotate`], single-flight
//! per token key, one cloud call per request and key), the converge stage writes it into every
//! pull Secret of the binding (they differ from it now), and the status stage records the
//! request as handled in the same write as the new expiry. Before rotating, the binding and the
//! policy are read from the API server: the cache may not show yet the status that recorded the
//! request (this replica's write of a moment ago, or a previous leader's), and a request is
//! answered once. Only the leader reconciles, so a standby rotates nothing; a leader that
//! restarts between the new token and the status write rotates again (at least once).
//!
//! [`TokenManager::rotate`]: crate::cluster::tokens::TokenManager::rotate

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use crate::api::{
    AcrCredentialPolicy, AcrRegistryBinding, AcrRegistryBindingStatus, RotationStatus,
};
use crate::cluster::{Context, Result};
use crate::model::adopt::token_in_secrets;
use crate::model::events::{self, Note};
use crate::model::resolve::Resolved;
use crate::model::rotation::{Decision, Requests, decide, handled};
use crate::model::token::{TokenOutcome, TokenRequest};

/// What the token stage hands on.
#[derive(Debug)]
pub struct Token {
    /// The binding's token (or why there is none).
    pub outcome: TokenOutcome,
    /// The binding's `status.rotation` after this pass.
    pub rotation: Option<RotationStatus>,
    /// A rotation was asked for and answered in this pass: its rewrites are not paced.
    pub rotated: bool,
    /// The Event saying what the token manager did, if anything: for [`announce`].
    pub event: Option<Note>,
}

/// The token of `binding` (resolved as `resolved`), rotated first when a rotation request is
/// pending, with the Event to publish when something happened; first forgets the tokens no
/// binding of `live` uses.
pub async fn token(
    ctx: &Context,
    binding: &AcrRegistryBinding,
    resolved: &Resolved,
    live: &[Resolved],
) -> Result<Token> {
    ctx.tokens.retain(&live_requests(live));
    adopt_previous_token(ctx, resolved).await;
    let registry = resolved.request.registry.key();
    let (requests, status) = rotation_requests(ctx, binding).await?;
    let previous = status.as_ref().and_then(|s| s.rotation.as_ref());
    let decision = decide(&requests, status.as_ref());
    let rotated = matches!(decision, Decision::Rotate(_));
    let (outcome, rotation, event) = match decision {
        Decision::Rotate(pending) => {
            let ids = requests.ids(&pending);
            match ctx.tokens.rotate(&resolved.request, &ids).await {
                (outcome, true) if outcome.token.is_some() => {
                    let token = outcome.token.as_ref();
                    let described = requests.describe(&pending);
                    let event = token.map(|t| events::rotated_event(&registry, &described, t));
                    tracing::info!(binding = %resolved.name, requests = %described, "registry token rotated on request");
                    let rotation = handled(&requests, previous, token.map(|t| t.issued_at));
                    (outcome, rotation, event)
                }
                (outcome, _) => {
                    let event = events::token_event(&registry, &outcome, ctx.clock.now());
                    (outcome, previous.cloned(), event)
                }
            }
        }
        decision => {
            let outcome = ctx.tokens.get(&resolved.request).await;
            let rotation = match decision == Decision::Record && outcome.token.is_some() {
                true => handled(&requests, previous, None),
                false => previous.cloned(),
            };
            let event = events::token_event(&registry, &outcome, ctx.clock.now());
            (outcome, rotation, event)
        }
    };
    Ok(Token {
        outcome,
        rotation,
        rotated,
        event,
    })
}

/// Publishes the token stage's Event about `binding`, if it has one.
pub async fn announce(ctx: &Context, binding: &AcrRegistryBinding, event: Option<Note>) {
    if let Some(Note {
        type_,
        reason,
        action,
        note,
    }) = event
    {
        ctx.event(binding, type_, reason, action, note).await;
    }
}

/// The rotation requests of `binding` and of its policy, and the status they are judged
/// against: the cached copies, unless those say a request is pending; then the binding and the
/// policy as the API server has them now, so a request the cache does not show as handled yet
/// is not answered twice.
async fn rotation_requests(
    ctx: &Context,
    binding: &AcrRegistryBinding,
) -> Result<(Requests, Option<AcrRegistryBindingStatus>)> {
    let policy_name = binding.spec.policy_name();
    let policy = ctx.stores.policies.get(&ObjectRef::new(policy_name));
    let cached = Requests::of(binding, policy.as_deref());
    if !matches!(
        decide(&cached, binding.status.as_ref()),
        Decision::Rotate(_)
    ) {
        return Ok((cached, binding.status.clone()));
    }
    let bindings: Api<AcrRegistryBinding> = Api::all(ctx.client.clone());
    let Some(fresh) = bindings.get_opt(&binding.name_any()).await? else {
        // Deleted meanwhile: nothing to rotate.
        return Ok((Requests::default(), binding.status.clone()));
    };
    let policies: Api<AcrCredentialPolicy> = Api::all(ctx.client.clone());
    let policy = policies.get_opt(policy_name).await?;
    Ok((Requests::of(&fresh, policy.as_ref()), fresh.status))
}

/// The token requests of every live binding: what the token manager must keep.
pub fn live_requests(live: &[Resolved]) -> Vec<TokenRequest> {
    live.iter().map(|r| r.request.clone()).collect()
}

/// After a restart: take over the token a binding's Secrets hold when its status proves the
/// controller issued it for this binding (see [`token_in_secrets`]), instead of asking the
/// cloud again and rewriting every Secret. Otherwise nothing is adopted and the cloud is asked.
/// A no-op once a token is held.
pub async fn adopt_previous_token(ctx: &Context, resolved: &Resolved) {
    if ctx.tokens.holds(&resolved.request.key()).await {
        return;
    }
    let domains = resolved
        .domains
        .clone()
        .unwrap_or_else(|| resolved.previous_domains.clone());
    let Some(token) = token_in_secrets(&ctx.stores.secrets, &ctx.stores.namespaces, resolved)
    else {
        return;
    };
    let Some(issued) = resolved.previous_token.as_ref().and_then(|t| t.issued_at) else {
        return;
    };
    if ctx
        .tokens
        .adopt(&resolved.request, token, issued, Some(domains))
        .await
    {
        tracing::info!(binding = %resolved.name, "adopted the binding's recorded token from its pull Secrets");
    }
}
