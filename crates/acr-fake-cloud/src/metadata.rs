//! Fake ECS instance metadata service (the node's RAM role).
//!
//! `PUT /latest/api/token` (with `X-aliyun-ecs-metadata-token-ttl-seconds` 1–21600) issues a
//! token; in hardened mode every other request must carry it as `X-aliyun-ecs-metadata-token`.
//! `GET /latest/meta-data/ram/security-credentials/` lists the role name, and
//! `…/<roleName>` returns STS credentials for it, reused until a third of their life is left.

use crate::auth::{ApiError, Incoming};
use crate::state::{Inner, State, random_token};
use acr_credential_controller::cloud::sign::iso8601;

const CREDS_PREFIX: &str = "/latest/meta-data/ram/security-credentials/";

/// Answers a metadata request with plain text.
pub fn handle(state: &State, inc: &Incoming) -> Result<String, ApiError> {
    let Ok(mut inner) = state.inner.lock() else {
        return Err(ApiError::new(500, "InternalError", "fake state poisoned"));
    };
    let Some(md) = inner.scenario.metadata.clone() else {
        return Err(ApiError::new(404, "NotFound", "Not Found"));
    };
    if inc.path == "/latest/api/token" {
        if inc.method != "PUT" {
            return Err(ApiError::new(405, "MethodNotAllowed", "Method Not Allowed"));
        }
        let ttl: i64 = inc
            .header("x-aliyun-ecs-metadata-token-ttl-seconds")
            .and_then(|v| v.parse().ok())
            .filter(|t| (1..=21600).contains(t))
            .ok_or_else(|| ApiError::new(400, "BadRequest", "Bad Request"))?;
        let token = random_token(48);
        let until = inner
            .now()
            .checked_add(jiff::SignedDuration::from_secs(ttl))
            .unwrap_or_else(|_| inner.now());
        inner.metadata_tokens.insert(token.clone(), until);
        return Ok(token);
    }
    if inc.method != "GET" {
        return Err(ApiError::new(405, "MethodNotAllowed", "Method Not Allowed"));
    }
    let token_ok = inc
        .header("x-aliyun-ecs-metadata-token")
        .and_then(|t| inner.metadata_tokens.get(t))
        .is_some_and(|until| *until > inner.now());
    if md.hardened && !token_ok {
        return Err(ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    if inc.path == CREDS_PREFIX {
        return Ok(md.role_name.clone());
    }
    match inc.path.strip_prefix(CREDS_PREFIX) {
        Some(role) if role == md.role_name => Ok(credentials(&mut inner, &md.account, role)),
        _ => Err(ApiError::new(404, "NotFound", "Not Found")),
    }
}

fn credentials(inner: &mut Inner, account: &str, role: &str) -> String {
    let now = inner.now();
    let lifetime = inner.scenario.lifetimes.metadata_seconds.unwrap_or(21600);
    let reusable = inner
        .metadata_creds
        .as_ref()
        .and_then(|id| inner.issued.get(id))
        .filter(|i| {
            let left = i.expires_at.duration_since(now).as_secs();
            left > i64::try_from(lifetime / 3).unwrap_or(i64::MAX)
        });
    let issued = match reusable {
        Some(i) => i.clone(),
        None => {
            let i = inner.issue(
                account,
                role,
                "ecs",
                jiff::SignedDuration::from_secs(i64::try_from(lifetime).unwrap_or(21600)),
            );
            inner.metadata_creds = Some(i.access_key_id.clone());
            i
        }
    };
    serde_json::json!({
        "AccessKeyId": issued.access_key_id,
        "AccessKeySecret": issued.secret,
        "Expiration": iso8601(issued.expires_at),
        "SecurityToken": issued.security_token,
        "LastUpdated": iso8601(now),
        "Code": "Success",
    })
    .to_string()
}
