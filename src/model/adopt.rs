//! After a restart (or on a new leader), the token a binding distributed before: read back from
//! one of its pull Secrets, so a restart costs no cloud call and no Secret rewrite, but only
//! when the binding's status (which tenants cannot write) proves the controller issued that
//! token for this binding. Anything else is left alone and the cloud is asked.
//!
//! Pure over the watch caches, reading each cached Secret in its compact form (a scan over
//! every Secret expands none); `binding::token` hands what it finds to the token manager.

use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::cached_secret::CachedSecret;
use super::resolve::Resolved;
use super::secret::{DOCKER_CONFIG_KEY, EXPIRES_ANNOTATION};
use super::selection::namespace_usable;
use crate::cloud::registry::RegistryToken;
use crate::sensitive::Sensitive;

/// The digest a binding's status records for the credential it distributes: SHA-256 (hex) over
/// the binding's UID, the username and the password, each followed by a NUL byte. Salted with
/// the UID, it tells nothing about tokens other bindings hold; it never reveals the password.
pub fn token_digest(binding_uid: &str, username: &str, password: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [binding_uid, username, password] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// The token this binding distributed before, read back from one of its pull Secrets (for
/// `TokenManager::adopt` after a restart). Pull Secrets are writable by anyone
/// who may edit Secrets in their namespace, so a Secret's auth is taken only when everything the
/// tenant cannot forge agrees:
///
/// - the binding's status (written only by the controller) records a digest, an issue time and
///   an expiry, and the auth of the binding's first domain matches that digest
///   ([`token_digest`]: the binding's own token, not one a shared Secret holds for another
///   binding, nor one a tenant planted);
/// - the Secret is labelled as ours and its owner references name the binding with its UID;
/// - the Secret is in a namespace the binding selects now.
///
/// The token's expiry is the one the status records (see [`precise_expiry`]), never later.
pub fn token_in_secrets(
    secrets: &Store<CachedSecret>,
    namespaces: &Store<Namespace>,
    resolved: &Resolved,
) -> Option<RegistryToken> {
    let recorded = resolved.previous_token.as_ref()?;
    let digest = recorded.digest.as_deref()?;
    let expires_at = recorded.expires_at?;
    recorded.issued_at?;
    let domains = resolved
        .domains
        .clone()
        .unwrap_or_else(|| resolved.previous_domains.clone());
    let first = domains.first()?;
    secrets.state().iter().find_map(|s| {
        if !s.is_ours() || !owned_by(s, resolved) || !selected_by(namespaces, s, resolved) {
            return None;
        }
        let (username, password) = auth_for(s, first)?;
        (token_digest(&resolved.uid, &username, &password) == digest).then(|| RegistryToken {
            username,
            password: Sensitive::new(password),
            expires_at: precise_expiry(s, expires_at),
            request_id: None,
        })
    })
}

/// The expiry to hold: the one the status records (`recorded`, whole seconds), or the Secret's
/// expiry annotation when it is that same time to the fraction of a second (so the Secret the
/// token is written back into does not change). A later annotation is never taken.
fn precise_expiry(secret: &CachedSecret, recorded: jiff::Timestamp) -> jiff::Timestamp {
    let annotated = secret
        .annotation(EXPIRES_ANNOTATION)
        .and_then(|v| v.parse::<jiff::Timestamp>().ok());
    match annotated {
        Some(at)
            if at >= recorded && at.duration_since(recorded) < SignedDuration::from_secs(1) =>
        {
            at
        }
        _ => recorded,
    }
}

/// Whether a Secret's owner references name the binding `resolved` with its UID.
fn owned_by(secret: &CachedSecret, resolved: &Resolved) -> bool {
    !resolved.uid.is_empty()
        && secret
            .owner_references()
            .iter()
            .any(|o| o.is_binding() && *o.name == *resolved.name && *o.uid == *resolved.uid)
}

/// Whether the Secret's namespace exists, is not going away, and `resolved` selects it.
fn selected_by(namespaces: &Store<Namespace>, secret: &CachedSecret, resolved: &Resolved) -> bool {
    let Some(ns) = secret.namespace() else {
        return false;
    };
    namespaces
        .get(&ObjectRef::new(&ns))
        .filter(|n| namespace_usable(n))
        .is_some_and(|n| resolved.selects(&ns, n.labels()))
}

/// The username and password of `domain` in a Secret's dockerconfigjson.
fn auth_for(secret: &CachedSecret, domain: &str) -> Option<(String, String)> {
    let doc: serde_json::Value = serde_json::from_slice(secret.data(DOCKER_CONFIG_KEY)?).ok()?;
    let auth = doc.get("auths")?.get(domain)?;
    Some((
        auth.get("username")?.as_str()?.to_owned(),
        auth.get("password")?.as_str()?.to_owned(),
    ))
}

#[cfg(test)]
mod tests;
