//! The webhook's certificates: a CA and a serving certificate minted with `rcgen`, the state
//! kept in one Secret, and the rotation plan. Pure apart from key generation.
//!
//! Rotation never leaves the API server without a CA for the certificate being served. Each
//! rotation brings a new CA, in three steps at least `overlap` apart:
//! 1. [`Step::AddNextCa`] once the serving certificate is within `renew_before` of expiry: a
//!    new CA is minted and appended to the published bundle (`[old, new]`); still serving the
//!    old certificate.
//! 2. [`Step::Switch`]: a serving certificate signed by the new CA replaces the old one; the
//!    bundle still holds both, so connections made with either verify.
//! 3. [`Step::DropOldCa`]: the bundle becomes `[new]`.
//!
//! `overlap` is how long the API server and every replica get to pick up the previous step
//! (the bundle from the webhook configuration, the certificate from the Secret). It is counted
//! from the later of the step and the moment the webhook configuration was seen carrying the
//! bundle ([`CertState::published_at`]), so a bundle published late still gets its whole
//! overlap before a certificate it alone trusts is served.
//!
//! Certificates are valid from [`BACKDATE`] before they are minted, so an API server whose
//! clock lags the leader's still accepts them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

use crate::sensitive::Sensitive;

/// Secret data keys.
pub mod key {
    pub const CA_CERT: &str = "ca.crt";
    pub const CA_KEY: &str = "ca.key";
    pub const TLS_CERT: &str = "tls.crt";
    pub const TLS_KEY: &str = "tls.key";
    pub const NEXT_CA_CERT: &str = "next-ca.crt";
    pub const NEXT_CA_KEY: &str = "next-ca.key";
    /// The CAs the API server should trust, as published in `caBundle`.
    pub const BUNDLE: &str = "ca-bundle.crt";
}

/// Secret annotations.
pub mod annotation {
    /// When the serving certificate expires (RFC 3339).
    pub const NOT_AFTER: &str = "acrcredentials.io/webhook-cert-not-after";
    /// When the last rotation step was taken (RFC 3339).
    pub const STEP_AT: &str = "acrcredentials.io/webhook-cert-step-at";
    /// The names the serving certificate is for (comma-separated).
    pub const NAMES: &str = "acrcredentials.io/webhook-cert-names";
    /// When the webhook configuration was first seen carrying `ca-bundle.crt` (RFC 3339);
    /// absent until then.
    pub const PUBLISHED_AT: &str = "acrcredentials.io/webhook-ca-bundle-published-at";
}

/// How long before they are minted certificates become valid.
pub const BACKDATE: Duration = Duration::from_secs(3600);

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("minting a certificate: {0}")]
    Mint(#[source] rcgen::Error),
    #[error("the timings do not allow a safe rotation: {0}")]
    Timings(String),
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        CertError::Mint(e)
    }
}

/// How long certificates live and how rotation is paced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertTimings {
    /// Lifetime of a serving certificate (a CA lives twice as long).
    pub validity: Duration,
    /// Rotation starts this long before the serving certificate expires.
    pub renew_before: Duration,
    /// Least time between two rotation steps.
    pub overlap: Duration,
}

impl Default for CertTimings {
    fn default() -> Self {
        Self {
            validity: Duration::from_secs(365 * 24 * 3600),
            renew_before: Duration::from_secs(30 * 24 * 3600),
            overlap: Duration::from_secs(120),
        }
    }
}

impl CertTimings {
    /// validity > renew_before > 2 × overlap > 0: both steps fit before the old certificate
    /// expires.
    pub fn validate(&self) -> Result<(), CertError> {
        if self.overlap.is_zero() {
            return Err(CertError::Timings("the overlap must be positive".into()));
        }
        if self.renew_before <= self.overlap * 2 {
            return Err(CertError::Timings(format!(
                "renew-before ({:?}) must be longer than twice the overlap ({:?})",
                self.renew_before, self.overlap
            )));
        }
        if self.validity <= self.renew_before {
            return Err(CertError::Timings(format!(
                "the validity ({:?}) must be longer than renew-before ({:?})",
                self.validity, self.renew_before
            )));
        }
        Ok(())
    }
}

/// The names the serving certificate is for: DNS names and IP addresses.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServingNames {
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
}

impl ServingNames {
    /// The names as recorded in [`annotation::NAMES`].
    pub fn joined(&self) -> String {
        let ips = self.ip_addresses.iter().map(ToString::to_string);
        self.dns_names
            .iter()
            .cloned()
            .chain(ips)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub cert: String,
    pub key: Sensitive<String>,
}

/// What the Secret holds.
#[derive(Clone, Debug, PartialEq)]
pub struct CertState {
    pub ca: Pair,
    pub serving: Pair,
    pub next_ca: Option<Pair>,
    /// The CA certificates to publish, PEM, in order.
    pub bundle: Vec<String>,
    pub not_after: Timestamp,
    pub step_at: Timestamp,
    /// When the webhook configuration was first seen carrying `bundle`; `None` until then
    /// (and again after a step that changes the bundle).
    pub published_at: Option<Timestamp>,
    pub names: String,
}

/// The next thing rotation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet.
    Nothing,
    /// No usable state: mint a CA and a serving certificate.
    Create,
    /// The names changed: a new serving certificate from the same CA.
    Reissue,
    AddNextCa,
    Switch,
    DropOldCa,
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn before(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

/// The step due at `now`.
pub fn next_step(
    state: Option<&CertState>,
    now: Timestamp,
    timings: &CertTimings,
    serving_names: &ServingNames,
) -> Step {
    let Some(s) = state else { return Step::Create };
    if now >= s.not_after {
        // Expired (the controller was down through the whole window): start afresh.
        return Step::Create;
    }
    // Both the step (replicas load certificates from the Secret) and the publication (the API
    // server reads the configuration) need `overlap` to be picked up.
    let settled = s
        .published_at
        .is_some_and(|p| now >= after(p.max(s.step_at), timings.overlap));
    if s.next_ca.is_some() {
        return if settled { Step::Switch } else { Step::Nothing };
    }
    if s.bundle.len() > 1 {
        return if settled {
            Step::DropOldCa
        } else {
            Step::Nothing
        };
    }
    if now >= before(s.not_after, timings.renew_before) {
        return Step::AddNextCa;
    }
    if s.names != serving_names.joined() {
        return Step::Reissue;
    }
    Step::Nothing
}

fn to_time(t: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.as_second())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The CA's parameters: its subject carries a digest of its key, so every CA is told apart and
/// the same parameters can be rebuilt from the stored key to sign with it later.
fn ca_params(key: &KeyPair, now: Timestamp, lifetime: Duration) -> CertificateParams {
    let digest = hex::encode(&Sha256::digest(key.public_key_raw())[..8]);
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("acr-credential-controller webhook CA {digest}"),
    );
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = to_time(before(now, BACKDATE));
    params.not_after = to_time(after(now, lifetime));
    params
}

/// Mints a CA valid for twice the serving certificates' validity.
pub fn mint_ca(now: Timestamp, timings: &CertTimings) -> Result<Pair, CertError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(&key, now, timings.validity * 2).self_signed(&key)?;
    Ok(Pair {
        cert: cert.pem(),
        key: Sensitive::new(key.serialize_pem()),
    })
}

/// Mints a serving certificate for `serving_names`, signed by `ca`; returns it and its expiry.
pub fn mint_serving(
    ca: &Pair,
    now: Timestamp,
    timings: &CertTimings,
    serving_names: &ServingNames,
) -> Result<(Pair, Timestamp), CertError> {
    let ca_key = KeyPair::from_pem(ca.key.expose())?;
    let issuer = Issuer::new(ca_params(&ca_key, now, timings.validity * 2), ca_key);
    let mut params = CertificateParams::new(serving_names.dns_names.clone())?;
    params.subject_alt_names.extend(
        serving_names
            .ip_addresses
            .iter()
            .map(|ip| SanType::IpAddress(*ip)),
    );
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        serving_names
            .dns_names
            .first()
            .cloned()
            .unwrap_or_else(|| "acr-credential-controller webhook".into()),
    );
    params.distinguished_name = dn;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let not_after = after(now, timings.validity);
    params.not_before = to_time(before(now, BACKDATE));
    params.not_after = to_time(not_after);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    // The certificate's own expiry, to the second (what `to_time` wrote).
    let not_after = Timestamp::from_second(not_after.as_second()).unwrap_or(not_after);
    Ok((
        Pair {
            cert: cert.pem(),
            key: Sensitive::new(key.serialize_pem()),
        },
        not_after,
    ))
}

/// The state after taking `step` at `now` (`state` is `None` only for [`Step::Create`]). A step
/// that changes the bundle leaves it unpublished.
pub fn take_step(
    step: Step,
    state: Option<&CertState>,
    now: Timestamp,
    timings: &CertTimings,
    serving_names: &ServingNames,
) -> Result<Option<CertState>, CertError> {
    let fresh = |ca: Pair, bundle: Vec<String>| -> Result<CertState, CertError> {
        let (serving, not_after) = mint_serving(&ca, now, timings, serving_names)?;
        Ok(CertState {
            ca,
            serving,
            next_ca: None,
            bundle,
            not_after,
            step_at: now,
            published_at: None,
            names: serving_names.joined(),
        })
    };
    let next = match (step, state) {
        (Step::Nothing, _) => return Ok(None),
        (Step::Create, _) | (_, None) => {
            let ca = mint_ca(now, timings)?;
            let bundle = vec![ca.cert.clone()];
            fresh(ca, bundle)?
        }
        (Step::Reissue, Some(s)) => CertState {
            published_at: s.published_at,
            ..fresh(s.ca.clone(), s.bundle.clone())?
        },
        (Step::AddNextCa, Some(s)) => {
            let next = mint_ca(now, timings)?;
            let mut bundle = vec![s.ca.cert.clone()];
            bundle.push(next.cert.clone());
            CertState {
                bundle,
                next_ca: Some(next),
                step_at: now,
                published_at: None,
                ..s.clone()
            }
        }
        (Step::Switch, Some(s)) => match &s.next_ca {
            Some(next) => CertState {
                published_at: s.published_at,
                ..fresh(next.clone(), s.bundle.clone())?
            },
            None => return Ok(None),
        },
        (Step::DropOldCa, Some(s)) => CertState {
            bundle: vec![s.ca.cert.clone()],
            step_at: now,
            published_at: None,
            ..s.clone()
        },
    };
    Ok(Some(next))
}

/// The published bundle as one PEM document.
pub fn bundle_pem(state: &CertState) -> String {
    state.bundle.concat()
}

/// Reads the state from a Secret's data and annotations; `None` when anything is missing.
pub fn from_secret(
    data: &BTreeMap<String, ByteString>,
    annotations: &BTreeMap<String, String>,
) -> Option<CertState> {
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .filter(|s| !s.trim().is_empty())
    };
    let pair = |c: &str, k: &str| -> Option<Pair> {
        Some(Pair {
            cert: text(c)?,
            key: Sensitive::new(text(k)?),
        })
    };
    let time = |k: &str| annotations.get(k)?.parse::<Timestamp>().ok();
    let bundle = split_pem(&text(key::BUNDLE)?);
    if bundle.is_empty() {
        return None;
    }
    Some(CertState {
        ca: pair(key::CA_CERT, key::CA_KEY)?,
        serving: pair(key::TLS_CERT, key::TLS_KEY)?,
        next_ca: pair(key::NEXT_CA_CERT, key::NEXT_CA_KEY),
        bundle,
        not_after: time(annotation::NOT_AFTER)?,
        step_at: time(annotation::STEP_AT)?,
        published_at: time(annotation::PUBLISHED_AT),
        names: annotations
            .get(annotation::NAMES)
            .cloned()
            .unwrap_or_default(),
    })
}

/// The Secret data and annotations for `state` (an annotation of [`annotation`] missing from
/// them is to be removed from the Secret).
pub fn to_secret(state: &CertState) -> (BTreeMap<String, ByteString>, BTreeMap<String, String>) {
    let b = |s: &str| ByteString(s.as_bytes().to_vec());
    let mut data = BTreeMap::from([
        (key::CA_CERT.to_owned(), b(&state.ca.cert)),
        (key::CA_KEY.to_owned(), b(state.ca.key.expose())),
        (key::TLS_CERT.to_owned(), b(&state.serving.cert)),
        (key::TLS_KEY.to_owned(), b(state.serving.key.expose())),
        (key::BUNDLE.to_owned(), b(&bundle_pem(state))),
    ]);
    if let Some(next) = &state.next_ca {
        data.insert(key::NEXT_CA_CERT.to_owned(), b(&next.cert));
        data.insert(key::NEXT_CA_KEY.to_owned(), b(next.key.expose()));
    }
    let mut annotations = BTreeMap::from([
        (
            annotation::NOT_AFTER.to_owned(),
            state.not_after.to_string(),
        ),
        (annotation::STEP_AT.to_owned(), state.step_at.to_string()),
        (annotation::NAMES.to_owned(), state.names.clone()),
    ]);
    if let Some(p) = state.published_at {
        annotations.insert(annotation::PUBLISHED_AT.to_owned(), p.to_string());
    }
    (data, annotations)
}

/// The PEM blocks of a bundle, each with its END line.
pub fn split_pem(text: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    text.split_inclusive(END)
        .map(str::trim_start)
        .filter(|b| b.ends_with(END))
        .map(|b| format!("{b}\n"))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
