//! Request signing for Alibaba Cloud's three schemes, as pure functions.
//!
//! - [`rpc`]: RPC signature V2 (`SignatureVersion=1.0`, HMAC-SHA1, key `secret&`), used by
//!   STS 2015-04-01 and CR 2018-12-01.
//! - [`roa`]: ROA signature (HMAC-SHA1 over method, content headers, `x-acs-*` headers and the
//!   resource), used by CR 2016-06-07 `GET /tokens`.
//! - [`v3`]: ACS3-HMAC-SHA256, which current SDKs use for every style.
//!
//! Nothing here performs I/O or reads a clock: timestamps and nonces are inputs, so every
//! official test vector is a plain unit test, and the fake cloud verifies with the same code
//! paths a real server would take (rebuilding the string to sign from what arrived).

pub mod roa;
pub mod rpc;
pub mod v3;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Digest as _;

/// Formats a timestamp as Alibaba Cloud's ISO 8601 UTC form `YYYY-MM-DDThh:mm:ssZ`.
pub fn iso8601(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses `YYYY-MM-DDThh:mm:ssZ` (also accepts any RFC 3339 timestamp).
pub fn parse_iso8601(value: &str) -> Option<jiff::Timestamp> {
    value.parse().ok()
}

/// Base64 of HMAC-SHA1(key, data), the V2 RPC and ROA signature primitive.
pub fn hmac_sha1_base64(key: &[u8], data: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Lowercase hex of HMAC-SHA256(key, data), the V3 signature primitive.
pub fn hmac_sha256_hex(key: &[u8], data: &str) -> String {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Lowercase hex SHA-256 of `data` (`x-acs-content-sha256`, V3 canonical request hash).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Compares two signatures in time independent of where they first differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_vectors_from_credentials_go() {
        assert_eq!(
            hmac_sha1_base64(b"secret", "source"),
            "Jv4yi8SobFhg5t1C7nWLbhBSFZQ="
        );
        assert_eq!(
            hmac_sha1_base64(b"secret", "中文"),
            "CqCYIa39h9SSWuXnTz8F5hh9UPA="
        );
    }

    #[test]
    fn sha256_hex_vector() {
        assert_eq!(
            sha256_hex(b"test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn iso8601_round_trip() {
        let ts: jiff::Timestamp = "2024-01-02T03:04:05Z".parse().unwrap_or_default();
        assert_eq!(iso8601(ts), "2024-01-02T03:04:05Z");
        assert_eq!(parse_iso8601("2024-01-02T03:04:05Z"), Some(ts));
        assert!(parse_iso8601("yesterday").is_none());
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
