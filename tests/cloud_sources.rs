//! A registry token through every credential source, with and without an assume-role hop,
//! for both editions and both RPC signature styles, against the strict fake cloud.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cloud_common;

use std::sync::Arc;
use std::time::Duration;

use acr_credential_controller::cloud::SignatureStyle;
use acr_credential_controller::cloud::credentials::access_key::{SecretRef, StaticSecrets};
use acr_credential_controller::cloud::credentials::managed_role::encrypt_value;
use acr_credential_controller::cloud::credentials::{
    AssumeRoleConfig, ProviderConfig, SourceConfig, build_provider,
};
use acr_credential_controller::cloud::registry::{self, Registry};
use cloud_common::*;

fn secrets() -> Arc<StaticSecrets> {
    let s = StaticSecrets::new();
    s.insert(
        "ops",
        "ak",
        &[("AccessKeyId", "LTAIci"), ("AccessKeySecret", "cisecret")],
    );
    Arc::new(s)
}

fn access_key() -> SourceConfig {
    SourceConfig::AccessKey(SecretRef {
        namespace: "ops".into(),
        name: "ak".into(),
        access_key_id_key: "AccessKeyId".into(),
        access_key_secret_key: "AccessKeySecret".into(),
    })
}

fn enterprise() -> Registry {
    Registry::Enterprise {
        region: "cn-hangzhou".into(),
        instance_id: INSTANCE.into(),
    }
}

fn hop(role_arn: &str, external_id: Option<&str>) -> AssumeRoleConfig {
    AssumeRoleConfig {
        role_arn: role_arn.into(),
        session_name: "acr-credential-controller".into(),
        external_id: external_id.map(str::to_string),
        duration: Duration::from_secs(3600),
    }
}

fn rrsa_source(token_file: std::path::PathBuf) -> SourceConfig {
    SourceConfig::Rrsa {
        role_arn: ROLE_ARN.into(),
        oidc_provider_arn: OIDC_PROVIDER_ARN.into(),
        token_file,
        session_name: "acr-credential-controller".into(),
    }
}

async fn token_via(
    source: SourceConfig,
    assume: Option<AssumeRoleConfig>,
    registry: Registry,
    style: SignatureStyle,
) -> (String, registry::RegistryToken) {
    let fake = fake().await;
    let client = Arc::new(client_with(&fake, style, http()));
    let provider = build_provider(
        &ProviderConfig {
            source,
            assume_role: assume,
        },
        client.clone(),
        secrets(),
    );
    let token = registry::fetch_token(&client, &provider, &registry)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let handle = fake.handle();
    assert!(
        handle.registry_token_valid(token.password.expose()),
        "the fake issued this token"
    );
    assert_eq!(token.username, "cr_temp_user");
    let principal = provider.credentials().await.unwrap().principal;
    (principal, token)
}

#[tokio::test]
async fn access_key_enterprise_and_personal_with_both_signatures() {
    for style in [SignatureStyle::V2, SignatureStyle::V3] {
        let (principal, token) = token_via(access_key(), None, enterprise(), style).await;
        assert_eq!(principal, "accessKey:LTAIci");
        let left = token
            .expires_at
            .duration_since(jiff::Timestamp::now())
            .as_secs();
        assert!(
            (3500..=3600).contains(&left),
            "EE token lives 1 h, got {left}s"
        );
        let (_, personal) = token_via(
            access_key(),
            None,
            Registry::Personal {
                region: "cn-hangzhou".into(),
            },
            style,
        )
        .await;
        assert!(personal.expires_at > jiff::Timestamp::now());
    }
}

#[tokio::test]
async fn access_key_discovers_domains() {
    let fake = fake().await;
    let client = client(&fake);
    let provider = build_provider(
        &ProviderConfig {
            source: access_key(),
            assume_role: None,
        },
        client.clone(),
        secrets(),
    );
    let domains = registry::discover_domains(&client, &provider, "cn-hangzhou", INSTANCE)
        .await
        .unwrap();
    assert_eq!(
        domains,
        [
            "images.example.com",
            "myreg-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
            "myreg-registry.cn-hangzhou.cr.aliyuncs.com"
        ]
    );
}

#[tokio::test]
async fn access_key_with_cross_account_assume_role_and_external_id() {
    let other = Registry::Enterprise {
        region: "cn-shanghai".into(),
        instance_id: OTHER_INSTANCE.into(),
    };
    for style in [SignatureStyle::V2, SignatureStyle::V3] {
        let (principal, token) = token_via(
            access_key(),
            Some(hop(CROSS_ROLE_ARN, Some("ext-123"))),
            other.clone(),
            style,
        )
        .await;
        assert_eq!(
            principal,
            format!("accessKey:LTAIci+assumeRole:{CROSS_ROLE_ARN}")
        );
        assert!(token.expires_at > jiff::Timestamp::now());
    }
    // Domain discovery through the hop, in the other account.
    let fake = fake().await;
    let client = client(&fake);
    let provider = build_provider(
        &ProviderConfig {
            source: access_key(),
            assume_role: Some(hop(CROSS_ROLE_ARN, Some("ext-123"))),
        },
        client.clone(),
        secrets(),
    );
    let domains = registry::discover_domains(&client, &provider, "cn-shanghai", OTHER_INSTANCE)
        .await
        .unwrap();
    assert_eq!(
        domains,
        [
            "other-registry-vpc.cn-shanghai.cr.aliyuncs.com",
            "other-registry.cn-shanghai.cr.aliyuncs.com"
        ]
    );
}

#[tokio::test]
async fn assume_role_with_wrong_external_id_is_refused() {
    let fake = fake().await;
    let client = client(&fake);
    let provider = build_provider(
        &ProviderConfig {
            source: access_key(),
            assume_role: Some(hop(CROSS_ROLE_ARN, Some("wrong"))),
        },
        client.clone(),
        secrets(),
    );
    let e = registry::fetch_token(&client, &provider, &enterprise())
        .await
        .unwrap_err();
    assert_eq!(
        (e.reason(), e.code()),
        ("PermissionDenied", Some("NoPermission"))
    );
}

#[tokio::test]
async fn worker_role_via_hardened_metadata() {
    for style in [SignatureStyle::V2, SignatureStyle::V3] {
        let (principal, token) = token_via(
            SourceConfig::WorkerRole { role_name: None },
            None,
            enterprise(),
            style,
        )
        .await;
        assert_eq!(principal, "workerRole:node-role");
        assert!(token.expires_at > jiff::Timestamp::now());
    }
    let (principal, _) = token_via(
        SourceConfig::WorkerRole {
            role_name: Some("node-role".into()),
        },
        Some(hop(ROLE_ARN, None)),
        enterprise(),
        SignatureStyle::V2,
    )
    .await;
    assert_eq!(
        principal,
        format!("workerRole:node-role+assumeRole:{ROLE_ARN}")
    );
}

/// A role name the metadata service does not know answers 404: the hint says what that means
/// (no RAM role attached to the instance, or another name), not "check the instance id".
#[tokio::test]
async fn metadata_404_names_the_missing_ram_role() {
    let fake = fake().await;
    let client = Arc::new(client_with(&fake, SignatureStyle::V2, http()));
    let provider = build_provider(
        &ProviderConfig {
            source: SourceConfig::WorkerRole {
                role_name: Some("not-attached".into()),
            },
            assume_role: None,
        },
        client.clone(),
        secrets(),
    );
    let e = registry::fetch_token(&client, &provider, &enterprise())
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "NotFound", "{e}");
    let hint = e.hint().unwrap_or_default();
    assert!(
        hint.contains("RAM role") && !hint.contains("instance id"),
        "{e}: hint {hint:?}"
    );
}

#[tokio::test]
async fn rrsa_reads_the_token_file_and_assumes_the_role() {
    let file = temp_file(
        "token",
        &oidc_token(SUBJECT, "sts.aliyuncs.com", ISSUER, 3600),
    );
    for style in [SignatureStyle::V2, SignatureStyle::V3] {
        let (principal, _) = token_via(rrsa_source(file.clone()), None, enterprise(), style).await;
        assert_eq!(principal, format!("rrsa:{ROLE_ARN}"));
    }
    let (principal, _) = token_via(
        rrsa_source(file.clone()),
        Some(hop(CROSS_ROLE_ARN, Some("ext-123"))),
        Registry::Enterprise {
            region: "cn-shanghai".into(),
            instance_id: OTHER_INSTANCE.into(),
        },
        SignatureStyle::V2,
    )
    .await;
    assert_eq!(
        principal,
        format!("rrsa:{ROLE_ARN}+assumeRole:{CROSS_ROLE_ARN}")
    );
}

#[tokio::test]
async fn rrsa_rejections_name_the_oidc_problem() {
    let cases = [
        (
            oidc_token(
                "system:serviceaccount:default:intruder",
                "sts.aliyuncs.com",
                ISSUER,
                3600,
            ),
            "NoPermission",
        ),
        (
            oidc_token(SUBJECT, "sts.aliyuncs.com", ISSUER, -60),
            "AuthenticationFail.OIDCToken.Expired",
        ),
        (
            oidc_token(SUBJECT, "kubernetes", ISSUER, 3600),
            "AuthenticationFail.OIDCToken.AudienceNotMatch",
        ),
        (
            oidc_token(SUBJECT, "sts.aliyuncs.com", "https://evil.example", 3600),
            "AuthenticationFail.OIDCToken.IssuerNotMatch",
        ),
        (
            "not-a-jwt".to_string(),
            "AuthenticationFail.OIDCToken.Invalid",
        ),
    ];
    let fake = fake().await;
    let client = client(&fake);
    for (token, code) in cases {
        let file = temp_file("token", &token);
        let provider = build_provider(
            &ProviderConfig {
                source: rrsa_source(file),
                assume_role: None,
            },
            client.clone(),
            secrets(),
        );
        let e = registry::fetch_token(&client, &provider, &enterprise())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(code), "{e}");
        assert!(e.hint().is_some(), "{e}");
    }
}

#[tokio::test]
async fn managed_role_token_file() {
    let fake = fake().await;
    let issued = fake
        .handle()
        .issue_role_credentials(
            ACCOUNT,
            "AliyunCSManagedAcrRole",
            "managed",
            Duration::from_secs(3600),
        )
        .unwrap();
    let keyring = "0123456789abcdef";
    let enc = |v: &str| encrypt_value(keyring.as_bytes(), rand::random(), v).unwrap();
    let content = serde_json::json!({
        "access.key.id": enc(&issued.access_key_id),
        "access.key.secret": enc(&issued.secret),
        "security.token": enc(&issued.security_token),
        "expiration": acr_credential_controller::cloud::sign::iso8601(issued.expires_at),
        "keyring": keyring,
    });
    let file = temp_file("token-config", &content.to_string());
    let client = client(&fake);
    let provider = build_provider(
        &ProviderConfig {
            source: SourceConfig::ManagedRole { token_file: file },
            assume_role: None,
        },
        client.clone(),
        secrets(),
    );
    let token = registry::fetch_token(&client, &provider, &enterprise())
        .await
        .unwrap();
    assert!(fake.handle().registry_token_valid(token.password.expose()));
    assert_eq!(
        provider.credentials().await.unwrap().principal,
        format!("managedRole:{}", issued.access_key_id)
    );
    // The registry token never outlives the STS credentials it was made with.
    assert!(token.expires_at <= issued.expires_at);
}

#[tokio::test]
async fn new_style_personal_instances_are_reported_plainly() {
    let e = registry::ensure_token_api("crpi-k3i9x2y7.cn-hangzhou.personal.cr.aliyuncs.com")
        .unwrap_err();
    assert_eq!(e.reason(), "Unsupported");
    assert!(e.to_string().contains("no temporary-token API"), "{e}");
}
