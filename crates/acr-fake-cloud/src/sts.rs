//! Fake STS 2015-04-01: `AssumeRole` and `AssumeRoleWithOIDC`.
//!
//! AssumeRole checks the caller's `sts:AssumeRole` permission (root keys may not assume
//! roles), the role's existence and trust (principals, external id), and `DurationSeconds`
//! against 900 and the role's `MaxSessionDuration`. AssumeRoleWithOIDC verifies the RS256
//! token against the provider's keys, issuer, client ids (audience) and expiry, and the
//! role's OIDC trust (provider and subject).

use crate::auth::{ApiError, Incoming, authenticate};
use crate::state::{Inner, Issued};
use acr_credential_controller::cloud::sign::iso8601;

/// STS API version.
pub const VERSION: &str = "2015-04-01";

type Outcome = Result<(serde_json::Value, Option<String>), (ApiError, Option<String>)>;

fn param<'a>(inc: &'a Incoming, name: &str) -> Result<&'a str, ApiError> {
    inc.param(name).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::new(
            400,
            &format!("Missing{name}"),
            format!("{name} is mandatory for this action."),
        )
    })
}

/// Splits `acs:ram::<account>:<kind>/<name>`.
fn parse_arn<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let rest = arn.strip_prefix("acs:ram::")?;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix(kind)?.strip_prefix('/')?;
    (!account.is_empty() && !name.is_empty()).then_some((account, name))
}

fn check_session_name(name: &str) -> Result<(), ApiError> {
    let ok = (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            400,
            "InvalidParameter.RoleSessionName",
            "The parameter RoleSessionName is wrongly formed.",
        ))
    }
}

fn duration(inc: &Incoming, max: u64) -> Result<u64, ApiError> {
    let value = inc.param("DurationSeconds").unwrap_or("3600");
    let seconds: u64 = value.parse().map_err(|_| {
        ApiError::new(
            400,
            "InvalidParameter.DurationSeconds",
            "The parameter DurationSeconds is wrongly formed.",
        )
    })?;
    if !(900..=max).contains(&seconds) {
        return Err(ApiError::new(
            400,
            "InvalidParameter.DurationSeconds",
            format!(
                "The Min/Max value of DurationSeconds is 15min/{}hr.",
                max as f64 / 3600.0
            ),
        ));
    }
    Ok(seconds)
}

fn issue(inner: &mut Inner, account: &str, role: &str, session: &str, seconds: u64) -> Issued {
    let capped = inner
        .scenario
        .lifetimes
        .sts_seconds
        .map_or(seconds, |cap| cap.min(seconds));
    inner.issue(
        account,
        role,
        session,
        jiff::SignedDuration::from_secs(i64::try_from(capped).unwrap_or(i64::MAX)),
    )
}

fn body(issued: &Issued, role_arn: &str) -> serde_json::Value {
    serde_json::json!({
        "RequestId": crate::state::request_id(),
        "AssumedRoleUser": {
            "AssumedRoleId": format!("3{}:{}", &issued.access_key_id[4..20.min(issued.access_key_id.len())], issued.session),
            "Arn": format!("{role_arn}/{}", issued.session),
        },
        "Credentials": {
            "AccessKeyId": issued.access_key_id,
            "AccessKeySecret": issued.secret,
            "SecurityToken": issued.security_token,
            "Expiration": iso8601(issued.expires_at),
        }
    })
}

/// The role a `RoleArn` names: its account, its name and its definition.
fn find_role(
    inner: &Inner,
    role_arn: &str,
) -> Result<(String, String, crate::scenario::Role), ApiError> {
    let (account, role_name) = parse_arn(role_arn, "role").ok_or_else(|| {
        ApiError::new(
            400,
            "InvalidParameter.RoleArn",
            "The parameter RoleArn is wrongly formed.",
        )
    })?;
    let role = inner.role(account, role_name).cloned().ok_or_else(|| {
        ApiError::new(
            404,
            "EntityNotExist.Role",
            format!("The role not exists: {role_arn}."),
        )
    })?;
    Ok((account.to_string(), role_name.to_string(), role))
}

fn no_trust() -> ApiError {
    ApiError::new(
        403,
        "NoPermission",
        "No permission perform sts:AssumeRole on this Role.",
    )
}

/// `AssumeRole`.
pub fn assume_role(inner: &mut Inner, inc: &Incoming) -> Outcome {
    let caller = authenticate(inner, inc, false)
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
        })?;
    let identity = Some(caller.principal.arn());
    let fail = |e: ApiError| (e, identity.clone());
    let role_arn = param(inc, "RoleArn").map_err(fail)?.to_string();
    let session = param(inc, "RoleSessionName").map_err(fail)?.to_string();
    check_session_name(&session).map_err(fail)?;
    if matches!(caller.principal, crate::state::Principal::Root { .. }) {
        return Err(fail(ApiError::new(
            403,
            "NoPermission",
            "Roles may not be assumed by root accounts.",
        )));
    }
    if !inner.allowed(&caller.principal, "sts:AssumeRole", &role_arn) {
        return Err(fail(ApiError::new(
            403,
            "NoPermission",
            "You are not authorized to do this action. You should be authorized by RAM.",
        )));
    }
    let (account, role_name, role) = find_role(inner, &role_arn).map_err(fail)?;
    let caller_arn = caller.principal.arn();
    let caller_root = format!("acs:ram::{}:root", caller.principal.account());
    if !role
        .trust
        .principals
        .iter()
        .any(|p| *p == caller_arn || *p == caller_root)
    {
        return Err(fail(no_trust()));
    }
    if let Some(expected) = &role.trust.external_id
        && inc.param("ExternalId") != Some(expected.as_str())
    {
        return Err(fail(ApiError::new(
            403,
            "NoPermission",
            "No permission perform sts:AssumeRole on this Role: ExternalId mismatch.",
        )));
    }
    let seconds = duration(inc, role.max_session_duration).map_err(fail)?;
    let issued = issue(inner, &account, &role_name, &session, seconds);
    Ok((body(&issued, &role_arn), identity))
}

#[derive(Debug, serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    /// Checked by the validation against the provider's client ids.
    #[allow(dead_code)]
    aud: serde_json::Value,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
}

fn oidc_error(code: &str, message: &str) -> ApiError {
    ApiError::new(
        400,
        &format!("AuthenticationFail.OIDCToken.{code}"),
        message,
    )
}

fn verify_token(token: &str, provider: &crate::scenario::OidcProvider) -> Result<Claims, ApiError> {
    use jsonwebtoken::errors::ErrorKind;
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| oidc_error("Invalid", "The OIDC token is not a valid JWT."))?;
    if header.alg != jsonwebtoken::Algorithm::RS256 {
        return Err(oidc_error(
            "Invalid",
            "The OIDC token must be signed with RS256.",
        ));
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&provider.client_ids);
    validation.set_issuer(&[provider.issuer.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 0;
    let mut last = oidc_error(
        "PublicKeyFingerprintMismatch",
        "No public key of the OIDC provider verifies the token.",
    );
    for pem in &provider.public_keys_pem {
        let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()) else {
            continue;
        };
        match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                last = match e.kind() {
                    ErrorKind::InvalidSignature => last,
                    ErrorKind::ExpiredSignature => {
                        return Err(oidc_error("Expired", "This JsonWebToken is expired."));
                    }
                    ErrorKind::InvalidAudience => {
                        return Err(oidc_error("AudienceNotMatch", "Invalid audience."));
                    }
                    ErrorKind::InvalidIssuer => {
                        return Err(oidc_error(
                            "IssuerNotMatch",
                            "The issuer in the OIDC Token doesn't match the OIDC Provider registered.",
                        ));
                    }
                    _ => return Err(oidc_error("Invalid", "The OIDC token is invalid.")),
                }
            }
        }
    }
    Err(last)
}

/// `AssumeRoleWithOIDC`.
pub fn assume_role_with_oidc(inner: &mut Inner, inc: &Incoming) -> Outcome {
    authenticate(inner, inc, true).map_err(|e| (e, None))?;
    let fail = |e: ApiError| (e, None);
    let provider_arn = param(inc, "OIDCProviderArn").map_err(fail)?.to_string();
    let role_arn = param(inc, "RoleArn").map_err(fail)?.to_string();
    let token = param(inc, "OIDCToken").map_err(fail)?.to_string();
    let session = param(inc, "RoleSessionName").map_err(fail)?.to_string();
    check_session_name(&session).map_err(fail)?;
    let no_provider = || {
        ApiError::new(
            400,
            "AuthenticationFail.NoPermission",
            "No such OIDC Provider registered.",
        )
    };
    let (provider_account, provider_name) =
        parse_arn(&provider_arn, "oidc-provider").ok_or_else(|| fail(no_provider()))?;
    let provider = inner
        .account(provider_account)
        .and_then(|a| a.oidc_providers.iter().find(|p| p.name == provider_name))
        .cloned()
        .ok_or_else(|| fail(no_provider()))?;
    let claims = verify_token(&token, &provider).map_err(fail)?;
    let identity = Some(format!("oidc:{}", claims.sub));
    let fail = |e: ApiError| (e, identity.clone());
    let (account, role_name, role) = find_role(inner, &role_arn).map_err(fail)?;
    let trusted = account == provider_account
        && role.trust.oidc.iter().any(|t| {
            t.provider == provider_name
                && (t.subjects.is_empty() || t.subjects.contains(&claims.sub))
        });
    if !trusted {
        return Err(fail(no_trust()));
    }
    let seconds = duration(inc, role.max_session_duration).map_err(fail)?;
    let issued = issue(inner, &account, &role_name, &session, seconds);
    let mut answer = body(&issued, &role_arn);
    let to_iso = |secs: i64| {
        jiff::Timestamp::from_second(secs)
            .map(iso8601)
            .unwrap_or_default()
    };
    answer["OIDCTokenInfo"] = serde_json::json!({
        "ClientIds": provider.client_ids.join(","),
        "ExpirationTime": to_iso(claims.exp),
        "IssuanceTime": claims.iat.map(to_iso),
        "Issuer": claims.iss,
        "Subject": claims.sub,
        "VerificationInfo": "Success",
    });
    Ok((answer, identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(
            parse_arn("acs:ram::123:role/acr-puller", "role"),
            Some(("123", "acr-puller"))
        );
        assert_eq!(
            parse_arn("acs:ram::123:oidc-provider/ack-rrsa-c1", "oidc-provider"),
            Some(("123", "ack-rrsa-c1"))
        );
        assert_eq!(parse_arn("acs:ram::123:role/", "role"), None);
        assert_eq!(parse_arn("arn:aws:iam::123:role/x", "role"), None);
    }
}
