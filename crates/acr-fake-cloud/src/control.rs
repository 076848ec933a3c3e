//! Run-time control over HTTP, under the reserved prefix `/__fake/`.
//!
//! | request | effect |
//! |---|---|
//! | `GET /__fake/health` | `ok` |
//! | `POST /__fake/faults` `{api, caller?, times?, kind: error\|throttle\|latency, …}` | add a fault |
//! | `DELETE /__fake/faults` | clear faults and outage |
//! | `POST /__fake/outage` `{seconds, mode: unavailable\|hang}` | outage window from now |
//! | `GET /__fake/log` | `{entries: [...], counts: [{api, caller, count}]}` |
//! | `DELETE /__fake/log` | clear the log |
//! | `POST /__fake/clock` `{offsetSeconds}` | shift the fake's clock |
//! | `POST /__fake/credentials` `{account, role, seconds, session?}` | issue STS credentials (e.g. for a managedRole token file) |
//! | `POST /__fake/access-keys` `{id, enabled}` | enable or disable an AccessKey |
//! | `POST /__fake/lifetimes` `{stsSeconds?, registrySeconds?, metadataSeconds?}` | change lifetimes |
//! | `POST /__fake/marker` `{text}` | put `text` inside every secret issued from now on |
//! | `GET /__fake/realm/certificate` | the token realm's signing certificate (PEM), for a registry's `rootcertbundle` |
//!
//! The same operations are methods of [`crate::FakeHandle`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::FakeHandle;
use crate::auth::Incoming;
use crate::scenario::Lifetimes;
use crate::state::{Fault, OutageMode, State};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutageRequest {
    seconds: u64,
    #[serde(default)]
    mode: OutageMode,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClockRequest {
    offset_seconds: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialsRequest {
    account: String,
    role: String,
    seconds: u64,
    #[serde(default)]
    session: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkerRequest {
    text: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccessKeyRequest {
    id: String,
    enabled: bool,
}

fn bad(message: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({"error": message.to_string()})),
    )
        .into_response()
}

fn parse<T: for<'de> Deserialize<'de>>(inc: &Incoming) -> Result<T, String> {
    serde_json::from_slice(&inc.body).map_err(|e| e.to_string())
}

fn ok() -> Response {
    axum::Json(serde_json::json!({"ok": true})).into_response()
}

/// Handles a control request.
pub async fn handle(state: &std::sync::Arc<State>, inc: &Incoming) -> Response {
    let handle = FakeHandle {
        state: state.clone(),
    };
    let route = inc.path.trim_start_matches("/__fake");
    let result: Result<Response, String> = match (inc.method.as_str(), route) {
        ("GET", "/health") => Ok("ok".into_response()),
        ("GET", "/realm/certificate") => crate::realm::certificate_pem()
            .map(IntoResponse::into_response)
            .map_err(|e| e.to_string()),
        ("POST", "/faults") => parse::<Fault>(inc).map(|f| {
            handle.add_fault(f);
            ok()
        }),
        ("DELETE", "/faults") => {
            handle.clear_faults();
            Ok(ok())
        }
        ("POST", "/outage") => parse::<OutageRequest>(inc).map(|o| {
            handle.outage(std::time::Duration::from_secs(o.seconds), o.mode);
            ok()
        }),
        ("GET", "/log") => {
            let counts: Vec<serde_json::Value> = handle
                .counts()
                .into_iter()
                .map(|((api, caller), count)| serde_json::json!({"api": api, "caller": caller, "count": count}))
                .collect();
            Ok(
                axum::Json(serde_json::json!({"entries": handle.log(), "counts": counts}))
                    .into_response(),
            )
        }
        ("DELETE", "/log") => {
            handle.clear_log();
            Ok(ok())
        }
        ("POST", "/clock") => parse::<ClockRequest>(inc).map(|c| {
            handle.set_clock_offset(jiff::SignedDuration::from_secs(c.offset_seconds));
            ok()
        }),
        ("POST", "/credentials") => parse::<CredentialsRequest>(inc).and_then(|c| {
            let session = c.session.unwrap_or_else(|| "fake-control".into());
            handle
                .issue_role_credentials(
                    &c.account,
                    &c.role,
                    &session,
                    std::time::Duration::from_secs(c.seconds),
                )
                .map(|i| {
                    axum::Json(serde_json::json!({
                        "AccessKeyId": i.access_key_id,
                        "AccessKeySecret": i.secret,
                        "SecurityToken": i.security_token,
                        "Expiration": acr_credential_controller::cloud::sign::iso8601(i.expires_at),
                    }))
                    .into_response()
                })
        }),
        ("POST", "/access-keys") => parse::<AccessKeyRequest>(inc).and_then(|a| {
            handle
                .set_access_key_enabled(&a.id, a.enabled)
                .map(|()| ok())
        }),
        ("POST", "/marker") => parse::<MarkerRequest>(inc).map(|m| {
            handle.set_marker(&m.text);
            ok()
        }),
        ("POST", "/lifetimes") => parse::<Lifetimes>(inc).map(|l| {
            handle.set_lifetimes(l);
            ok()
        }),
        _ => return (StatusCode::NOT_FOUND, "unknown control endpoint").into_response(),
    };
    result.unwrap_or_else(bad)
}
