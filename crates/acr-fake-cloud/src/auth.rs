//! Request authentication, as strict as the real service.
//!
//! Detects the signature style (V3 `Authorization: ACS3-HMAC-SHA256 …`, ROA
//! `Authorization: acs AK:SIG`, RPC V2 `Signature` parameter, or none), looks the AccessKey up
//! (scenario keys, or STS credentials this fake issued, whose SecurityToken must match and be
//! unexpired), rejects timestamps more than 15 minutes off and reused nonces, and recomputes
//! the signature from what actually arrived: the V2 parameters of query and form merged, the
//! ROA headers as sent, the V3 canonical headers rebuilt from the client's `SignedHeaders`.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::{Inner, Principal};
use acr_credential_controller::cloud::sign::{self, roa, rpc, v3};

/// A request as the fake received it.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    pub method: String,
    /// The raw path, as sent.
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Form body parameters (only for `application/x-www-form-urlencoded` bodies).
    pub form: BTreeMap<String, String>,
    /// Lowercase names; repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter from the query or the form body.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .or_else(|| self.form.get(name))
            .map(String::as_str)
    }

    /// The AccessKeyId the request claims, before any verification.
    pub fn claimed_key(&self) -> Option<String> {
        let auth = self.header("authorization").unwrap_or("");
        if let Some(parsed) = v3::parse_authorization(auth) {
            return Some(parsed.access_key_id);
        }
        if let Some((ak, _)) = roa::parse_authorization(auth) {
            return Some(ak.to_string());
        }
        self.param("AccessKeyId").map(str::to_string)
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub access_key_id: String,
    /// Expiry of the STS credentials used, if any.
    pub sts_expires: Option<jiff::Timestamp>,
}

fn incomplete(detail: &str) -> ApiError {
    ApiError::new(
        400,
        "IncompleteSignature",
        format!("The request signature does not conform to Aliyun standards. {detail}"),
    )
}

fn mismatch(string_to_sign: &str) -> ApiError {
    ApiError::new(
        400,
        "SignatureDoesNotMatch",
        format!(
            "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
        ),
    )
}

/// Resolves an AccessKeyId (and SecurityToken) to its secret and principal.
fn lookup(
    inner: &Inner,
    ak: &str,
    token: Option<&str>,
) -> Result<(String, Principal, Option<jiff::Timestamp>), ApiError> {
    if let Some(issued) = inner.issued.get(ak) {
        let Some(token) = token else {
            return Err(ApiError::new(
                400,
                "MissingSecurityToken",
                "SecurityToken is mandatory for this action.",
            ));
        };
        if !sign::constant_time_eq(token, &issued.security_token) {
            return Err(ApiError::new(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified SecurityToken mismatch with the AccessKey.",
            ));
        }
        if issued.expires_at <= inner.now() {
            return Err(ApiError::new(
                400,
                "InvalidSecurityToken.Expired",
                "Specified SecurityToken is expired.",
            ));
        }
        let principal = Principal::Role {
            account: issued.account.clone(),
            role: issued.role.clone(),
            session: issued.session.clone(),
        };
        return Ok((issued.secret.clone(), principal, Some(issued.expires_at)));
    }
    for account in &inner.scenario.accounts {
        if let Some(key) = account.access_keys.iter().find(|k| k.id == ak) {
            if !key.enabled {
                return Err(ApiError::new(
                    400,
                    "InvalidAccessKeyId.Inactive",
                    "Specified access key is disabled.",
                ));
            }
            if token.is_some() {
                return Err(ApiError::new(
                    400,
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "Specified SecurityToken mismatch with the AccessKey.",
                ));
            }
            let principal = match &key.user {
                Some(name) => Principal::User {
                    account: account.id.clone(),
                    name: name.clone(),
                },
                None => Principal::Root {
                    account: account.id.clone(),
                },
            };
            return Ok((key.secret.clone(), principal, None));
        }
    }
    Err(ApiError::new(
        404,
        "InvalidAccessKeyId.NotFound",
        "Specified access key is not found.",
    ))
}

fn check_fresh(inner: &Inner, when: Option<jiff::Timestamp>, raw: &str) -> Result<(), ApiError> {
    let Some(when) = when else {
        return Err(ApiError::new(
            400,
            "InvalidTimeStamp.Format",
            format!("Specified time stamp or date value {raw:?} is not well formatted."),
        ));
    };
    let skew = inner.now().duration_since(when).abs();
    if skew > crate::state::NONCE_WINDOW {
        return Err(ApiError::new(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    Ok(())
}

fn check_nonce(inner: &mut Inner, ak: &str, nonce: &str) -> Result<(), ApiError> {
    if inner.use_nonce(ak, nonce) {
        Ok(())
    } else {
        Err(ApiError::new(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ))
    }
}

fn required<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str, ApiError> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::new(
            400,
            &format!("Missing{name}"),
            format!("{name} is mandatory for this action."),
        )
    })
}

/// Authenticates a request. `Ok(None)` means an anonymous request, allowed only when
/// `allow_anonymous` (for `AssumeRoleWithOIDC`).
pub fn authenticate(
    inner: &mut Inner,
    inc: &Incoming,
    allow_anonymous: bool,
) -> Result<Option<Caller>, ApiError> {
    let auth = inc.header("authorization").unwrap_or("").to_string();
    if auth.starts_with(v3::ALGORITHM) {
        return verify_v3(inner, inc, &auth).map(Some);
    }
    if auth.starts_with("acs ") {
        return verify_roa(inner, inc, &auth).map(Some);
    }
    if inc.param("Signature").is_some() {
        return verify_rpc_v2(inner, inc).map(Some);
    }
    if allow_anonymous {
        let nonce = inc.param("SignatureNonce").unwrap_or("");
        if let Some(ts) = inc.param("Timestamp") {
            check_fresh(inner, sign::parse_iso8601(ts), ts)?;
        }
        if !nonce.is_empty() {
            check_nonce(inner, "", nonce)?;
        }
        return Ok(None);
    }
    if inc.param("AccessKeyId").is_some() {
        return Err(ApiError::new(
            400,
            "MissingSignature",
            "Signature is mandatory for this action.",
        ));
    }
    Err(incomplete(
        "No credentials were given (AccessKeyId and Signature, or an Authorization header).",
    ))
}

fn verify_rpc_v2(inner: &mut Inner, inc: &Incoming) -> Result<Caller, ApiError> {
    let ak = required(inc.param("AccessKeyId"), "AccessKeyId")?.to_string();
    let given = required(inc.param("Signature"), "Signature")?.to_string();
    let method = required(inc.param("SignatureMethod"), "SignatureMethod")?;
    let version = required(inc.param("SignatureVersion"), "SignatureVersion")?;
    if method != rpc::SIGNATURE_METHOD || version != rpc::SIGNATURE_VERSION {
        return Err(incomplete(
            "SignatureMethod must be HMAC-SHA1 and SignatureVersion 1.0.",
        ));
    }
    let nonce = required(inc.param("SignatureNonce"), "SignatureNonce")?.to_string();
    let ts = required(inc.param("Timestamp"), "Timestamp")?.to_string();
    let (secret, principal, sts_expires) = lookup(inner, &ak, inc.param("SecurityToken"))?;
    check_fresh(inner, sign::parse_iso8601(&ts), &ts)?;
    let mut params = inc.query.clone();
    params.extend(inc.form.clone());
    let sts = rpc::string_to_sign(&inc.method, &params);
    if !sign::constant_time_eq(&rpc::signature(&secret, &sts), &given) {
        return Err(mismatch(&sts));
    }
    check_nonce(inner, &ak, &nonce)?;
    Ok(Caller {
        principal,
        access_key_id: ak,
        sts_expires,
    })
}

fn verify_roa(inner: &mut Inner, inc: &Incoming, auth: &str) -> Result<Caller, ApiError> {
    let (ak, given) = roa::parse_authorization(auth)
        .ok_or_else(|| incomplete("Malformed Authorization header."))?;
    let (ak, given) = (ak.to_string(), given.to_string());
    let date = required(inc.header("date"), "Date")?.to_string();
    let nonce = required(inc.header("x-acs-signature-nonce"), "SignatureNonce")?.to_string();
    if inc.header("x-acs-signature-method") != Some(roa::SIGNATURE_METHOD)
        || inc.header("x-acs-signature-version") != Some(roa::SIGNATURE_VERSION)
    {
        return Err(incomplete(
            "x-acs-signature-method must be HMAC-SHA1 and x-acs-signature-version 1.0.",
        ));
    }
    let (secret, principal, sts_expires) = lookup(inner, &ak, inc.header("x-acs-security-token"))?;
    check_fresh(inner, roa::parse_http_date(&date), &date)?;
    let headers = roa::normalize_headers(inc.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let sts = roa::string_to_sign(&inc.method, &inc.path, &headers, &inc.query);
    if !sign::constant_time_eq(&roa::signature(&secret, &sts), &given) {
        return Err(mismatch(&sts.replace('\n', "#")));
    }
    check_nonce(inner, &ak, &nonce)?;
    Ok(Caller {
        principal,
        access_key_id: ak,
        sts_expires,
    })
}

fn verify_v3(inner: &mut Inner, inc: &Incoming, auth: &str) -> Result<Caller, ApiError> {
    let parsed = v3::parse_authorization(auth)
        .ok_or_else(|| incomplete("Malformed Authorization header."))?;
    let expected_order: Vec<&str> = parsed.signed_headers.iter().map(String::as_str).collect();
    if parsed.signed_headers_raw != expected_order.join(";") {
        return Err(incomplete(
            "SignedHeaders must be lowercase, sorted and separated by ';'.",
        ));
    }
    let must_sign: BTreeSet<String> = inc
        .headers
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| k == "host" || (k.starts_with("x-acs-") && k != "authorization"))
        .collect();
    if let Some(missing) = must_sign.difference(&parsed.signed_headers).next() {
        return Err(incomplete(&format!("Header {missing} must be signed.")));
    }
    let date = required(inc.header("x-acs-date"), "x-acs-date")?.to_string();
    let nonce = required(inc.header("x-acs-signature-nonce"), "x-acs-signature-nonce")?.to_string();
    let payload = required(inc.header("x-acs-content-sha256"), "x-acs-content-sha256")?.to_string();
    if payload != sign::sha256_hex(&inc.body) {
        return Err(ApiError::new(
            400,
            "InvalidParameter.ContentSha256",
            "x-acs-content-sha256 does not match the request body.",
        ));
    }
    let ak = parsed.access_key_id.clone();
    let (secret, principal, sts_expires) = lookup(inner, &ak, inc.header("x-acs-security-token"))?;
    check_fresh(inner, sign::parse_iso8601(&date), &date)?;
    let headers: Vec<(&str, &str)> = inc
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let parts = v3::RequestParts {
        method: &inc.method,
        path: &inc.path,
        query: &inc.query,
        headers: &headers,
        payload_sha256: &payload,
    };
    let canonical = v3::canonical_request(parts, &parsed.signed_headers);
    let expected = v3::signature(&secret, &v3::string_to_sign(&canonical));
    if !sign::constant_time_eq(&expected, &parsed.signature) {
        return Err(ApiError::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "The request signature does not match our calculation. canonical request is:{}",
                canonical.replace('\n', "#")
            ),
        ));
    }
    check_nonce(inner, &ak, &nonce)?;
    Ok(Caller {
        principal,
        access_key_id: ak,
        sts_expires,
    })
}
