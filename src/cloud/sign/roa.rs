//! ROA signature (HMAC-SHA1), used by CR 2016-06-07 `GET /tokens`.
//!
//! String to sign: `METHOD\nAccept\nContent-MD5\nContent-Type\nDate\n` (empty slots stay
//! empty lines), then every `x-acs-*` header lowercased and sorted as `name:value\n`, then the
//! resource (`path`, or `path?k=v&k2` with sorted, **unencoded** query values). The key is the
//! AccessKeySecret itself, without the trailing `&` that RPC uses.

use std::collections::BTreeMap;

use super::hmac_sha1_base64;

/// `x-acs-signature-method` value.
pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
/// `x-acs-signature-version` value.
pub const SIGNATURE_VERSION: &str = "1.0";

/// Lowercases header names and joins repeated headers with `,` (sorted map by name).
pub fn normalize_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        out.entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
    out
}

/// `x-acs-*` headers as `name:value\n`, sorted by lowercase name.
pub fn canonicalized_headers(headers: &BTreeMap<String, String>) -> String {
    headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-acs-"))
        .map(|(k, v)| format!("{k}:{v}\n"))
        .collect()
}

/// `path` or `path?k1=v1&k2&k3=v3` (sorted keys, raw values, empty value -> bare key).
pub fn canonicalized_resource(path: &str, query: &BTreeMap<String, String>) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// The full ROA string to sign. `headers` must already be normalised (lowercase names).
pub fn string_to_sign(
    method: &str,
    path: &str,
    headers: &BTreeMap<String, String>,
    query: &BTreeMap<String, String>,
) -> String {
    let slot = |name: &str| headers.get(name).map(String::as_str).unwrap_or("");
    format!(
        "{method}\n{}\n{}\n{}\n{}\n{}{}",
        slot("accept"),
        slot("content-md5"),
        slot("content-type"),
        slot("date"),
        canonicalized_headers(headers),
        canonicalized_resource(path, query)
    )
}

/// Base64(HMAC-SHA1(secret, string_to_sign)).
pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
    hmac_sha1_base64(access_key_secret.as_bytes(), string_to_sign)
}

/// `acs <AccessKeyId>:<Signature>`.
pub fn authorization(access_key_id: &str, signature: &str) -> String {
    format!("acs {access_key_id}:{signature}")
}

/// Splits an `Authorization: acs AK:SIG` value into (AccessKeyId, Signature).
pub fn parse_authorization(value: &str) -> Option<(&str, &str)> {
    let rest = value.strip_prefix("acs ")?;
    let (ak, sig) = rest.rsplit_once(':')?;
    (!ak.is_empty() && !sig.is_empty()).then_some((ak, sig))
}

/// RFC 1123 date in GMT, as the `Date` header carries it.
pub fn http_date(ts: jiff::Timestamp) -> String {
    ts.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Parses an RFC 1123 `Date` header.
pub fn parse_http_date(value: &str) -> Option<jiff::Timestamp> {
    let trimmed = value.trim().strip_suffix("GMT")?.trim_end();
    let dt = jiff::civil::DateTime::strptime("%a, %d %b %Y %H:%M:%S", trimmed).ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        normalize_headers(pairs.iter().copied())
    }

    #[test]
    fn v_roa_1_empty_request() {
        let sts = string_to_sign("GET", "", &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(sts, "GET\n\n\n\n\n");
        assert_eq!(signature("secret", &sts), "XGXDWA78AEvx/wmfxKoVCq/afWw=");
    }

    #[test]
    fn v_roa_1_slot_order_and_query() {
        let headers = map(&[
            ("x-acs-meta", "user"),
            ("accept", "application/json"),
            ("content-md5", "md5"),
            ("content-type", "application/json"),
            ("date", "date"),
        ]);
        let query: BTreeMap<String, String> = [("ccp", "ok"), ("test", "tests")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            string_to_sign("GET", "", &headers, &query),
            "GET\napplication/json\nmd5\napplication/json\ndate\nx-acs-meta:user\n?ccp=ok&test=tests"
        );
    }

    fn personal_headers(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut pairs = vec![
            ("accept", "application/json"),
            ("date", "Tue, 02 Jan 2024 03:04:05 GMT"),
            ("host", "cr.cn-hangzhou.aliyuncs.com"),
            ("x-acs-action", "GetAuthorizationToken"),
            ("x-acs-signature-method", "HMAC-SHA1"),
            ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
            ("x-acs-signature-version", "1.0"),
            ("x-acs-version", "2016-06-07"),
            ("user-agent", "test"),
        ];
        pairs.extend_from_slice(extra);
        map(&pairs)
    }

    #[test]
    fn v_roa_2_personal_get_tokens() {
        let sts = string_to_sign("GET", "/tokens", &personal_headers(&[]), &BTreeMap::new());
        assert_eq!(
            sts,
            "GET\napplication/json\n\n\nTue, 02 Jan 2024 03:04:05 GMT\nx-acs-action:GetAuthorizationToken\nx-acs-signature-method:HMAC-SHA1\nx-acs-signature-nonce:0123456789abcdef0123456789abcdef\nx-acs-signature-version:1.0\nx-acs-version:2016-06-07\n/tokens"
        );
        assert_eq!(
            authorization("testid", &signature("testsecret", &sts)),
            "acs testid:N+7kix1Z01Cdz1U4OSUU9e2J8Kw="
        );
    }

    #[test]
    fn v_roa_2_personal_get_tokens_with_sts() {
        let headers = personal_headers(&[
            ("x-acs-accesskey-id", "STS.testid"),
            ("x-acs-security-token", "CAIS+token/with=special&chars~*"),
        ]);
        let sts = string_to_sign("GET", "/tokens", &headers, &BTreeMap::new());
        assert_eq!(
            signature("testsecret", &sts),
            "W0ybvHYzoPIpfvjjLjykoWfk9/0="
        );
    }

    #[test]
    fn authorization_parses_back() {
        assert_eq!(
            parse_authorization("acs STS.a:b/c="),
            Some(("STS.a", "b/c="))
        );
        assert_eq!(parse_authorization("ACS3-HMAC-SHA256 x"), None);
        assert_eq!(parse_authorization("acs :sig"), None);
    }

    #[test]
    fn http_date_round_trip() {
        let ts: jiff::Timestamp = "2024-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(http_date(ts), "Tue, 02 Jan 2024 03:04:05 GMT");
        assert_eq!(parse_http_date("Tue, 02 Jan 2024 03:04:05 GMT"), Some(ts));
        assert_eq!(parse_http_date("2024-01-02"), None);
    }
}
