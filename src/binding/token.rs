//! Stage 2, token. Talks to the cloud: yes, through the token manager (only when a token is
//! due). Talks to the cluster: one Event, saying what the token manager did.
//!
//! The binding's token is the held one, or a fresh one when due; after a restart, the one its
//! pull Secrets hold is adopted first when the binding's status proves the controller issued it
//! ([`crate::model::adopt`]). Tokens no live binding uses are dropped.

use crate::api::AcrRegistryBinding;
use crate::cluster::Context;
use crate::model::adopt::token_in_secrets;
use crate::model::events;
use crate::model::resolve::Resolved;
use crate::model::token::{TokenOutcome, TokenRequest};

/// The token of `binding` (resolved as `resolved`), with an Event when something happened;
/// first forgets the tokens no binding of `live` uses.
pub async fn token(
    ctx: &Context,
    binding: &AcrRegistryBinding,
    resolved: &Resolved,
    live: &[Resolved],
) -> TokenOutcome {
    ctx.tokens.retain(&live_requests(live));
    adopt_previous_token(ctx, resolved).await;
    let outcome = ctx.tokens.get(&resolved.request).await;
    let registry = resolved.request.registry.key();
    if let Some(e) = events::token_event(&registry, &outcome, ctx.clock.now()) {
        ctx.event(binding, e.type_, e.reason, e.action, e.note)
            .await;
    }
    outcome
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
