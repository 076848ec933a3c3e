//! Fake Container Registry: 2018-12-01 `GetAuthorizationToken` / `ListInstanceEndpoint` and
//! 2016-06-07 `GET /tokens`.
//!
//! Instances are visible only to callers of the account that owns them (others get
//! `INSTANCE_NOT_EXIST`, a code not confirmed against the real service); RAM permission
//! failures answer 403 `NoPrivilege` as the CR docs show. Registry tokens live
//! `lifetimes.registrySeconds` (default 1 h) but never beyond the STS credentials used.

use base64::Engine as _;

use crate::auth::{ApiError, Caller, Incoming, authenticate};
use crate::state::Inner;

/// CR Enterprise API version.
pub const VERSION: &str = "2018-12-01";

type Outcome = Result<(serde_json::Value, Option<String>), (ApiError, Option<String>)>;

fn signed_caller(inner: &mut Inner, inc: &Incoming) -> Result<Caller, (ApiError, Option<String>)> {
    authenticate(inner, inc, false)
        .map_err(|e| (e, None))?
        .ok_or_else(|| {
            (
                ApiError::new(
                    400,
                    "MissingAccessKeyId",
                    "AccessKeyId is mandatory for this action.",
                ),
                None,
            )
        })
}

fn no_privilege() -> ApiError {
    ApiError::new(403, "NoPrivilege", "Access denied for this user.")
}

fn instance<'a>(
    inner: &'a Inner,
    caller: &Caller,
    inc: &Incoming,
) -> Result<&'a crate::scenario::Instance, ApiError> {
    let id = inc
        .param("InstanceId")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                400,
                "MissingInstanceId",
                "InstanceId is mandatory for this action.",
            )
        })?;
    inner
        .account(caller.principal.account())
        .and_then(|a| a.instances.iter().find(|i| i.id == id))
        .ok_or_else(|| {
            ApiError::new(
                404,
                "INSTANCE_NOT_EXIST",
                format!("The instance {id} does not exist."),
            )
        })
}

/// Issues a registry password and returns (password, expiry).
fn issue_token(inner: &mut Inner, caller: &Caller, instance_id: &str) -> (String, jiff::Timestamp) {
    let now = inner.now();
    let seconds = inner.scenario.lifetimes.registry_seconds.unwrap_or(3600);
    let mut expires = now
        .checked_add(jiff::SignedDuration::from_secs(
            i64::try_from(seconds).unwrap_or(3600),
        ))
        .unwrap_or(now);
    if let Some(sts) = caller.sts_expires {
        expires = expires.min(sts);
    }
    let claims = serde_json::json!({
        "instanceId": instance_id,
        "time": now.as_millisecond().to_string(),
        "type": "sub",
        "userId": caller.principal.account(),
    });
    let head = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let password = format!(
        "{head}:{}{}",
        inner.marker,
        hex::encode(rand::random::<[u8; 20]>())
    );
    let account = caller.principal.account().to_owned();
    let service =
        crate::realm::service_of((instance_id != "personal").then_some(instance_id), &account);
    inner.registry_tokens.insert(
        password.clone(),
        crate::realm::RegistryCredential {
            expires,
            service,
            account,
        },
    );
    (password, expires)
}

/// `GetAuthorizationToken` (Enterprise).
pub fn get_authorization_token(inner: &mut Inner, inc: &Incoming) -> Outcome {
    let caller = signed_caller(inner, inc)?;
    let identity = Some(caller.principal.arn());
    let fail = |e: ApiError| (e, identity.clone());
    let id = instance(inner, &caller, inc).map_err(fail)?.id.clone();
    if !inner.allowed(&caller.principal, "cr:GetAuthorizationToken", &id) {
        return Err(fail(no_privilege()));
    }
    let (password, expires) = issue_token(inner, &caller, &id);
    Ok((
        serde_json::json!({
            "RequestId": crate::state::request_id(),
            "ExpireTime": expires.as_millisecond(),
            "Code": "success",
            "IsSuccess": true,
            "TempUsername": crate::realm::TEMP_USER,
            "AuthorizationToken": password,
        }),
        identity,
    ))
}

/// `ListInstanceEndpoint`.
pub fn list_instance_endpoint(inner: &mut Inner, inc: &Incoming) -> Outcome {
    let caller = signed_caller(inner, inc)?;
    let identity = Some(caller.principal.arn());
    let fail = |e: ApiError| (e, identity.clone());
    let inst = instance(inner, &caller, inc).map_err(fail)?.clone();
    if !inner.allowed(&caller.principal, "cr:ListInstanceEndpoint", &inst.id) {
        return Err(fail(no_privilege()));
    }
    let endpoints: Vec<serde_json::Value> = match inc.param("ModuleName") {
        Some(m) if m != "Registry" => Vec::new(),
        _ => inst
            .endpoints_or_default(&inner.scenario.region)
            .iter()
            .map(|e| {
                serde_json::json!({
                    "Status": if e.enabled { "RUNNING" } else { "STOPPED" },
                    "EndpointType": e.endpoint_type,
                    "Enable": e.enabled,
                    "AclEnable": false,
                    "Domains": e.domains.iter().map(|d| serde_json::json!({"Type": d.kind, "Domain": d.domain})).collect::<Vec<_>>(),
                    "LinkedVpcs": [],
                    "AclEntries": [],
                })
            })
            .collect(),
    };
    Ok((
        serde_json::json!({"Code": "success", "IsSuccess": true, "RequestId": crate::state::request_id(), "Endpoints": endpoints}),
        identity,
    ))
}

/// `GET /tokens` (Personal Edition).
pub fn personal_token(inner: &mut Inner, inc: &Incoming) -> Outcome {
    let caller = signed_caller(inner, inc)?;
    let identity = Some(caller.principal.arn());
    let fail = |e: ApiError| (e, identity.clone());
    if inc.header("x-acs-version") != Some("2016-06-07") {
        return Err(fail(ApiError::new(
            400,
            "InvalidVersion",
            "x-acs-version must be 2016-06-07 for /tokens.",
        )));
    }
    let enabled = inner
        .account(caller.principal.account())
        .is_some_and(|a| a.personal_registry);
    if !enabled {
        return Err(fail(ApiError::new(
            404,
            "PERSONAL_REGISTRY_NOT_ENABLED",
            "Personal Edition is not activated for this account.",
        )));
    }
    if !inner.allowed(&caller.principal, "cr:GetAuthorizationToken", "personal") {
        return Err(fail(no_privilege()));
    }
    let (password, expires) = issue_token(inner, &caller, "personal");
    Ok((
        serde_json::json!({
            "data": {"authorizationToken": password, "tempUserName": crate::realm::TEMP_USER, "expireDate": expires.as_millisecond()},
            "requestId": crate::state::request_id(),
        }),
        identity,
    ))
}
