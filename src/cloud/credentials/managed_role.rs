//! `managedRole`: the ACK managed add-on token file (legacy tokenMode).
//!
//! ACK writes a JSON file (conventionally `/var/addon/token-config`) with the keys
//! `access.key.id`, `access.key.secret`, `security.token`, `expiration` and `keyring`; each
//! credential value is `base64(IV[16] || AES-CBC(key = keyring bytes, PKCS#7 plaintext))`.
//! When ACK could not assume the role, the file carries `error: {roleName, code, message}`
//! instead, which is reported as is. The file is re-read whenever the provider decides the
//! cached credentials are near expiry; ACK rewrites it before then.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use futures::future::BoxFuture;

use super::{CredentialSource, Credentials};
use crate::cloud::clock::Clock;
use crate::cloud::error::CloudError;
use crate::cloud::sign::parse_iso8601;
use crate::sensitive::Sensitive;

const KIND: &str = "managedRole";

fn fail(message: impl Into<String>) -> CloudError {
    CloudError::CredentialSource {
        source_kind: KIND,
        message: message.into(),
    }
}

/// Decrypts one value of the token file.
pub fn decrypt_value(keyring: &[u8], value: &str) -> Result<String, CloudError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| fail("a credential value is not base64"))?;
    if raw.len() < 32 || raw.len() % 16 != 0 {
        return Err(fail(
            "a credential value has an impossible length for AES-CBC",
        ));
    }
    let (iv, data) = raw.split_at(16);
    let mut buf = data.to_vec();
    let plain = match keyring.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(keyring, iv)
            .map_err(|_| fail("bad keyring"))?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map(<[u8]>::to_vec),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(keyring, iv)
            .map_err(|_| fail("bad keyring"))?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map(<[u8]>::to_vec),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(keyring, iv)
            .map_err(|_| fail("bad keyring"))?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map(<[u8]>::to_vec),
        n => {
            return Err(fail(format!(
                "keyring is {n} bytes; AES needs 16, 24 or 32"
            )));
        }
    }
    .map_err(|_| fail("decryption failed (wrong keyring or corrupt value)"))?;
    String::from_utf8(plain).map_err(|_| fail("a decrypted value is not UTF-8"))
}

/// Encrypts one value the way ACK does (for tests and the sandbox's token-file writer).
pub fn encrypt_value(keyring: &[u8], iv: [u8; 16], plaintext: &str) -> Result<String, CloudError> {
    let msg = plaintext.as_bytes();
    let mut buf = vec![0u8; msg.len() + 16];
    buf[..msg.len()].copy_from_slice(msg);
    let ct = match keyring.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(keyring, &iv)
            .map_err(|_| fail("bad keyring"))?
            .encrypt_padded_mut::<Pkcs7>(&mut buf, msg.len())
            .map(<[u8]>::to_vec),
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(keyring, &iv)
            .map_err(|_| fail("bad keyring"))?
            .encrypt_padded_mut::<Pkcs7>(&mut buf, msg.len())
            .map(<[u8]>::to_vec),
        32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(keyring, &iv)
            .map_err(|_| fail("bad keyring"))?
            .encrypt_padded_mut::<Pkcs7>(&mut buf, msg.len())
            .map(<[u8]>::to_vec),
        n => {
            return Err(fail(format!(
                "keyring is {n} bytes; AES needs 16, 24 or 32"
            )));
        }
    }
    .map_err(|_| fail("encryption failed"))?;
    let mut out = iv.to_vec();
    out.extend_from_slice(&ct);
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// Parses and decrypts the token file's content.
pub fn parse_token_file(content: &[u8]) -> Result<Credentials, CloudError> {
    let json: serde_json::Value = serde_json::from_slice(content)
        .map_err(|e| fail(format!("token file is not JSON: {e}")))?;
    if let Some(err) = json.get("error").filter(|e| !e.is_null()) {
        let get = |k: &str| err.get(k).and_then(|v| v.as_str()).unwrap_or("");
        return Err(fail(format!(
            "ACK could not assume role {:?}: {}: {}",
            get("roleName"),
            get("code"),
            get("message")
        )));
    }
    let field = |k: &str| {
        json.get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| fail(format!("token file has no {k:?}")))
    };
    let keyring = field("keyring")?.as_bytes();
    let expiration = field("expiration")?;
    let expires_at =
        parse_iso8601(expiration).ok_or_else(|| fail("expiration is not an ISO 8601 time"))?;
    let access_key_id = decrypt_value(keyring, field("access.key.id")?)?;
    Ok(Credentials {
        principal: format!("{KIND}:{access_key_id}"),
        access_key_id,
        access_key_secret: Sensitive::new(decrypt_value(keyring, field("access.key.secret")?)?),
        security_token: Some(Sensitive::new(decrypt_value(
            keyring,
            field("security.token")?,
        )?)),
        expires_at: Some(expires_at),
    })
}

/// Reads the ACK add-on token file.
pub struct ManagedRoleSource {
    path: PathBuf,
    clock: Arc<dyn Clock>,
}

impl ManagedRoleSource {
    pub fn new(path: PathBuf, clock: Arc<dyn Clock>) -> Self {
        Self { path, clock }
    }
}

impl CredentialSource for ManagedRoleSource {
    fn describe(&self) -> String {
        format!("{KIND}:{}", self.path.display())
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CloudError>> {
        Box::pin(async move {
            let content = tokio::fs::read(&self.path)
                .await
                .map_err(|e| fail(format!("cannot read {}: {e}", self.path.display())))?;
            let creds = parse_token_file(&content)?;
            if let Some(exp) = creds.expires_at
                && exp <= self.clock.now()
            {
                return Err(fail(format!(
                    "token file expired at {exp}; ACK has not renewed it"
                )));
            }
            Ok(creds)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYRING: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn file(expiration: &str) -> String {
        let e = |v: &str| encrypt_value(KEYRING, [7u8; 16], v).unwrap();
        serde_json::json!({
            "access.key.id": e("STS.managed"),
            "access.key.secret": e("managed-secret"),
            "security.token": e("managed-token"),
            "expiration": expiration,
            "keyring": std::str::from_utf8(KEYRING).unwrap(),
        })
        .to_string()
    }

    #[test]
    fn round_trip_for_every_key_size() {
        for key in [&KEYRING[..16], &KEYRING[..24], KEYRING] {
            for text in [
                "",
                "x",
                "exactly16bytes!!",
                "CAIS+long token value with = and / chars",
            ] {
                let enc = encrypt_value(key, [1u8; 16], text).unwrap();
                assert_eq!(decrypt_value(key, &enc).unwrap(), text);
            }
        }
    }

    #[test]
    fn parses_a_token_file() {
        let c = parse_token_file(file("2030-01-01T00:00:00Z").as_bytes()).unwrap();
        assert_eq!(c.access_key_id, "STS.managed");
        assert_eq!(c.access_key_secret.expose(), "managed-secret");
        assert_eq!(c.security_token.unwrap().expose(), "managed-token");
        assert_eq!(c.principal, "managedRole:STS.managed");
    }

    #[test]
    fn reports_the_error_field() {
        let content = r#"{"error":{"roleName":"AliyunCSManagedAcrRole","code":"EntityNotExist.Role","message":"The role not exists"}}"#;
        let e = parse_token_file(content.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("EntityNotExist.Role"), "{e}");
        assert!(e.to_string().contains("AliyunCSManagedAcrRole"));
    }

    #[test]
    fn wrong_keyring_or_bad_padding_is_an_error_not_a_panic() {
        let enc = encrypt_value(KEYRING, [3u8; 16], "secret").unwrap();
        assert!(decrypt_value(b"ffffffffffffffffffffffffffffffff", &enc).is_err());
        assert!(decrypt_value(KEYRING, "AAAA").is_err());
        assert!(decrypt_value(b"short", &enc).is_err());
        assert!(decrypt_value(KEYRING, "not base64 !!").is_err());
    }
}
