//! V3 signature, `ACS3-HMAC-SHA256`.
//!
//! Canonical request: `METHOD\nURI\nQUERY\nHEADERS\nSIGNED_HEADERS\nPAYLOAD_HASH`, where the
//! query is sorted `name=percentEncode(value)` pairs, the headers are the signed ones
//! (lowercase, sorted, trimmed values, repeated headers' sorted values joined by `,`) and the
//! payload hash is the hex SHA-256 also sent as `x-acs-content-sha256`. The string to sign is
//! `ACS3-HMAC-SHA256\n` + hex SHA-256 of the canonical request; the key is the secret itself.
//!
//! A verifier must rebuild the headers from the client's `SignedHeaders` list: SDKs differ on
//! which headers they sign (the Go SDK signs `host`, `content-type`, `x-acs-*`; the Python
//! one signs everything it sets).

use std::collections::{BTreeMap, BTreeSet};

use super::{hmac_sha256_hex, sha256_hex};
use crate::cloud::percent;

/// The algorithm name at the start of the `Authorization` header.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Hex SHA-256 of an empty payload.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Sorted `name=percentEncode(value)` pairs joined by `&` (`name=` for empty values).
pub fn canonical_query(query: &BTreeMap<String, String>) -> String {
    query
        .iter()
        .map(|(k, v)| format!("{}={}", percent::encode(k), percent::encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Headers a client signs by default: `host`, `content-type` and every `x-acs-*` header.
pub fn default_signed_headers<'a>(
    headers: impl IntoIterator<Item = &'a (String, String)>,
) -> BTreeSet<String> {
    headers
        .into_iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| k == "host" || k == "content-type" || k.starts_with("x-acs-"))
        .collect()
}

/// Canonical headers (each `name:value\n`) for the names in `signed`, from all `headers`.
pub fn canonical_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    signed: &BTreeSet<String>,
) -> String {
    let mut values: BTreeMap<String, Vec<String>> =
        signed.iter().map(|k| (k.clone(), Vec::new())).collect();
    for (name, value) in headers {
        if let Some(list) = values.get_mut(&name.to_ascii_lowercase()) {
            list.push(value.trim().to_string());
        }
    }
    values
        .into_iter()
        .map(|(name, mut list)| {
            list.sort();
            format!("{name}:{}\n", list.join(","))
        })
        .collect()
}

/// One request as the canonicaliser sees it. Its `Debug` names the headers without their
/// values (they hold the SecurityToken).
#[derive(Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// URL path; empty means `/`.
    pub path: &'a str,
    pub query: &'a BTreeMap<String, String>,
    pub headers: &'a [(&'a str, &'a str)],
    pub payload_sha256: &'a str,
}

impl std::fmt::Debug for RequestParts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(k, _)| *k).collect();
        f.debug_struct("RequestParts")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query.keys().collect::<Vec<_>>())
            .field("headers", &headers)
            .field("payload_sha256", &self.payload_sha256)
            .finish()
    }
}

/// The canonical request string.
pub fn canonical_request(parts: RequestParts<'_>, signed: &BTreeSet<String>) -> String {
    let uri = if parts.path.is_empty() {
        "/"
    } else {
        parts.path
    };
    let names: Vec<&str> = signed.iter().map(String::as_str).collect();
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        parts.method,
        uri,
        canonical_query(parts.query),
        canonical_headers(parts.headers.iter().copied(), signed),
        names.join(";"),
        parts.payload_sha256
    )
}

/// `ACS3-HMAC-SHA256\n` + hex SHA-256 of the canonical request.
pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// Hex HMAC-SHA256(secret, string_to_sign).
pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
    hmac_sha256_hex(access_key_secret.as_bytes(), string_to_sign)
}

/// The complete `Authorization` header value for a request.
pub fn authorization(
    parts: RequestParts<'_>,
    signed: &BTreeSet<String>,
    access_key_id: &str,
    access_key_secret: &str,
) -> String {
    let sig = signature(
        access_key_secret,
        &string_to_sign(&canonical_request(parts, signed)),
    );
    let names: Vec<&str> = signed.iter().map(String::as_str).collect();
    format!(
        "{ALGORITHM} Credential={access_key_id},SignedHeaders={},Signature={sig}",
        names.join(";")
    )
}

/// The three fields of a V3 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub access_key_id: String,
    pub signed_headers: BTreeSet<String>,
    /// The list exactly as sent, to check it is sorted and lowercase.
    pub signed_headers_raw: String,
    pub signature: String,
}

/// Parses `ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`.
pub fn parse_authorization(value: &str) -> Option<ParsedAuthorization> {
    let rest = value.strip_prefix(ALGORITHM)?.trim_start();
    let mut credential = None;
    let mut signed = None;
    let mut sig = None;
    for field in rest.split(',') {
        let (k, v) = field.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v.to_string()),
            "SignedHeaders" => signed = Some(v.to_string()),
            "Signature" => sig = Some(v.to_string()),
            _ => return None,
        }
    }
    let signed_headers_raw = signed?;
    Some(ParsedAuthorization {
        access_key_id: credential.filter(|c| !c.is_empty())?,
        signed_headers: signed_headers_raw
            .split(';')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        signed_headers_raw,
        signature: sig.filter(|s| !s.is_empty())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn v_v3_1_official_doc_example() {
        let query = q(&[
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let headers = [
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-content-sha256", EMPTY_PAYLOAD_SHA256),
        ];
        let owned: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let signed = default_signed_headers(&owned);
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_sha256: EMPTY_PAYLOAD_SHA256,
        };
        let cr = canonical_request(parts, &signed);
        assert_eq!(
            cr,
            "POST\n/\nImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\nhost:ecs.cn-shanghai.aliyuncs.com\nx-acs-action:RunInstances\nx-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-acs-date:2023-10-26T10:22:32Z\nx-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\nx-acs-version:2014-05-26\n\nhost;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(cr.as_bytes()),
            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        assert_eq!(
            authorization(parts, &signed, "YourAccessKeyId", "YourAccessKeySecret"),
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    #[test]
    fn v_v3_2_sdk_unit_test_empty_value_and_duplicate_headers() {
        let query = q(&[("test", "ok"), ("empty", "")]);
        let headers = [("x-acs-test", "http"), ("x-acs-TEST", "https")];
        let signed = names(&["x-acs-test"]);
        let payload = "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23";
        let parts = RequestParts {
            method: "",
            path: "",
            query: &query,
            headers: &headers,
            payload_sha256: payload,
        };
        assert_eq!(
            canonical_request(parts, &signed),
            format!("\n/\nempty=&test=ok\nx-acs-test:http,https\n\nx-acs-test\n{payload}")
        );
        assert_eq!(
            authorization(parts, &signed, "acesskey", "secret"),
            "ACS3-HMAC-SHA256 Credential=acesskey,SignedHeaders=x-acs-test,Signature=4ab59fffe3c5738ff8a2729f90cc04fe18b02a4b15b2102cbaf92f9ff3df2ea3"
        );
    }

    fn cr_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "cr.cn-hangzhou.aliyuncs.com"),
            ("x-acs-action", "GetAuthorizationToken"),
            ("x-acs-version", "2018-12-01"),
            ("x-acs-date", "2024-01-02T03:04:05Z"),
            ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
            ("x-acs-content-sha256", EMPTY_PAYLOAD_SHA256),
        ]
    }

    fn sign_cr(headers: &[(&str, &str)], signed: &BTreeSet<String>, ak: &str) -> String {
        let query = q(&[
            ("InstanceId", "cri-testinstance"),
            ("RegionId", "cn-hangzhou"),
        ]);
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: &query,
            headers,
            payload_sha256: EMPTY_PAYLOAD_SHA256,
        };
        authorization(parts, signed, ak, "testsecret")
    }

    #[test]
    fn v_v3_3_cr_get_authorization_token() {
        let headers = cr_headers();
        let signed: BTreeSet<String> = headers.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(
            sign_cr(&headers, &signed, "testid"),
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=37ada2b1efdf248fab40d316c04f55530265a607da5f6d890d5ad1351a7a1b2d"
        );
    }

    #[test]
    fn v_v3_3_with_security_token() {
        let mut headers = cr_headers();
        headers.push(("x-acs-accesskey-id", "STS.testid"));
        headers.push(("x-acs-security-token", "CAIS+token/with=special&chars~*"));
        let signed: BTreeSet<String> = headers.iter().map(|(k, _)| k.to_string()).collect();
        let auth = sign_cr(&headers, &signed, "STS.testid");
        assert!(auth.ends_with("SignedHeaders=host;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,Signature=92ef370a640d9c6995311d5057b74b8d65227af0578a520ec0cb3467476bfd3c"), "{auth}");
    }

    #[test]
    fn v_v3_3_signing_every_header_like_the_python_sdk() {
        let mut headers = cr_headers();
        headers.push(("accept", "application/json"));
        headers.push(("user-agent", "test"));
        let signed: BTreeSet<String> = headers.iter().map(|(k, _)| k.to_string()).collect();
        let auth = sign_cr(&headers, &signed, "testid");
        assert!(auth.ends_with("SignedHeaders=accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=6101a5ac2afee21efaf4514114d00ba3e9725a24dcb3955e98fcc0c9b4bf493c"), "{auth}");
        // The verifier rebuilds from SignedHeaders; unsigned extra headers do not matter.
        let parsed = parse_authorization(&auth).unwrap();
        assert_eq!(parsed.access_key_id, "testid");
        assert_eq!(parsed.signed_headers, signed);
        let mut with_extra = headers.clone();
        with_extra.push(("x-forwarded-for", "1.2.3.4"));
        assert_eq!(sign_cr(&with_extra, &parsed.signed_headers, "testid"), auth);
    }

    #[test]
    fn parse_authorization_rejects_malformed() {
        assert!(parse_authorization("acs a:b").is_none());
        assert!(parse_authorization("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host").is_none());
        assert!(
            parse_authorization("ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=x")
                .is_none()
        );
    }
}
