//! The credential exchange: credential source → Alibaba Cloud credentials → registry token.
//!
//! The `workerRole` source reads the node's RAM role from the ECS metadata service (as the
//! controller's `workerRole` source does). The `rrsa` source exchanges the pulling Pod's
//! ServiceAccount token the kubelet passed (KEP-4412) with the unsigned `AssumeRoleWithOIDC`
//! for the role a ServiceAccount annotation names. Either may be followed by the configured `assumeRole` hop. The pure parts (which role,
//! which session name, how long to cache) are functions of their inputs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::future::BoxFuture;

use super::ProviderError;
use super::config::{Config, DEFAULT_SESSION_NAME, Source};
use crate::cloud::client::CloudClient;
use crate::cloud::credentials::access_key::StaticSecrets;
use crate::cloud::credentials::assume_role::AssumeRoleSource;
use crate::cloud::credentials::{
    CredentialProvider, CredentialSource, Credentials, ProviderConfig, SourceConfig, build_provider,
};
use crate::cloud::error::CloudError;
use crate::cloud::registry::{Registry, RegistryToken, fetch_token};
use crate::cloud::sts::OidcRequest;
use crate::sensitive::Sensitive;

/// ServiceAccount annotation naming the RAM role to assume, as a full ARN.
pub const ROLE_ARN_ANNOTATION: &str = "acrcredentials.io/role-arn";
/// ACK RRSA's ServiceAccount annotation naming a role of the OIDC provider's account.
pub const RRSA_ROLE_NAME_ANNOTATION: &str = "pod-identity.alibabacloud.com/role-name";

/// The role a ServiceAccount's annotations name: `acrcredentials.io/role-arn`, or
/// `pod-identity.alibabacloud.com/role-name` in the OIDC provider's account. Both set must agree.
pub fn role_from_annotations(
    annotations: &BTreeMap<String, String>,
    account_id: &str,
) -> Result<String, ProviderError> {
    let bad = |m: String| ProviderError::Source(m);
    let by_arn = annotations.get(ROLE_ARN_ANNOTATION).map(|a| a.trim());
    if let Some(arn) = by_arn
        && !crate::api::validation::is_role_arn(arn)
    {
        return Err(bad(format!(
            "ServiceAccount annotation {ROLE_ARN_ANNOTATION} must be a RAM role ARN (acs:ram::<account>:role/<name>), got {arn:?}"
        )));
    }
    let by_name = match annotations.get(RRSA_ROLE_NAME_ANNOTATION).map(|n| n.trim()) {
        None => None,
        Some(name) => {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(bad(format!(
                    "ServiceAccount annotation {RRSA_ROLE_NAME_ANNOTATION} must be a RAM role name, got {name:?}"
                )));
            }
            Some(format!("acs:ram::{account_id}:role/{name}"))
        }
    };
    match (by_arn, by_name) {
        (Some(arn), Some(named)) if arn != named => Err(bad(format!(
            "ServiceAccount annotations {ROLE_ARN_ANNOTATION} ({arn}) and {RRSA_ROLE_NAME_ANNOTATION} ({named}) name different roles; keep one"
        ))),
        (Some(arn), _) => Ok(arn.to_string()),
        (None, Some(named)) => Ok(named),
        (None, None) => Err(bad(format!(
            "the pulling Pod's ServiceAccount has no {ROLE_ARN_ANNOTATION} or {RRSA_ROLE_NAME_ANNOTATION} annotation \
             (or the kubelet does not pass them: list both under tokenAttributes.optionalServiceAccountAnnotationKeys)"
        ))),
    }
}

/// `<namespace>.<name>` from the token's `sub` (`system:serviceaccount:<ns>:<name>`), as an STS
/// RoleSessionName so ActionTrail shows which workload pulled. The token is not verified here
/// (STS does that); the name is only a label.
pub fn session_name_from_token(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let sub = claims.get("sub")?.as_str()?;
    let rest = sub.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    // At most 64 bytes, cut on a character boundary (a non-ASCII name is then refused below).
    let session: String = format!("{ns}.{name}")
        .chars()
        .scan(0, |bytes, c| {
            *bytes += c.len_utf8();
            (*bytes <= 64).then_some(c)
        })
        .collect();
    crate::cloud::sts::validate_session_name(&session)
        .is_ok()
        .then_some(session)
}

/// The longest life of a registry token: one hour ("The temporary password is valid for 1
/// hour"; with STS credentials never beyond them).
pub const MAX_TOKEN_LIFE: Duration = Duration::from_secs(3600);

/// A token's remaining life as the cloud counts it: from `cloud_now` (the cloud's clock, from
/// the `Date` of its answer, which is rounded down to the second, so one second less) when
/// known, else from the node's clock; never more than [`MAX_TOKEN_LIFE`]. `None` when nothing
/// is left. A node clock running behind would otherwise make the kubelet cache a token past
/// its real expiry.
pub fn remaining_life(
    expires_at: jiff::Timestamp,
    node_now: jiff::Timestamp,
    cloud_now: Option<jiff::Timestamp>,
) -> Option<Duration> {
    let (now, slack) = match cloud_now {
        Some(t) => (t, Duration::from_secs(1)),
        None => (node_now, Duration::ZERO),
    };
    Duration::try_from(expires_at.duration_since(now))
        .ok()?
        .checked_sub(slack)
        .filter(|d| !d.is_zero())
        .map(|d| d.min(MAX_TOKEN_LIFE))
}

/// How long the kubelet may cache a token with `remaining` life: `remaining` minus the margin,
/// the margin being at most half of `remaining`; always strictly below `remaining` (zero,
/// meaning "do not cache", when less than two seconds are left).
pub fn cache_duration(remaining: Duration, margin: Duration) -> Duration {
    let whole = Duration::from_secs(remaining.as_secs());
    let margin = margin.min(whole / 2).max(Duration::from_secs(1));
    whole.saturating_sub(margin)
}

/// Exchanges an in-memory ServiceAccount token for STS credentials.
struct ServiceAccountToken {
    client: Arc<CloudClient>,
    request: OidcRequest,
}

impl CredentialSource for ServiceAccountToken {
    fn describe(&self) -> String {
        format!("rrsa:{}", self.request.role_arn)
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CloudError>> {
        Box::pin(async move {
            let mut assumed = self.client.assume_role_with_oidc(&self.request).await?;
            assumed.credentials.principal = self.describe();
            Ok(assumed.credentials)
        })
    }
}

/// The credential chain for one request.
pub fn provider_for(
    config: &Config,
    client: &Arc<CloudClient>,
    token: Option<&Sensitive<String>>,
    annotations: &BTreeMap<String, String>,
) -> Result<Arc<CredentialProvider>, ProviderError> {
    match (&config.source, token) {
        (Source::WorkerRole { role_name }, None) => Ok(build_provider(
            &ProviderConfig {
                source: SourceConfig::WorkerRole {
                    role_name: role_name.clone(),
                },
                assume_role: config.assume_role.clone(),
            },
            client.clone(),
            Arc::new(StaticSecrets::new()),
        )),
        (Source::WorkerRole { .. }, Some(_)) => Err(ProviderError::Source(
            "the kubelet sent a ServiceAccount token but this plugin is configured for the node's role (source.workerRole): \
             remove tokenAttributes from the kubelet's provider entry, or configure source.rrsa"
                .into(),
        )),
        (Source::Rrsa { .. }, None) => Err(ProviderError::Source(
            "no ServiceAccount token in the request: source.rrsa needs the kubelet's tokenAttributes \
             (Kubernetes 1.33+ with KubeletServiceAccountTokenForCredentialProviders) with serviceAccountTokenAudience \
             set to the OIDC provider's client id"
                .into(),
        )),
        (
            Source::Rrsa {
                oidc_provider_arn,
                account_id,
                duration,
                session_name,
            },
            Some(token),
        ) => {
            let role_arn = role_from_annotations(annotations, account_id)?;
            let session_name = session_name
                .clone()
                .or_else(|| session_name_from_token(token.expose()))
                .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string());
            let source = ServiceAccountToken {
                client: client.clone(),
                request: OidcRequest {
                    role_arn,
                    oidc_provider_arn: oidc_provider_arn.clone(),
                    oidc_token: token.clone(),
                    session_name,
                    duration: *duration,
                },
            };
            let clock = client.clock().clone();
            let base = Arc::new(CredentialProvider::new(Box::new(source), clock.clone()));
            Ok(match &config.assume_role {
                None => base,
                Some(hop) => Arc::new(CredentialProvider::new(
                    Box::new(AssumeRoleSource::new(client.clone(), base, hop.clone())),
                    clock,
                )),
            })
        }
    }
}

/// A registry token for `registry` with the request's credentials.
pub async fn registry_token(
    config: &Config,
    client: &Arc<CloudClient>,
    registry: &Registry,
    token: Option<&Sensitive<String>>,
    annotations: &BTreeMap<String, String>,
) -> Result<RegistryToken, ProviderError> {
    let provider = provider_for(config, client, token, annotations)?;
    fetch_token(client, &provider, registry)
        .await
        .map_err(|source| ProviderError::Cloud {
            principal: provider.describe(),
            registry: registry.key(),
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn role_from_either_annotation() {
        let arn = "acs:ram::123:role/puller";
        assert_eq!(
            role_from_annotations(&annotations(&[(ROLE_ARN_ANNOTATION, arn)]), "123").unwrap(),
            arn
        );
        assert_eq!(
            role_from_annotations(
                &annotations(&[(RRSA_ROLE_NAME_ANNOTATION, "puller")]),
                "123"
            )
            .unwrap(),
            arn
        );
        assert_eq!(
            role_from_annotations(
                &annotations(&[
                    (ROLE_ARN_ANNOTATION, arn),
                    (RRSA_ROLE_NAME_ANNOTATION, "puller")
                ]),
                "123"
            )
            .unwrap(),
            arn
        );
        for bad in [
            annotations(&[]),
            annotations(&[(ROLE_ARN_ANNOTATION, "puller")]),
            annotations(&[(RRSA_ROLE_NAME_ANNOTATION, "a/b")]),
            annotations(&[
                (ROLE_ARN_ANNOTATION, arn),
                (RRSA_ROLE_NAME_ANNOTATION, "other"),
            ]),
        ] {
            assert!(
                matches!(
                    role_from_annotations(&bad, "123"),
                    Err(ProviderError::Source(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn session_names_from_the_subject() {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = |sub: &str| format!("h.{}.s", b64(serde_json::json!({"sub": sub})));
        assert_eq!(
            session_name_from_token(&token("system:serviceaccount:team-a:puller")).as_deref(),
            Some("team-a.puller")
        );
        assert_eq!(session_name_from_token(&token("someone-else")), None);
        assert_eq!(session_name_from_token("not-a-jwt"), None);
        let long = format!(
            "system:serviceaccount:{}:{}",
            "n".repeat(63),
            "s".repeat(63)
        );
        assert_eq!(
            session_name_from_token(&token(&long)).map(|s| s.len()),
            Some(64)
        );
    }

    #[test]
    fn a_long_non_ascii_subject_is_refused_without_panicking() {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        // Byte 64 of "a" + "é" x 40 falls inside a two-byte character.
        let sub = format!("system:serviceaccount:a{}:puller", "é".repeat(40));
        let token = format!("h.{}.s", b64(serde_json::json!({ "sub": sub })));
        assert_eq!(session_name_from_token(&token), None);
    }

    #[test]
    fn remaining_life_counts_with_the_cloud_clock_and_is_capped() {
        let t = |s: &str| -> jiff::Timestamp { s.parse().unwrap() };
        let expires = t("2026-01-01T11:00:00Z");
        let cloud = Some(t("2026-01-01T10:00:00Z"));
        // The node runs 12 minutes behind: the cloud's clock decides.
        assert_eq!(
            remaining_life(expires, t("2026-01-01T09:48:00Z"), cloud),
            Some(Duration::from_secs(3599))
        );
        // No dated answer: the node's clock, capped at the longest token life.
        assert_eq!(
            remaining_life(expires, t("2026-01-01T09:48:00Z"), None),
            Some(MAX_TOKEN_LIFE)
        );
        assert_eq!(
            remaining_life(expires, t("2026-01-01T10:30:00Z"), None),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(
            remaining_life(expires, t("2026-01-01T09:00:00Z"), Some(expires)),
            None
        );
        assert_eq!(
            remaining_life(expires, t("2026-01-01T12:00:00Z"), None),
            None
        );
    }

    #[test]
    fn cache_duration_is_always_below_the_remaining_life() {
        let m = Duration::from_secs(600);
        assert_eq!(
            cache_duration(Duration::from_secs(3600), m),
            Duration::from_secs(3000)
        );
        assert_eq!(
            cache_duration(Duration::from_millis(3_599_900), m),
            Duration::from_secs(2999)
        );
        assert_eq!(
            cache_duration(Duration::from_secs(600), m),
            Duration::from_secs(300)
        );
        assert_eq!(
            cache_duration(Duration::from_secs(2), m),
            Duration::from_secs(1)
        );
        assert_eq!(
            cache_duration(Duration::from_millis(1500), m),
            Duration::ZERO
        );
        assert_eq!(cache_duration(Duration::ZERO, m), Duration::ZERO);
        for secs in 0..5000u64 {
            let remaining = Duration::from_millis(secs * 997);
            let d = cache_duration(remaining, m);
            assert!(
                d < remaining || remaining.is_zero(),
                "{remaining:?} -> {d:?}"
            );
        }
    }
}
