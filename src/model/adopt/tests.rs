#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::ObjectMeta;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;

use super::*;
use crate::api::{NamespaceSelection, ServiceAccountSelection};
use crate::cloud::credentials::{ProviderConfig, SourceConfig};
use crate::cloud::registry::Registry;
use crate::model::resolve::PreviousToken;
use crate::model::secret::{MANAGED_LABEL, owner_reference};
use crate::model::token::TokenRequest;

const DOMAIN: &str = "d.example.com";
const USER: &str = "cr_temp_user";
const ISSUED: &str = "2026-12-04T12:00:00Z";
const EXPIRES: &str = "2026-12-04T13:00:00Z";

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

/// Binding `name` (UID `uid-<name>`) selecting `namespaces` by name, whose status records the
/// token `password` (issued at ISSUED, expiring at EXPIRES).
fn binding(name: &str, namespaces: &[&str], password: &str) -> Resolved {
    let uid = format!("uid-{name}");
    Resolved {
        name: name.into(),
        uid: uid.clone(),
        request: TokenRequest {
            registry: Registry::Personal {
                region: "cn-hangzhou".into(),
            },
            provider: ProviderConfig {
                source: SourceConfig::WorkerRole { role_name: None },
                assume_role: None,
            },
            discover_domains: false,
            renew_before: Duration::from_secs(900),
        },
        domains: Some(vec![DOMAIN.into()]),
        namespaces: NamespaceSelection {
            names: Some(namespaces.iter().map(|n| (*n).to_owned()).collect()),
            ..NamespaceSelection::default()
        },
        allowed: None,
        service_accounts: ServiceAccountSelection::default(),
        renew_before: Duration::from_secs(900),
        previous_domains: Vec::new(),
        previous_token: Some(PreviousToken {
            issued_at: Some(ts(ISSUED)),
            expires_at: Some(ts(EXPIRES)),
            digest: Some(token_digest(&uid, USER, password)),
        }),
        inject_on_create: false,
        created_at: None,
    }
}

/// A labelled pull Secret in `ns` naming `owners` (name, UID) whose auth for DOMAIN holds
/// `password`, with the expiry annotation `expires`.
fn pull_secret(ns: &str, owners: &[(&str, &str)], password: &str, expires: &str) -> Secret {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    let doc = serde_json::json!({"auths": {DOMAIN: {"username": USER, "password": password, "auth": auth}}});
    Secret {
        metadata: ObjectMeta {
            name: Some("acr-credentials".into()),
            namespace: Some(ns.into()),
            labels: Some(BTreeMap::from([(MANAGED_LABEL.into(), "true".into())])),
            annotations: Some(BTreeMap::from([(
                EXPIRES_ANNOTATION.into(),
                expires.into(),
            )])),
            owner_references: Some(
                owners
                    .iter()
                    .map(|(name, uid)| owner_reference(name, uid))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            DOCKER_CONFIG_KEY.into(),
            ByteString(serde_json::to_vec(&doc).unwrap()),
        )])),
        ..Secret::default()
    }
}

fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Fresh caches holding `secrets` and the namespaces `namespaces`.
fn stores(secrets: &[Secret], namespaces: &[&str]) -> (Store<CachedSecret>, Store<Namespace>) {
    let (secret_store, mut secret_writer) = reflector::store::<CachedSecret>();
    for s in secrets {
        secret_writer.apply_watcher_event(&Event::Apply(s.clone().into()));
    }
    let (ns_store, mut ns_writer) = reflector::store::<Namespace>();
    for n in namespaces {
        ns_writer.apply_watcher_event(&Event::Apply(namespace(n)));
    }
    (secret_store, ns_store)
}

fn adopted_password(secrets: &[Secret], namespaces: &[&str], b: &Resolved) -> Option<String> {
    let (s, n) = stores(secrets, namespaces);
    token_in_secrets(&s, &n, b).map(|t| t.password.expose().clone())
}

#[test]
fn a_shared_secret_holding_another_bindings_token_is_never_adopted() {
    // Bindings a and b share domain d. In the namespace both select, the Secret holds a's token
    // (the first name wins a shared domain) and names both as owners; the namespace only b
    // selects holds b's own token. Cache order is arbitrary: try many fresh caches.
    for i in 0..64 {
        let shared = format!("shared-{i}");
        let only_b = format!("only-b-{i}");
        let x = pull_secret(&shared, &[("a", "uid-a"), ("b", "uid-b")], "pw-a", EXPIRES);
        let y = pull_secret(&only_b, &[("b", "uid-b")], "pw-b", EXPIRES);
        let b = binding("b", &[&shared, &only_b], "pw-b");
        let got = adopted_password(&[x, y], &[&shared, &only_b], &b);
        assert_ne!(
            got.as_deref(),
            Some("pw-a"),
            "binding b adopted binding a's token (iteration {i})"
        );
        assert_eq!(got.as_deref(), Some("pw-b"), "iteration {i}");
    }
}

#[test]
fn a_forged_long_lived_token_is_not_adopted() {
    let forged_expiry = "2100-01-01T00:00:00Z";
    let owners = [("b", "uid-b")];
    // In a namespace the binding does not select, even with the recorded token.
    let b = binding("b", &["team-a"], "pw-b");
    let elsewhere = pull_secret("elsewhere", &owners, "pw-b", forged_expiry);
    assert_eq!(
        adopted_password(&[elsewhere], &["team-a", "elsewhere"], &b),
        None,
        "adopted from a namespace the binding does not select"
    );
    // In a selected namespace, a password whose digest the status does not record.
    let planted = pull_secret("team-a", &owners, "forged", forged_expiry);
    assert_eq!(
        adopted_password(&[planted], &["team-a"], &b),
        None,
        "adopted a password the binding's status does not record"
    );
    // The owner reference names the binding but not its UID (a binding of that name before).
    let stale_owner = pull_secret("team-a", &[("b", "uid-old")], "pw-b", EXPIRES);
    assert_eq!(
        adopted_password(&[stale_owner], &["team-a"], &b),
        None,
        "adopted from a Secret whose owner reference carries another UID"
    );
}

#[test]
fn the_recorded_token_is_adopted_with_the_recorded_expiry_not_the_annotation() {
    let b = binding("b", &["team-a"], "pw-b");
    let ours = pull_secret("team-a", &[("b", "uid-b")], "pw-b", "2100-01-01T00:00:00Z");
    let (s, n) = stores(&[ours], &["team-a"]);
    let token = token_in_secrets(&s, &n, &b).unwrap();
    assert_eq!(token.password.expose(), "pw-b");
    assert_eq!(token.username, USER);
    assert_eq!(token.expires_at, ts(EXPIRES));
    // The status keeps whole seconds: the annotation's fraction of that second is kept (the
    // Secret written back stays the same), anything further is not.
    let precise = "2026-12-04T13:00:00.75Z";
    let ours = pull_secret("team-a", &[("b", "uid-b")], "pw-b", precise);
    let (s, n) = stores(&[ours], &["team-a"]);
    assert_eq!(
        token_in_secrets(&s, &n, &b).unwrap().expires_at,
        ts(precise)
    );
    let later = pull_secret("team-a", &[("b", "uid-b")], "pw-b", "2026-12-04T13:00:01Z");
    let (s, n) = stores(&[later], &["team-a"]);
    assert_eq!(
        token_in_secrets(&s, &n, &b).unwrap().expires_at,
        ts(EXPIRES)
    );
}

#[test]
fn nothing_is_adopted_without_a_recorded_digest() {
    // A status written before digests were recorded: ask the cloud instead.
    let mut b = binding("b", &["team-a"], "pw-b");
    if let Some(t) = b.previous_token.as_mut() {
        t.digest = None;
    }
    let ours = pull_secret("team-a", &[("b", "uid-b")], "pw-b", EXPIRES);
    assert_eq!(adopted_password(&[ours], &["team-a"], &b), None);
}

#[test]
fn the_digest_depends_on_binding_user_and_password_and_hides_them() {
    let d = token_digest("uid-b", USER, "pw-b");
    assert_eq!(d.len(), 64);
    assert!(d.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(!d.contains("pw-b"));
    assert_ne!(d, token_digest("uid-a", USER, "pw-b"));
    assert_ne!(d, token_digest("uid-b", USER, "pw-c"));
    assert_ne!(d, token_digest("uid-b", "other", "pw-b"));
    // No ambiguity between the parts.
    assert_ne!(token_digest("u", "ab", "c"), token_digest("u", "a", "bc"));
}
