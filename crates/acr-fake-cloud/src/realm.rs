//! The Docker token realm of the fake's registries: what ACR's `dockerauth` endpoint is to its
//! registries. A registry configured with `auth: token` (realm `<base>auth`, issuer [`ISSUER`],
//! the service of one instance, [`certificate_pem`] as its root certificate bundle) sends
//! clients here; they trade a pull Secret's username and password for a short-lived registry
//! JWT.
//!
//! It accepts exactly the temporary username/password pairs the fake issued through
//! `GetAuthorizationToken` (Enterprise) and `GET /tokens` (Personal), and refuses them after
//! the token's expiry (the fake's clock), for another registry than the one they were issued
//! for, and while a fault on its API names is set (`registry:Token` for GET with Basic,
//! `registry:OAuthToken` for the OAuth2 password grant; a 400 fault on the latter makes
//! clients fall back to GET, as a realm without OAuth2 does).
//!
//! The service of an Enterprise instance's registry is its instance id; of an account's
//! Personal Edition registry `personal/<account id>` ([`service_of`]). JWTs are RS256 with the
//! signing key's libtrust key id as `kid`, and grant only `pull` on the repositories asked.

use std::sync::LazyLock;

use base64::Engine as _;
use rcgen::PublicKeyData as _;
use sha2::Digest as _;

use crate::state::Inner;

/// The registry JWT issuer (`auth.token.issuer` of a registry trusting this realm).
pub const ISSUER: &str = "acr-fake-cloud";
/// How long a registry JWT lives.
pub const JWT_SECONDS: i64 = 300;
/// The user name of every temporary registry credential.
pub const TEMP_USER: &str = "cr_temp_user";

/// A registry password the fake issued.
#[derive(Debug, Clone)]
pub struct RegistryCredential {
    pub expires: jiff::Timestamp,
    /// The registry's service ([`service_of`]).
    pub service: String,
    pub account: String,
}

/// The service name of the registry a token is for: the instance id, or
/// `personal/<account>` for Personal Edition.
pub fn service_of(instance: Option<&str>, account: &str) -> String {
    instance.map_or_else(|| format!("personal/{account}"), str::to_owned)
}

/// Why the realm refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no credentials")]
    Anonymous,
    #[error("unknown user name or password")]
    Unknown,
    #[error("the registry token expired")]
    Expired,
    #[error("the registry token is for another registry")]
    OtherRegistry,
    #[error("unsupported grant type")]
    Grant,
    #[error("the realm cannot sign: {0}")]
    Signing(String),
}

impl Refusal {
    /// The HTTP status the realm answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Grant => 400,
            Self::Signing(_) => 500,
            _ => 401,
        }
    }

    /// A short code for the fake's log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Anonymous => "Anonymous",
            Self::Unknown => "UnknownCredentials",
            Self::Expired => "Expired",
            Self::OtherRegistry => "OtherRegistry",
            Self::Grant => "UnsupportedGrant",
            Self::Signing(_) => "SigningFailed",
        }
    }
}

/// One `repository:NAME:ACTIONS` access entry of a JWT.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// What a request asks for: credentials, service and scopes.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub username: Option<String>,
    pub password: Option<String>,
    pub service: String,
    pub scopes: Vec<String>,
}

/// Checks the credentials against what the fake issued; returns the account they belong to.
pub fn authenticate(inner: &Inner, request: &TokenRequest) -> Result<String, Refusal> {
    let (Some(user), Some(password)) = (&request.username, &request.password) else {
        return Err(Refusal::Anonymous);
    };
    let issued = inner
        .registry_tokens
        .get(password)
        .filter(|_| user == TEMP_USER)
        .ok_or(Refusal::Unknown)?;
    if issued.expires <= inner.now() {
        return Err(Refusal::Expired);
    }
    if issued.service != request.service {
        return Err(Refusal::OtherRegistry);
    }
    Ok(issued.account.clone())
}

/// The access granted for `scopes`: `pull` on each repository asked for pull.
pub fn granted(scopes: &[String]) -> Vec<Access> {
    scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            (kind == "repository" && !name.is_empty()).then(|| Access {
                kind: kind.to_owned(),
                name: name.to_owned(),
                actions: actions
                    .split(',')
                    .filter(|a| *a == "pull")
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// The signing key and its self-signed certificate.
struct SigningKey {
    encoding: jsonwebtoken::EncodingKey,
    kid: String,
    certificate_pem: String,
}

/// The realm's signing key (a test key shipped with the fake: it guards only test registries).
const KEY_PEM: &str = include_str!("realm-signing-key.pem");

static SIGNING: LazyLock<Result<SigningKey, String>> = LazyLock::new(|| {
    let pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(KEY_PEM, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![ISSUER.to_owned()]).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ISSUER);
    let certificate = params.self_signed(&pair).map_err(|e| e.to_string())?;
    let encoding =
        jsonwebtoken::EncodingKey::from_rsa_pem(KEY_PEM.as_bytes()).map_err(|e| e.to_string())?;
    Ok(SigningKey {
        encoding,
        kid: libtrust_key_id(&pair.subject_public_key_info()),
        certificate_pem: certificate.pem(),
    })
});

fn signing() -> Result<&'static SigningKey, Refusal> {
    SIGNING.as_ref().map_err(|e| Refusal::Signing(e.clone()))
}

/// The PEM certificate of the signing key: a registry's `auth.token.rootcertbundle`.
pub fn certificate_pem() -> Result<String, Refusal> {
    signing().map(|k| k.certificate_pem.clone())
}

/// libtrust's key id: SHA-256 of the public key's DER (PKIX), first 30 bytes, base32, in
/// groups of four joined by `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = sha2::Sha256::digest(spki_der);
    let encoded = data_encoding::BASE32.encode(&digest[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    access: Vec<Access>,
}

/// A signed registry JWT for `account` with `access` on `service`.
pub fn sign(now: jiff::Timestamp, service: &str, access: Vec<Access>) -> Result<String, Refusal> {
    let key = signing()?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    let iat = now.as_second();
    let claims = Claims {
        iss: ISSUER,
        sub: TEMP_USER,
        aud: service,
        exp: iat + JWT_SECONDS,
        nbf: iat - 5,
        iat,
        jti: crate::state::random_token(24),
        access,
    };
    jsonwebtoken::encode(&header, &claims, &key.encoding)
        .map_err(|e| Refusal::Signing(e.to_string()))
}

/// Answers a token request: the JSON body of a 200, or why not. Credentials expire on the
/// fake's clock; the JWT's times are the host's, which the registry checks them against.
pub fn token(
    inner: &Inner,
    request: &TokenRequest,
) -> Result<(serde_json::Value, String), Refusal> {
    let account = authenticate(inner, request)?;
    let now = jiff::Timestamp::now();
    let jwt = sign(now, &request.service, granted(&request.scopes))?;
    Ok((
        serde_json::json!({
            "token": jwt,
            "access_token": jwt,
            "expires_in": JWT_SECONDS,
            "issued_at": now.to_string(),
        }),
        account,
    ))
}

/// The request's credentials from an `Authorization: Basic` header.
pub fn basic_credentials(header: Option<&str>) -> (Option<String>, Option<String>) {
    let decoded = header
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn issue(inner: &mut Inner, service: &str, seconds: i64) -> String {
        let password = format!("pw-{}", crate::state::random_token(8));
        let expires = inner
            .now()
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .unwrap();
        inner.registry_tokens.insert(
            password.clone(),
            RegistryCredential {
                expires,
                service: service.into(),
                account: "1".into(),
            },
        );
        password
    }

    fn request(user: &str, password: &str, service: &str) -> TokenRequest {
        TokenRequest {
            username: Some(user.into()),
            password: Some(password.into()),
            service: service.into(),
            scopes: vec!["repository:team/app:pull,push".into()],
        }
    }

    #[test]
    fn only_issued_unexpired_credentials_for_their_registry_pass() {
        let mut inner = Inner::default();
        let pw = issue(&mut inner, "cri-a", 60);
        assert_eq!(
            authenticate(&inner, &request(TEMP_USER, &pw, "cri-a")),
            Ok("1".into())
        );
        assert_eq!(
            authenticate(&inner, &request(TEMP_USER, &format!("{pw}x"), "cri-a")),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            authenticate(&inner, &request("someone", &pw, "cri-a")),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            authenticate(&inner, &request(TEMP_USER, &pw, "cri-b")),
            Err(Refusal::OtherRegistry)
        );
        assert_eq!(
            authenticate(&inner, &TokenRequest::default()),
            Err(Refusal::Anonymous)
        );
        inner.clock_offset = jiff::SignedDuration::from_secs(61);
        assert_eq!(
            authenticate(&inner, &request(TEMP_USER, &pw, "cri-a")),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn grants_pull_only_on_repositories() {
        let access = granted(&[
            "repository:team/app:pull,push".into(),
            "registry:catalog:*".into(),
            "repository:127.0.0.1:5000/x:push".into(),
        ]);
        assert_eq!(access.len(), 2);
        assert_eq!(access[0].name, "team/app");
        assert_eq!(access[0].actions, vec!["pull"]);
        assert_eq!(access[1].name, "127.0.0.1:5000/x");
        assert!(access[1].actions.is_empty());
    }

    #[test]
    fn key_id_is_libtrust_form() {
        let kid = libtrust_key_id(b"anything");
        assert_eq!(kid.len(), 12 * 4 + 11);
        assert_eq!(kid.split(':').count(), 12);
        assert!(
            kid.chars()
                .all(|c| c == ':' || c.is_ascii_uppercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn jwts_verify_with_the_certificate_key_and_carry_the_claims() {
        let mut inner = Inner::default();
        let pw = issue(&mut inner, "cri-a", 60);
        let (body, _) = token(&inner, &request(TEMP_USER, &pw, "cri-a")).unwrap();
        let jwt = body["token"].as_str().unwrap();
        assert_eq!(body["access_token"], body["token"]);
        let header = jsonwebtoken::decode_header(jwt).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        let key = signing().unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        // The certificate's public key is the signing key.
        let pem = certificate_pem().unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(
                pem.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        let pair =
            rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(KEY_PEM, &rcgen::PKCS_RSA_SHA256).unwrap();
        let spki = pair.subject_public_key_info();
        assert!(der.windows(spki.len()).any(|w| w == spki.as_slice()));
        let decoding = jsonwebtoken::DecodingKey::from_rsa_der(pair.der_bytes());
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["cri-a"]);
        validation.set_issuer(&[ISSUER]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(jwt, &decoding, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], TEMP_USER);
        assert_eq!(
            claims["access"],
            serde_json::json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}])
        );
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    }

    #[test]
    fn basic_header_is_parsed() {
        let h = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p:q")
        );
        assert_eq!(
            basic_credentials(Some(&h)),
            (Some("u".into()), Some("p:q".into()))
        );
        assert_eq!(basic_credentials(Some("Bearer x")), (None, None));
        assert_eq!(basic_credentials(None), (None, None));
    }
}
