//! RPC signature V2 (`SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`).
//!
//! All request parameters (query and form body merged, `Signature` excluded) are sorted by
//! name, percent-encoded as `name=value` and joined with `&`; the string to sign is
//! `METHOD&%2F&` followed by that canonical query, percent-encoded once more. The key is the
//! AccessKeySecret followed by `&`.

use std::collections::BTreeMap;

use super::{hmac_sha1_base64, iso8601};
use crate::cloud::percent;

/// `SignatureMethod` value.
pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
/// `SignatureVersion` value.
pub const SIGNATURE_VERSION: &str = "1.0";

/// The canonicalised query string: sorted, percent-encoded pairs (without `Signature`).
pub fn canonicalized_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", percent::encode(k), percent::encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `METHOD&%2F&percentEncode(canonicalized query)`.
pub fn string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    format!(
        "{method}&{}&{}",
        percent::encode("/"),
        percent::encode(&canonicalized_query(params))
    )
}

/// Base64(HMAC-SHA1(secret + "&", string_to_sign)).
pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
    hmac_sha1_base64(format!("{access_key_secret}&").as_bytes(), string_to_sign)
}

/// The common parameters that identify and date one signed RPC request. Its `Debug` leaves
/// out the AccessKeyId and the SecurityToken.
#[derive(Clone, Copy)]
pub struct Common<'a> {
    pub action: &'a str,
    pub version: &'a str,
    pub access_key_id: &'a str,
    pub security_token: Option<&'a str>,
    pub timestamp: jiff::Timestamp,
    pub nonce: &'a str,
}

impl std::fmt::Debug for Common<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Common")
            .field("action", &self.action)
            .field("version", &self.version)
            .field("security_token", &self.security_token.map(|_| "<redacted>"))
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// Adds the common parameters (`Action`, `Version`, `Format=JSON`, `AccessKeyId`,
/// `SignatureMethod`, `SignatureVersion`, `SignatureNonce`, `Timestamp`, optional
/// `SecurityToken`) to `api_params`, signs the whole set and adds `Signature`.
pub fn sign_params(
    method: &str,
    mut params: BTreeMap<String, String>,
    common: Common<'_>,
    access_key_secret: &str,
) -> BTreeMap<String, String> {
    params.insert("Action".into(), common.action.into());
    params.insert("Version".into(), common.version.into());
    params.insert("Format".into(), "JSON".into());
    params.insert("AccessKeyId".into(), common.access_key_id.into());
    params.insert("SignatureMethod".into(), SIGNATURE_METHOD.into());
    params.insert("SignatureVersion".into(), SIGNATURE_VERSION.into());
    params.insert("SignatureNonce".into(), common.nonce.into());
    params.insert("Timestamp".into(), iso8601(common.timestamp));
    if let Some(token) = common.security_token {
        params.insert("SecurityToken".into(), token.into());
    }
    let sig = signature(access_key_secret, &string_to_sign(method, &params));
    params.insert("Signature".into(), sig);
    params
}

/// Encodes parameters as a query string or form body (same percent-encoding as signing).
pub fn encode_form(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent::encode(k), percent::encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn v_rpc_1_official_describe_regions() {
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]);
        let sts = string_to_sign("GET", &p);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        let sig = signature("testsecret", &sts);
        assert_eq!(sig, "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
        assert_eq!(percent::encode(&sig), "OLeaidS1JvxuMvnyHOwuJ%2BuX5qY%3D");
    }

    #[test]
    fn v_rpc_2_describe_dedicated_hosts() {
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeDedicatedHosts"),
            ("Format", "JSON"),
            ("RegionId", "cn-beijing"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2023-03-13T08:34:30Z"),
            ("Version", "2014-05-26"),
        ]);
        assert_eq!(
            signature("testsecret", &string_to_sign("GET", &p)),
            "9NaGiOspFP5UPcwX8Iwt2YJXXuk="
        );
    }

    #[test]
    fn v_rpc_3_sdk_unit_test_empty_method() {
        let p = params(&[("test", "ok")]);
        let sts = string_to_sign("", &p);
        assert_eq!(sts, "&%2F&test%3Dok");
        assert_eq!(
            signature("accessKeySecret", &sts),
            "jHx/oHoHNrbVfhncHEvPdHXZwHU="
        );
    }

    #[test]
    fn v_rpc_4_security_token_and_special_characters() {
        let p = params(&[
            ("AccessKeyId", "STS.testid"),
            ("Action", "GetAuthorizationToken"),
            ("Format", "JSON"),
            ("InstanceId", "cri-testinstance"),
            ("RegionId", "cn-hangzhou"),
            ("SecurityToken", "CAIS+token/with=special&chars~*"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "0123456789abcdef0123456789abcdef"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2024-01-02T03:04:05Z"),
            ("Version", "2018-12-01"),
        ]);
        let sts = string_to_sign("POST", &p);
        assert_eq!(
            sts,
            "POST&%2F&AccessKeyId%3DSTS.testid%26Action%3DGetAuthorizationToken%26Format%3DJSON%26InstanceId%3Dcri-testinstance%26RegionId%3Dcn-hangzhou%26SecurityToken%3DCAIS%252Btoken%252Fwith%253Dspecial%2526chars~%252A%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D0123456789abcdef0123456789abcdef%26SignatureVersion%3D1.0%26Timestamp%3D2024-01-02T03%253A04%253A05Z%26Version%3D2018-12-01"
        );
        assert_eq!(
            signature("testsecret", &sts),
            "wgJOVoOvmZ8L2lTd776FU8LkDcA="
        );
    }

    #[test]
    fn v_rpc_5_assume_role_via_sign_params() {
        let api = params(&[
            ("DurationSeconds", "3600"),
            ("RoleArn", "acs:ram::1234567890123456:role/test-role"),
            ("RoleSessionName", "acr-refresher"),
        ]);
        let common = Common {
            action: "AssumeRole",
            version: "2015-04-01",
            access_key_id: "testid",
            security_token: None,
            timestamp: "2024-01-02T03:04:05Z".parse().unwrap(),
            nonce: "0123456789abcdef0123456789abcdef",
        };
        let signed = sign_params("POST", api, common, "testsecret");
        assert_eq!(signed["Signature"], "/D9Bx16Q3pxn51w6nCWVRRRSHTE=");
        // Signature itself is not part of the string to sign.
        assert_eq!(
            signature("testsecret", &string_to_sign("POST", &signed)),
            "/D9Bx16Q3pxn51w6nCWVRRRSHTE="
        );
    }

    #[test]
    fn encode_form_round_trips_through_a_url_parser() {
        let p = params(&[("SecurityToken", "CAIS+tok/en=&~*"), ("A", "b c")]);
        let encoded = encode_form(&p);
        let back: BTreeMap<String, String> = url::form_urlencoded::parse(encoded.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(back, p);
    }
}
