//! HTTP front of the fake: parse, route, apply faults, authenticate, answer, log.
//!
//! One port serves every service. Routing follows the real protocol, not the host: `/__fake/`
//! is the control API, `/latest/` the ECS metadata service, `GET /tokens` CR 2016-06-07, and
//! `/auth` the registries' Docker token realm ([`crate::realm`]: GET with Basic is
//! `registry:Token`, the OAuth2 POST grant `registry:OAuthToken`), and
//! `/` with `Action`+`Version` (parameters or `x-acs-*` headers) an RPC API: STS for
//! 2015-04-01, CR for 2018-12-01. Errors use the real envelope
//! `{"RequestId","HostId","Code","Message","Recommend"}`.
//!
//! RPC V2 requests must carry `Format=JSON`: the real service defaults to XML, which this fake
//! does not produce; it answers `UnsupportedFormat` (a fake-only code) instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::auth::{ApiError, Incoming};
use crate::state::{FaultKind, LogEntry, OutageMode, State};
use crate::{control, cr, metadata, realm, sts};

/// Builds the router.
pub fn router(state: Arc<State>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

fn parse_incoming(method: &Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Incoming {
    let query = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let is_form = headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("application/x-www-form-urlencoded"));
    let form = if is_form {
        url::form_urlencoded::parse(&body).into_owned().collect()
    } else {
        BTreeMap::new()
    };
    Incoming {
        method: method.as_str().to_string(),
        path: uri.path().to_string(),
        query,
        form,
        headers,
        body: body.to_vec(),
    }
}

/// The product, action and API name of an RPC/ROA request.
fn identify(inc: &Incoming) -> Result<(&'static str, String), ApiError> {
    if inc.path == "/tokens" {
        if inc.method != "GET" {
            return Err(ApiError::new(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            ));
        }
        return Ok(("cr-personal", "GetAuthorizationToken".into()));
    }
    if inc.path != "/" {
        return Err(ApiError::new(
            404,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        ));
    }
    let action = inc.header("x-acs-action").or_else(|| inc.param("Action"));
    let version = inc.header("x-acs-version").or_else(|| inc.param("Version"));
    let action = action.ok_or_else(|| {
        ApiError::new(400, "MissingAction", "Action is mandatory for this action.")
    })?;
    let version = version.ok_or_else(|| {
        ApiError::new(
            400,
            "MissingVersion",
            "Version is mandatory for this action.",
        )
    })?;
    let product = match version {
        sts::VERSION => "sts",
        cr::VERSION => "cr",
        other => {
            return Err(ApiError::new(
                400,
                "InvalidVersion",
                format!("Specified parameter Version {other:?} is not valid."),
            ));
        }
    };
    Ok((product, action.to_string()))
}

fn product_name(product: &str) -> &'static str {
    match product {
        "sts" => "Sts",
        "cr" | "cr-personal" => "cr",
        _ => "Ecs",
    }
}

/// The real error envelope.
pub fn error_response(err: &ApiError, host: &str, product: &str) -> Response {
    let id = crate::state::request_id();
    let body = serde_json::json!({
        "RequestId": id,
        "HostId": host,
        "Code": err.code,
        "Message": err.message,
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={}&product={}&requestId={id}", err.code, product_name(product)),
    });
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(ms) = err.retry_after_ms
        && let Ok(v) = ms.to_string().parse()
    {
        response.headers_mut().insert("x-acs-retry-after", v);
    }
    response
}

/// The request's parameters (query and form) and `x-acs-security-token`, as `k=v&...`: what
/// the real service's string to sign shows when it echoes one back.
fn echoed(inc: &Incoming) -> String {
    let mut parts: Vec<String> = inc
        .query
        .iter()
        .chain(inc.form.iter())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if let Some(t) = inc.header("x-acs-security-token") {
        parts.push(format!("x-acs-security-token={t}"));
    }
    parts.join("&")
}

/// Applies outage and faults for `api`; returns an error to answer with, or the latency to add.
async fn apply_faults(
    state: &State,
    api: &str,
    caller: &str,
    inc: &Incoming,
) -> Result<(), ApiError> {
    let (outage, latency, failure) = {
        let Ok(mut inner) = state.inner.lock() else {
            return Err(ApiError::new(500, "InternalError", "fake state poisoned"));
        };
        let now = inner.now();
        let outage = inner.outage.clone().filter(|o| o.until > now);
        let mut latency = Duration::ZERO;
        let mut failure = None;
        for fault in inner.faults.iter_mut() {
            let api_ok = fault.api == "*" || fault.api == api;
            let caller_ok = fault.caller.as_deref().is_none_or(|c| c == caller);
            if !api_ok || !caller_ok || fault.times == Some(0) {
                continue;
            }
            match &fault.kind {
                FaultKind::Latency { ms } => latency += Duration::from_millis(*ms),
                FaultKind::Error {
                    status,
                    code,
                    message,
                } if failure.is_none() => {
                    failure = Some(ApiError::new(
                        *status,
                        code,
                        message.as_ref().map_or_else(
                            || format!("Injected fault {code}."),
                            |m| m.replace("{request}", &echoed(inc)),
                        ),
                    ));
                }
                FaultKind::Throttle { retry_after_ms } if failure.is_none() => {
                    let mut e = ApiError::new(
                        400,
                        "Throttling.User",
                        "Request was denied due to user flow control.",
                    );
                    e.retry_after_ms = Some(*retry_after_ms);
                    failure = Some(e);
                }
                _ => continue,
            }
            if let Some(n) = fault.times.as_mut() {
                *n -= 1;
            }
        }
        inner.faults.retain(|f| f.times != Some(0));
        (
            outage.map(|o| (o.mode, o.until.duration_since(now))),
            latency,
            failure,
        )
    };
    if let Some((mode, left)) = outage {
        if mode == OutageMode::Hang {
            tokio::time::sleep(left.unsigned_abs()).await;
        }
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        ));
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    failure.map_or(Ok(()), Err)
}

fn record(
    state: &State,
    api: &str,
    caller: &str,
    identity: Option<String>,
    status: u16,
    code: Option<String>,
) {
    if let Ok(mut inner) = state.inner.lock() {
        let time = inner.now();
        inner.log.push(LogEntry {
            time,
            api: api.to_string(),
            caller: caller.to_string(),
            identity,
            status,
            code,
        });
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inc = parse_incoming(&method, &uri, &headers, body);
    let host = inc.header("host").unwrap_or("localhost").to_string();
    if inc.path.starts_with("/__fake/") {
        return control::handle(&state, &inc).await;
    }
    if inc.path.starts_with("/latest/") {
        let result = match apply_faults(&state, "ecs:metadata", "metadata", &inc).await {
            Ok(()) => metadata::handle(&state, &inc),
            Err(e) => Err(e),
        };
        let (status, code) = match &result {
            Ok(_) => (200, None),
            Err(e) => (e.status, Some(e.code.clone())),
        };
        record(&state, "ecs:metadata", "metadata", None, status, code);
        return match result {
            Ok(text) => (StatusCode::OK, text).into_response(),
            Err(e) => (
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::NOT_FOUND),
                e.message,
            )
                .into_response(),
        };
    }
    if inc.path == "/auth" {
        return token_realm(&state, &inc, uri.query().unwrap_or_default()).await;
    }
    let (product, action) = match identify(&inc) {
        Ok(found) => found,
        Err(e) => return error_response(&e, &host, ""),
    };
    let api = format!("{product}:{action}");
    let caller = inc.claimed_key().unwrap_or_else(|| "anonymous".into());
    let result = match apply_faults(&state, &api, &caller, &inc).await {
        Err(e) => Err((e, None)),
        Ok(()) => dispatch(&state, product, &action, &inc),
    };
    match result {
        Ok((body, identity)) => {
            record(&state, &api, &caller, identity, 200, None);
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err((e, identity)) => {
            record(
                &state,
                &api,
                &caller,
                identity,
                e.status,
                Some(e.code.clone()),
            );
            error_response(&e, &host, product)
        }
    }
}

/// A Docker registry error body with `status`.
fn registry_error(status: u16, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": message, "detail": null}]});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED);
    (status, axum::Json(body)).into_response()
}

/// The token realm: `GET /auth?service=&scope=` with Basic credentials, or the OAuth2
/// password grant `POST /auth` (form `grant_type=password&username&password&service&scope`).
async fn token_realm(state: &State, inc: &Incoming, query: &str) -> Response {
    let post = inc.method == "POST";
    let api = if post {
        "registry:OAuthToken"
    } else {
        "registry:Token"
    };
    let form = |k: &str| inc.form.get(k).cloned();
    let request = if post {
        realm::TokenRequest {
            username: form("username"),
            password: form("password"),
            service: form("service").unwrap_or_default(),
            scopes: form("scope").into_iter().collect(),
        }
    } else {
        let (username, password) = realm::basic_credentials(inc.header("authorization"));
        // Repeated `scope` parameters are all kept.
        let query: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        realm::TokenRequest {
            username,
            password,
            service: query
                .iter()
                .find(|(k, _)| k == "service")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            scopes: query
                .into_iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v)
                .collect(),
        }
    };
    let caller = request
        .username
        .clone()
        .unwrap_or_else(|| "anonymous".into());
    if let Err(e) = apply_faults(state, api, &caller, inc).await {
        record(state, api, &caller, None, e.status, Some(e.code.clone()));
        return registry_error(e.status, &e.message);
    }
    let result = if post && form("grant_type").as_deref() != Some("password") {
        Err(realm::Refusal::Grant)
    } else {
        match state.inner.lock() {
            Ok(inner) => realm::token(&inner, &request),
            Err(_) => Err(realm::Refusal::Signing("fake state poisoned".into())),
        }
    };
    match result {
        Ok((body, account)) => {
            record(state, api, &caller, Some(account), 200, None);
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(e) => {
            record(state, api, &caller, None, e.status(), Some(e.code().into()));
            registry_error(e.status(), &e.to_string())
        }
    }
}

type Outcome = Result<(serde_json::Value, Option<String>), (ApiError, Option<String>)>;

fn dispatch(state: &State, product: &str, action: &str, inc: &Incoming) -> Outcome {
    let Ok(mut inner) = state.inner.lock() else {
        return Err((
            ApiError::new(500, "InternalError", "fake state poisoned"),
            None,
        ));
    };
    let is_v3 = inc
        .header("authorization")
        .is_some_and(|a| a.starts_with("ACS3-"));
    if product != "cr-personal" && !is_v3 {
        match inc.param("Format").map(str::to_ascii_uppercase).as_deref() {
            Some("JSON") => {}
            _ => {
                return Err((
                    ApiError::new(
                        400,
                        "UnsupportedFormat",
                        "This fake cloud answers JSON only: send Format=JSON.",
                    ),
                    None,
                ));
            }
        }
    }
    match (product, action) {
        ("sts", "AssumeRole") => sts::assume_role(&mut inner, inc),
        ("sts", "AssumeRoleWithOIDC") => sts::assume_role_with_oidc(&mut inner, inc),
        ("cr", "GetAuthorizationToken") => cr::get_authorization_token(&mut inner, inc),
        ("cr", "ListInstanceEndpoint") => cr::list_instance_endpoint(&mut inner, inc),
        ("cr-personal", "GetAuthorizationToken") => cr::personal_token(&mut inner, inc),
        _ => Err((
            ApiError::new(
                404,
                "InvalidAction.NotFound",
                format!("Specified api {action} is not found, please check your url and method."),
            ),
            None,
        )),
    }
}
