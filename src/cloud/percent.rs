//! Percent-encoding as Alibaba Cloud's signature schemes define it.
//!
//! Every byte of the UTF-8 form is written as `%XY` (uppercase hex) except the RFC 3986
//! unreserved set `A–Z a–z 0–9 - _ . ~`; a space becomes `%20`, never `+`. RPC V2 and V3
//! canonicalisation both rely on this exact form, so it lives in one place.

use std::fmt::Write as _;

/// Encodes `input` with Alibaba Cloud's percent-encoding (RFC 3986 unreserved set kept).
pub fn encode(input: &str) -> String {
    encode_keeping(input, b"")
}

/// Encodes a URL path, keeping `/` so that segments stay separate.
pub fn encode_path(input: &str) -> String {
    encode_keeping(input, b"/")
}

fn encode_keeping(input: &str, extra: &[u8]) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 2);
    for &byte in input.as_bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || extra.contains(&byte)
        {
            out.push(char::from(byte));
        } else {
            // Writing into a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_doc_encoding_check() {
        assert_eq!(encode("a b*c~d+e/f中"), "a%20b%2Ac~d%2Be%2Ff%E4%B8%AD");
    }

    #[test]
    fn unreserved_characters_pass_through() {
        assert_eq!(encode("AZaz09-_.~"), "AZaz09-_.~");
        assert_eq!(encode("2024-01-02T03:04:05Z"), "2024-01-02T03%3A04%3A05Z");
        assert_eq!(encode(""), "");
    }

    #[test]
    fn path_keeps_slashes() {
        assert_eq!(encode_path("/tokens"), "/tokens");
        assert_eq!(encode_path("/a b/c"), "/a%20b/c");
    }
}
