//! Building and signing requests, as pure functions of their inputs.
//!
//! Each `prepare_*` takes the time and nonce as arguments and returns a [`Prepared`] request
//! the transport sends as is: RPC signed with V2 (common parameters and API query in the URL,
//! form parameters in the body) or V3 (everything in headers), the unsigned RPC form that
//! `AssumeRoleWithOIDC` uses, and ROA `GET` with the ROA signature.

use std::collections::{BTreeMap, BTreeSet};

use url::Url;

use super::endpoints::host_header;
use super::http::Prepared;
use super::keypair::Credentials;
use super::sign::{self, roa, rpc, v3};

/// One RPC API call. Its `Debug` names the parameters without their values (the form of
/// `AssumeRoleWithOIDC` holds the ServiceAccount token).
#[derive(Clone)]
pub struct RpcCall {
    /// `product:Action`, for errors and logs.
    pub api: &'static str,
    pub action: &'static str,
    pub version: &'static str,
    /// API parameters sent in the query string.
    pub query: BTreeMap<String, String>,
    /// API parameters sent as an `application/x-www-form-urlencoded` body.
    pub form: BTreeMap<String, String>,
}

impl std::fmt::Debug for RpcCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcCall")
            .field("api", &self.api)
            .field("action", &self.action)
            .field("version", &self.version)
            .field("query", &self.query.keys().collect::<Vec<_>>())
            .field("form", &self.form.keys().collect::<Vec<_>>())
            .finish()
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

fn with_query(base: &Url, path: &str, query: &BTreeMap<String, String>) -> Url {
    let mut url = base.clone();
    url.set_path(path);
    url.set_query(
        (!query.is_empty())
            .then(|| rpc::encode_form(query))
            .as_deref(),
    );
    url
}

/// An RPC request signed with V2: common parameters and API query in the URL, form in the body.
pub fn prepare_rpc_v2(
    base: &Url,
    call: &RpcCall,
    creds: &Credentials,
    now: jiff::Timestamp,
    nonce: &str,
) -> Prepared {
    let token = creds.security_token.as_ref().map(|t| t.expose().as_str());
    let common = rpc::Common {
        action: call.action,
        version: call.version,
        access_key_id: &creds.access_key_id,
        security_token: token,
        timestamp: now,
        nonce,
    };
    let mut all = call.query.clone();
    all.extend(call.form.clone());
    let signed = rpc::sign_params("POST", all, common, creds.access_key_secret.expose());
    let query: BTreeMap<String, String> = signed
        .into_iter()
        .filter(|(k, _)| !call.form.contains_key(k))
        .collect();
    form_request(with_query(base, "/", &query), &call.form, Vec::new())
}

/// An unsigned RPC request (only `AssumeRoleWithOIDC` is called this way).
pub fn prepare_rpc_anonymous(
    base: &Url,
    call: &RpcCall,
    now: jiff::Timestamp,
    nonce: &str,
) -> Prepared {
    let mut query = call.query.clone();
    query.insert("Action".into(), call.action.into());
    query.insert("Version".into(), call.version.into());
    query.insert("Format".into(), "JSON".into());
    query.insert("Timestamp".into(), sign::iso8601(now));
    query.insert("SignatureNonce".into(), nonce.into());
    form_request(with_query(base, "/", &query), &call.form, Vec::new())
}

fn form_request(
    url: Url,
    form: &BTreeMap<String, String>,
    mut headers: Vec<(String, String)>,
) -> Prepared {
    let body = if form.is_empty() {
        Vec::new()
    } else {
        rpc::encode_form(form).into_bytes()
    };
    if !body.is_empty() {
        headers.push(("content-type".into(), FORM.into()));
    }
    headers.push(("accept".into(), "application/json".into()));
    Prepared {
        method: reqwest::Method::POST,
        url,
        headers,
        body,
        timeout: None,
    }
}

/// An RPC request signed with V3: API query in the URL, form in the body, everything in headers.
pub fn prepare_rpc_v3(
    base: &Url,
    call: &RpcCall,
    creds: &Credentials,
    now: jiff::Timestamp,
    nonce: &str,
) -> Prepared {
    let url = with_query(base, "/", &call.query);
    let body = if call.form.is_empty() {
        Vec::new()
    } else {
        rpc::encode_form(&call.form).into_bytes()
    };
    let payload = sign::sha256_hex(&body);
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), host_header(&url)),
        ("x-acs-action".into(), call.action.into()),
        ("x-acs-version".into(), call.version.into()),
        ("x-acs-date".into(), sign::iso8601(now)),
        ("x-acs-signature-nonce".into(), nonce.into()),
        ("x-acs-content-sha256".into(), payload.clone()),
    ];
    if !body.is_empty() {
        headers.push(("content-type".into(), FORM.into()));
    }
    if let Some(token) = &creds.security_token {
        headers.push(("x-acs-accesskey-id".into(), creds.access_key_id.clone()));
        headers.push(("x-acs-security-token".into(), token.expose().clone()));
    }
    let signed: BTreeSet<String> = v3::default_signed_headers(&headers);
    let borrowed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let parts = v3::RequestParts {
        method: "POST",
        path: "/",
        query: &call.query,
        headers: &borrowed,
        payload_sha256: &payload,
    };
    let auth = v3::authorization(
        parts,
        &signed,
        &creds.access_key_id,
        creds.access_key_secret.expose(),
    );
    headers.push(("authorization".into(), auth));
    headers.push(("accept".into(), "application/json".into()));
    headers.retain(|(k, _)| k != "host");
    Prepared {
        method: reqwest::Method::POST,
        url,
        headers,
        body,
        timeout: None,
    }
}

/// A ROA `GET` signed with the ROA signature (Personal Edition `GET /tokens`).
pub fn prepare_roa_get(
    base: &Url,
    path: &str,
    action: &str,
    version: &str,
    creds: &Credentials,
    now: jiff::Timestamp,
    nonce: &str,
) -> Prepared {
    let mut url = base.clone();
    url.set_path(path);
    let mut headers: Vec<(String, String)> = vec![
        ("accept".into(), "application/json".into()),
        ("date".into(), roa::http_date(now)),
        ("x-acs-signature-nonce".into(), nonce.into()),
        (
            "x-acs-signature-method".into(),
            roa::SIGNATURE_METHOD.into(),
        ),
        (
            "x-acs-signature-version".into(),
            roa::SIGNATURE_VERSION.into(),
        ),
        ("x-acs-version".into(), version.into()),
        ("x-acs-action".into(), action.into()),
    ];
    if let Some(token) = &creds.security_token {
        headers.push(("x-acs-accesskey-id".into(), creds.access_key_id.clone()));
        headers.push(("x-acs-security-token".into(), token.expose().clone()));
    }
    let normalized = roa::normalize_headers(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let sts = roa::string_to_sign("GET", path, &normalized, &BTreeMap::new());
    let sig = roa::signature(creds.access_key_secret.expose(), &sts);
    headers.push((
        "authorization".into(),
        roa::authorization(&creds.access_key_id, &sig),
    ));
    Prepared {
        method: reqwest::Method::GET,
        url,
        headers,
        body: Vec::new(),
        timeout: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensitive::Sensitive;

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: if token.is_some() {
                "STS.testid"
            } else {
                "testid"
            }
            .into(),
            access_key_secret: Sensitive::new("testsecret".into()),
            security_token: token.map(|t| Sensitive::new(t.to_string())),
            expires_at: None,
            principal: "test".into(),
        }
    }

    fn gat() -> RpcCall {
        RpcCall {
            api: "cr:GetAuthorizationToken",
            action: "GetAuthorizationToken",
            version: "2018-12-01",
            query: [
                ("InstanceId".to_string(), "cri-testinstance".to_string()),
                ("RegionId".into(), "cn-hangzhou".into()),
            ]
            .into_iter()
            .collect(),
            form: BTreeMap::new(),
        }
    }

    fn ts() -> jiff::Timestamp {
        "2024-01-02T03:04:05Z".parse().unwrap()
    }

    /// Every form of a signed (or token-carrying) request prints without its secrets: the
    /// SecurityToken, the signature, the AccessKeyId and an OIDC token in the form.
    #[test]
    fn debug_of_requests_shows_no_secret() {
        let base = Url::parse("https://cr.cn-hangzhou.aliyuncs.com").unwrap();
        let token = "CAISdebugcanarytoken";
        let c = creds(Some(token));
        let mut oidc = gat();
        oidc.form
            .insert("OIDCToken".into(), "eyJoidcdebugcanary".into());
        let nonce = "0123456789abcdef0123456789abcdef";
        let prepared = [
            prepare_rpc_v2(&base, &gat(), &c, ts(), nonce),
            prepare_rpc_v3(&base, &gat(), &c, ts(), nonce),
            prepare_roa_get(
                &base,
                "/tokens",
                "GetAuthorizationToken",
                "2016-06-07",
                &c,
                ts(),
                nonce,
            ),
            prepare_rpc_anonymous(&base, &oidc, ts(), nonce),
        ];
        let signature = |p: &Prepared| {
            p.url
                .query_pairs()
                .find(|(k, _)| k == "Signature")
                .map(|(_, v)| v.into_owned())
                .or_else(|| {
                    p.headers
                        .iter()
                        .find(|(k, _)| k == "authorization")
                        .and_then(|(_, v)| {
                            // V3 `..,Signature=SIG`, ROA `acs ID:SIG`.
                            v.split_once("Signature=")
                                .or_else(|| v.split_once(':'))
                                .map(|(_, sig)| sig.to_owned())
                        })
                })
        };
        for p in &prepared {
            let text = format!("{p:?}");
            for secret in [token, "eyJoidcdebugcanary", "STS.testid", "testsecret"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            if let Some(sig) = signature(p) {
                assert!(sig.len() >= 20, "{sig:?}");
                assert!(!text.contains(&sig), "signature {sig} in {text}");
            }
            assert!(text.contains("cr.cn-hangzhou.aliyuncs.com"), "{text}");
        }
        let text = format!("{oidc:?}");
        assert!(!text.contains("eyJoidcdebugcanary"), "{text}");
    }

    #[test]
    fn v2_request_matches_vector_rpc_4() {
        let base = Url::parse("https://cr.cn-hangzhou.aliyuncs.com").unwrap();
        let p = prepare_rpc_v2(
            &base,
            &gat(),
            &creds(Some("CAIS+token/with=special&chars~*")),
            ts(),
            "0123456789abcdef0123456789abcdef",
        );
        let q: BTreeMap<String, String> = p.url.query_pairs().into_owned().collect();
        assert_eq!(q["Signature"], "wgJOVoOvmZ8L2lTd776FU8LkDcA=");
        assert_eq!(q["SecurityToken"], "CAIS+token/with=special&chars~*");
        assert!(p.body.is_empty());
        assert_eq!(p.method, reqwest::Method::POST);
    }

    #[test]
    fn v2_form_parameters_go_to_the_body_and_are_signed() {
        let base = Url::parse("https://sts.aliyuncs.com").unwrap();
        let call = RpcCall {
            api: "sts:AssumeRole",
            action: "AssumeRole",
            version: "2015-04-01",
            query: BTreeMap::new(),
            form: [
                ("DurationSeconds".to_string(), "3600".to_string()),
                (
                    "RoleArn".into(),
                    "acs:ram::1234567890123456:role/test-role".into(),
                ),
                ("RoleSessionName".into(), "acr-refresher".into()),
            ]
            .into_iter()
            .collect(),
        };
        let p = prepare_rpc_v2(
            &base,
            &call,
            &creds(None),
            ts(),
            "0123456789abcdef0123456789abcdef",
        );
        let q: BTreeMap<String, String> = p.url.query_pairs().into_owned().collect();
        assert_eq!(q["Signature"], "/D9Bx16Q3pxn51w6nCWVRRRSHTE=");
        assert!(!q.contains_key("RoleArn"));
        assert!(
            String::from_utf8(p.body)
                .unwrap()
                .contains("RoleSessionName=acr-refresher")
        );
    }

    #[test]
    fn v3_request_matches_vector_v3_3() {
        let base = Url::parse("https://cr.cn-hangzhou.aliyuncs.com").unwrap();
        let p = prepare_rpc_v3(
            &base,
            &gat(),
            &creds(Some("CAIS+token/with=special&chars~*")),
            ts(),
            "0123456789abcdef0123456789abcdef",
        );
        let auth = p
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap();
        assert!(
            auth.ends_with(
                "Signature=92ef370a640d9c6995311d5057b74b8d65227af0578a520ec0cb3467476bfd3c"
            ),
            "{auth}"
        );
    }

    #[test]
    fn roa_request_matches_vector_roa_2() {
        let base = Url::parse("https://cr.cn-hangzhou.aliyuncs.com").unwrap();
        let p = prepare_roa_get(
            &base,
            "/tokens",
            "GetAuthorizationToken",
            "2016-06-07",
            &creds(None),
            ts(),
            "0123456789abcdef0123456789abcdef",
        );
        let auth = p
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap();
        assert_eq!(auth, "acs testid:N+7kix1Z01Cdz1U4OSUU9e2J8Kw=");
        let p = prepare_roa_get(
            &base,
            "/tokens",
            "GetAuthorizationToken",
            "2016-06-07",
            &creds(Some("CAIS+token/with=special&chars~*")),
            ts(),
            "0123456789abcdef0123456789abcdef",
        );
        let auth = p
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap();
        assert_eq!(auth, "acs STS.testid:W0ybvHYzoPIpfvjjLjykoWfk9/0=");
    }

    #[test]
    fn anonymous_request_has_no_signature_or_key() {
        let base = Url::parse("https://sts.aliyuncs.com").unwrap();
        let mut call = gat();
        call.form.insert("OIDCToken".into(), "jwt".into());
        let p = prepare_rpc_anonymous(&base, &call, ts(), "n");
        let q: BTreeMap<String, String> = p.url.query_pairs().into_owned().collect();
        assert!(!q.contains_key("Signature") && !q.contains_key("AccessKeyId"));
        assert_eq!(q["Format"], "JSON");
        assert_eq!(String::from_utf8(p.body).unwrap(), "OIDCToken=jwt");
    }
}
