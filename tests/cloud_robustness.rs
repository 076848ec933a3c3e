//! Failure behaviour against the strict fake: throttling, 5xx, 4xx, timeouts, expired STS
//! credentials, wrong secrets, stale clocks, reused nonces, permissions, coalescing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cloud_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use acr_credential_controller::cloud::clock::{FixedNonce, OffsetClock};
use acr_credential_controller::cloud::credentials::access_key::{SecretRef, StaticSecrets};
use acr_credential_controller::cloud::credentials::{
    AssumeRoleConfig, Credentials, ProviderConfig, SourceConfig, build_provider,
};
use acr_credential_controller::cloud::registry::{self, Registry};
use acr_credential_controller::cloud::{CloudClient, SignatureStyle};
use acr_credential_controller::sensitive::Sensitive;
use acr_fake_cloud::OutageMode;
use acr_fake_cloud::scenario::Lifetimes;
use cloud_common::*;

const GAT: &str = "cr:GetAuthorizationToken";

fn key(id: &str, secret: &str) -> Credentials {
    Credentials {
        access_key_id: id.into(),
        access_key_secret: Sensitive::new(secret.into()),
        security_token: None,
        expires_at: None,
        principal: format!("accessKey:{id}"),
    }
}

async fn gat(
    client: &CloudClient,
    creds: &Credentials,
) -> Result<registry::RegistryToken, acr_credential_controller::cloud::CloudError> {
    client
        .enterprise_token(creds, "cn-hangzhou", INSTANCE)
        .await
}

#[tokio::test]
async fn throttling_is_honoured_with_retry_after() {
    let fake = fake().await;
    fake.handle().throttle(GAT, 400, Some(1));
    let client = client(&fake);
    let started = Instant::now();
    gat(&client, &key("LTAIci", "cisecret")).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(fake.handle().count(GAT), 2);
    // A retry-after longer than we wait inline is returned to the caller, with its value.
    fake.handle().throttle(GAT, 60_000, Some(1));
    let e = gat(&client, &key("LTAIci", "cisecret")).await.unwrap_err();
    assert_eq!(e.reason(), "Throttled");
    match e {
        acr_credential_controller::cloud::CloudError::Throttled { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(60)))
        }
        other => panic!("{other}"),
    }
    assert_eq!(fake.handle().count(GAT), 3);
}

#[tokio::test]
async fn server_errors_are_retried_within_bounds() {
    let fake = fake().await;
    let client = client(&fake);
    fake.handle().fail(GAT, 500, "InternalError", Some(2));
    gat(&client, &key("LTAIci", "cisecret")).await.unwrap();
    assert_eq!(fake.handle().count(GAT), 3, "two failures, then success");
    fake.handle().clear_log();
    fake.handle().fail(GAT, 503, "ServiceUnavailable", None);
    let e = gat(&client, &key("LTAIci", "cisecret")).await.unwrap_err();
    assert_eq!(
        (e.reason(), e.code()),
        ("CloudServerError", Some("ServiceUnavailable"))
    );
    assert!(e.is_retryable());
    assert_eq!(
        fake.handle().count(GAT),
        3,
        "max_attempts bounds the retries"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let fake = fake().await;
    let client = client(&fake);
    let cases = [
        (
            key("LTAIci", "cisecret"),
            "cri-missing",
            "NotFound",
            "INSTANCE_NOT_EXIST",
        ),
        (
            key("LTAInoperm", "nopermsecret"),
            INSTANCE,
            "PermissionDenied",
            "NoPrivilege",
        ),
        (
            key("LTAIdisabled", "disabledsecret"),
            INSTANCE,
            "AuthenticationFailed",
            "InvalidAccessKeyId.Inactive",
        ),
        (
            key("LTAIunknown", "x"),
            INSTANCE,
            "AuthenticationFailed",
            "InvalidAccessKeyId.NotFound",
        ),
    ];
    for (creds, instance, reason, code) in cases {
        fake.handle().clear_log();
        let e = client
            .enterprise_token(&creds, "cn-hangzhou", instance)
            .await
            .unwrap_err();
        assert_eq!((e.reason(), e.code()), (reason, Some(code)), "{e}");
        assert!(e.request_id().is_some());
        assert_eq!(fake.handle().count(GAT), 1, "{code} must not be retried");
    }
}

#[tokio::test]
async fn wrong_secret_surfaces_signature_does_not_match_without_leaking() {
    let fake = fake().await;
    for style in [SignatureStyle::V2, SignatureStyle::V3] {
        let client = client_with(&fake, style, http());
        let sts_like = Credentials {
            security_token: None,
            ..key("LTAIci", "the-wrong-secret")
        };
        let e = gat(&client, &sts_like).await.unwrap_err();
        assert_eq!(
            (e.reason(), e.code()),
            ("AuthenticationFailed", Some("SignatureDoesNotMatch")),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with("cr:GetAuthorizationToken failed: SignatureDoesNotMatch (HTTP 400)"),
            "{text}"
        );
        assert!(
            !text.contains("the-wrong-secret") && !text.to_lowercase().contains("string to sign"),
            "{text}"
        );
        assert!(e.hint().unwrap().contains("AccessKeySecret"));
    }
    // ROA too.
    let e = client(&fake)
        .personal_token(&key("LTAIci", "the-wrong-secret"), "cn-hangzhou")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("SignatureDoesNotMatch"));
}

#[tokio::test]
async fn secrets_never_reach_error_text_even_when_the_cloud_echoes_them() {
    let fake = fake().await;
    let issued = fake
        .handle()
        .issue_role_credentials(ACCOUNT, "acr-puller", "s", Duration::from_secs(900))
        .unwrap();
    let creds = Credentials {
        access_key_id: issued.access_key_id.clone(),
        access_key_secret: Sensitive::new("wrong".into()),
        security_token: Some(Sensitive::new(issued.security_token.clone())),
        expires_at: Some(issued.expires_at),
        principal: "t".into(),
    };
    for style in [SignatureStyle::V2, SignatureStyle::V3] {
        let e = gat(&client_with(&fake, style, http()), &creds)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("SignatureDoesNotMatch"));
        let all = format!("{e} {e:?}");
        assert!(
            !all.contains(&issued.security_token[..20]),
            "token leaked: {all}"
        );
    }
}

#[tokio::test]
async fn stale_clock_and_reused_nonce_are_rejected() {
    let fake = fake().await;
    let skewed = client_with(&fake, SignatureStyle::V2, http())
        .with_clock(Arc::new(OffsetClock(jiff::SignedDuration::from_mins(-20))));
    let e = gat(&skewed, &key("LTAIci", "cisecret")).await.unwrap_err();
    assert_eq!(e.code(), Some("InvalidTimeStamp.Expired"));
    assert!(e.hint().unwrap().contains("clock"));
    // Within 15 minutes is fine.
    let slightly = client_with(&fake, SignatureStyle::V3, http())
        .with_clock(Arc::new(OffsetClock(jiff::SignedDuration::from_mins(-10))));
    gat(&slightly, &key("LTAIci", "cisecret")).await.unwrap();
    for style in [SignatureStyle::V2, SignatureStyle::V3] {
        let fixed = client_with(&fake, style, http())
            .with_nonces(Arc::new(FixedNonce(format!("nonce-{style:?}"))));
        gat(&fixed, &key("LTAIci", "cisecret")).await.unwrap();
        let e = gat(&fixed, &key("LTAIci", "cisecret")).await.unwrap_err();
        assert_eq!(e.code(), Some("SignatureNonceUsed"));
    }
}

#[tokio::test]
async fn timeouts_and_outages() {
    let fake = fake().await;
    let mut http = http();
    http.request_timeout = Duration::from_millis(300);
    let client = client_with(&fake, SignatureStyle::V2, http);
    fake.handle()
        .outage(Duration::from_secs(3), OutageMode::Hang);
    let started = Instant::now();
    let e = gat(&client, &key("LTAIci", "cisecret")).await.unwrap_err();
    assert_eq!(e.reason(), "Timeout", "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
    fake.handle()
        .outage(Duration::from_secs(30), OutageMode::Unavailable);
    let e = gat(&client, &key("LTAIci", "cisecret")).await.unwrap_err();
    assert_eq!(
        (e.reason(), e.code()),
        ("CloudServerError", Some("ServiceUnavailable"))
    );
    fake.handle().clear_faults();
    gat(&client, &key("LTAIci", "cisecret")).await.unwrap();
    // Nothing listening: a network error.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let endpoints = acr_credential_controller::cloud::endpoints::Endpoints::new(
        "cn-hangzhou",
        Default::default(),
    )
    .with_all_overridden(&url::Url::parse(&format!("http://{closed}")).unwrap());
    let dead = CloudClient::new(acr_credential_controller::cloud::CloudConfig {
        endpoints,
        http: cloud_common::http(),
        signature: SignatureStyle::V2,
    })
    .unwrap();
    let e = gat(&dead, &key("LTAIci", "cisecret")).await.unwrap_err();
    assert_eq!(e.reason(), "NetworkError", "{e}");
}

fn ak_provider_config(assume: bool) -> ProviderConfig {
    ProviderConfig {
        source: SourceConfig::AccessKey(SecretRef {
            namespace: "ops".into(),
            name: "ak".into(),
            access_key_id_key: "id".into(),
            access_key_secret_key: "secret".into(),
        }),
        assume_role: assume.then(|| AssumeRoleConfig {
            role_arn: ROLE_ARN.into(),
            session_name: "acr-credential-controller".into(),
            external_id: None,
            duration: Duration::from_secs(3600),
        }),
    }
}

fn ak_secrets() -> Arc<StaticSecrets> {
    let s = StaticSecrets::new();
    s.insert("ops", "ak", &[("id", "LTAIci"), ("secret", "cisecret")]);
    Arc::new(s)
}

#[tokio::test]
async fn expired_sts_credentials_are_refreshed() {
    let fake = fake().await;
    fake.handle().set_lifetimes(Lifetimes {
        sts_seconds: Some(2),
        ..Lifetimes::default()
    });
    let client = client(&fake);
    let provider = build_provider(&ak_provider_config(true), client.clone(), ak_secrets());
    let registry = Registry::Enterprise {
        region: "cn-hangzhou".into(),
        instance_id: INSTANCE.into(),
    };
    let first = registry::fetch_token(&client, &provider, &registry)
        .await
        .unwrap();
    // The registry token never outlives the 2 s STS credentials behind it.
    assert!(first.expires_at <= jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    registry::fetch_token(&client, &provider, &registry)
        .await
        .unwrap();
    assert_eq!(
        fake.handle().count_ok("sts:AssumeRole"),
        2,
        "expired credentials were replaced"
    );

    // A client clock running behind believes the credentials are still fresh; the cloud's
    // InvalidSecurityToken.Expired makes the provider drop them and try once more.
    let slow = Arc::new(
        client_with(&fake, SignatureStyle::V2, http())
            .with_clock(Arc::new(OffsetClock(jiff::SignedDuration::from_mins(-10)))),
    );
    let provider = build_provider(&ak_provider_config(true), slow.clone(), ak_secrets());
    registry::fetch_token(&slow, &provider, &registry)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    fake.handle().clear_log();
    registry::fetch_token(&slow, &provider, &registry)
        .await
        .unwrap();
    let codes: Vec<Option<String>> = fake.handle().log().into_iter().map(|e| e.code).collect();
    assert_eq!(
        codes,
        [Some("InvalidSecurityToken.Expired".to_string()), None, None],
        "expired, AssumeRole, token"
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_assume_role() {
    let fake = fake().await;
    fake.handle()
        .latency("sts:AssumeRole", Duration::from_millis(200));
    let client = client(&fake);
    let provider = build_provider(&ak_provider_config(true), client.clone(), ak_secrets());
    let registry = Registry::Enterprise {
        region: "cn-hangzhou".into(),
        instance_id: INSTANCE.into(),
    };
    let results = futures::future::join_all(
        (0..10).map(|_| registry::fetch_token(&client, &provider, &registry)),
    )
    .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(fake.handle().count("sts:AssumeRole"), 1);
    assert_eq!(fake.handle().count(GAT), 10);
    let counts = fake.handle().counts();
    assert_eq!(
        counts.get(&("sts:AssumeRole".to_string(), "LTAIci".to_string())),
        Some(&1)
    );
}

#[tokio::test]
async fn assume_role_parameter_and_trust_errors() {
    let fake = fake().await;
    let client = client(&fake);
    let req = |arn: &str, secs: u64| acr_credential_controller::cloud::sts::AssumeRoleRequest {
        role_arn: arn.into(),
        session_name: "acr-credential-controller".into(),
        duration: Duration::from_secs(secs),
        external_id: None,
    };
    let ci = key("LTAIci", "cisecret");
    let e = client
        .assume_role(&ci, &req(ROLE_ARN, 43200))
        .await
        .unwrap_err();
    assert_eq!(
        (e.reason(), e.code()),
        ("InvalidParameter", Some("InvalidParameter.DurationSeconds"))
    );
    let e = client
        .assume_role(&ci, &req("acs:ram::1111111111111111:role/nope", 3600))
        .await
        .unwrap_err();
    assert_eq!(
        (e.reason(), e.code()),
        ("NotFound", Some("EntityNotExist.Role"))
    );
    let e = client
        .assume_role(&key("LTAIroot", "rootsecret"), &req(ROLE_ARN, 3600))
        .await
        .unwrap_err();
    assert_eq!(
        (e.reason(), e.code()),
        ("PermissionDenied", Some("NoPermission"))
    );
    let e = client
        .assume_role(&key("LTAInoperm", "nopermsecret"), &req(ROLE_ARN, 3600))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("NoPermission"));
    let ok = client.assume_role(&ci, &req(ROLE_ARN, 7200)).await.unwrap();
    assert!(ok.credentials.access_key_id.starts_with("STS."));
}

/// STS credentials whose every part is marked, so a leak of any of them shows.
fn canary_sts() -> (Credentials, &'static str, &'static str) {
    let token = "CAISCANARYsecuritytoken0123456789";
    let id = "STS.NCANARYKEYID42";
    let creds = Credentials {
        access_key_id: id.into(),
        access_key_secret: Sensitive::new("CANARYsecret".into()),
        security_token: Some(Sensitive::new(token.into())),
        expires_at: Some(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)),
        principal: "sts-test".into(),
    };
    (creds, token, id)
}

fn client_at(url: &str, style: SignatureStyle) -> CloudClient {
    let endpoints = acr_credential_controller::cloud::endpoints::Endpoints::new(
        "cn-hangzhou",
        Default::default(),
    )
    .with_all_overridden(&url::Url::parse(url).unwrap());
    CloudClient::new(acr_credential_controller::cloud::CloudConfig {
        endpoints,
        http: cloud_common::http(),
        signature: style,
    })
    .unwrap()
}

/// Connection refused, DNS failure, TLS failure and a reset in the middle of the answer: the
/// error (its text and its Debug form) names the API, the host and what failed, never the
/// signed request (SecurityToken, Signature, AccessKeyId), in every signature style.
#[tokio::test]
async fn network_failures_never_carry_the_signed_request() {
    use cloud_common::unreachable::{Failure, Unreachable};
    let (creds, token, id) = canary_sts();
    for endpoint in Unreachable::all().await {
        for style in [SignatureStyle::V2, SignatureStyle::V3] {
            let client = client_at(&endpoint.url, style);
            let e = gat(&client, &creds).await.unwrap_err();
            let text = format!("{e}\n{e:?}");
            let what = format!("{} ({style:?})", endpoint.failure.name());
            assert_eq!(e.reason(), "NetworkError", "{what}: {text}");
            for secret in [token, "CANARY", "Signature=", id] {
                assert!(!text.contains(secret), "{what}: {secret} leaked: {text}");
            }
            let e = client
                .personal_token(&creds, "cn-hangzhou")
                .await
                .unwrap_err();
            let text = format!("{e}\n{e:?}");
            assert!(
                !text.contains("CANARY") && !text.contains(id),
                "{what}, ROA: {text}"
            );
        }
        if endpoint.failure == Failure::Reset {
            let received = endpoint.received();
            assert!(
                received.iter().any(|r| r.contains(token)),
                "the reset server never read a request carrying the token: {received:?}"
            );
        }
    }
}

/// A cloud (or proxy) that echoes the request in an error body: the values of SecurityToken,
/// Signature, AccessKeyId and (for `AssumeRoleWithOIDC`) OIDCToken are scrubbed from the text.
#[tokio::test]
async fn echoed_signatures_key_ids_and_oidc_tokens_are_scrubbed() {
    use acr_fake_cloud::{Fault, FaultKind};
    let fake = fake().await;
    let echo = |api: &str| Fault {
        api: api.into(),
        caller: None,
        times: Some(1),
        kind: FaultKind::Error {
            status: 400,
            code: "InvalidParameter".into(),
            message: Some("bad request {request}".into()),
        },
    };
    let oidc = oidc_token(SUBJECT, "sts.aliyuncs.com", ISSUER, 3600);
    fake.handle().add_fault(echo("sts:AssumeRoleWithOIDC"));
    let e = client(&fake)
        .assume_role_with_oidc(&acr_credential_controller::cloud::sts::OidcRequest {
            role_arn: ROLE_ARN.into(),
            oidc_provider_arn: OIDC_PROVIDER_ARN.into(),
            oidc_token: Sensitive::new(oidc.clone()),
            session_name: "echo-test".into(),
            duration: Duration::from_secs(3600),
        })
        .await
        .unwrap_err();
    let text = format!("{e}\n{e:?}");
    assert!(
        text.contains("OIDCToken="),
        "the fake echoed nothing: {text}"
    );
    // Any sizeable piece of the token (its header, payload or signature).
    for part in oidc.split('.') {
        assert!(
            !text.contains(&part[..part.len().min(24)]),
            "OIDCToken leaked: {text}"
        );
    }

    let (creds, token, id) = canary_sts();
    fake.handle().add_fault(echo(GAT));
    let e = gat(&client_with(&fake, SignatureStyle::V2, http()), &creds)
        .await
        .unwrap_err();
    let text = format!("{e}\n{e:?}");
    assert!(
        text.contains("Signature="),
        "the fake echoed nothing: {text}"
    );
    assert!(!text.contains(token) && !text.contains(id), "{text}");
    let signature = text
        .split("Signature=")
        .nth(1)
        .and_then(|s| s.split(['&', ' ', '"', '\n']).next())
        .unwrap_or_default();
    assert_eq!(signature, "<redacted>", "{text}");
}
