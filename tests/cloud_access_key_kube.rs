//! The `accessKey` source reading a real Secret from the API server (local control plane),
//! then fetching a registry token from the fake cloud with it; a rotated Secret is followed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cloud_common;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use acr_credential_controller::cloud::credentials::CredentialProvider;
use acr_credential_controller::cloud::credentials::access_key::{
    AccessKeySource, KubeSecretReader, SecretRef,
};
use acr_credential_controller::cloud::registry::{self, Registry};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use support::TestEnv;

async fn put_secret(api: &Api<Secret>, id: &str, secret: &str) {
    let s = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("alibaba-ak".into()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([
            ("AccessKeyId".to_string(), id.to_string()),
            ("AccessKeySecret".to_string(), secret.to_string()),
        ])),
        ..Default::default()
    };
    api.patch(
        "alibaba-ak",
        &PatchParams::apply(support::FIELD_MANAGER).force(),
        &Patch::Apply(&s),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn access_key_from_a_kubernetes_secret() {
    let env = TestEnv::new("cloud-ak").await;
    let secrets: Api<Secret> = Api::namespaced(env.client(), env.namespace());
    let fake = cloud_common::fake().await;
    let client = cloud_common::client(&fake);
    let source = AccessKeySource::new(
        Arc::new(KubeSecretReader::new(env.client())),
        SecretRef {
            namespace: env.namespace().into(),
            name: "alibaba-ak".into(),
            access_key_id_key: "AccessKeyId".into(),
            access_key_secret_key: "AccessKeySecret".into(),
        },
    );
    let provider = CredentialProvider::new(Box::new(source), client.clock().clone())
        .with_static_ttl(Duration::ZERO);
    let registry = Registry::Enterprise {
        region: "cn-hangzhou".into(),
        instance_id: cloud_common::INSTANCE.into(),
    };

    let e = registry::fetch_token(&client, &provider, &registry)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "CredentialSourceFailed");
    assert!(e.to_string().contains("not found"), "{e}");

    put_secret(&secrets, "LTAIci", "wrong-secret").await;
    let e = registry::fetch_token(&client, &provider, &registry)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("SignatureDoesNotMatch"));

    put_secret(&secrets, "LTAIci", "cisecret").await;
    let token = registry::fetch_token(&client, &provider, &registry)
        .await
        .unwrap();
    assert!(fake.handle().registry_token_valid(token.password.expose()));
    assert_eq!(
        provider.credentials().await.unwrap().principal,
        "accessKey:LTAIci"
    );

    // Rotation: the next fetch uses the new key, and the principal changes with it.
    put_secret(&secrets, "LTAIroot", "rootsecret").await;
    registry::fetch_token(&client, &provider, &registry)
        .await
        .unwrap();
    assert_eq!(
        provider.credentials().await.unwrap().principal,
        "accessKey:LTAIroot"
    );
    let counts = fake.handle().counts();
    assert_eq!(
        counts.get(&(
            "cr:GetAuthorizationToken".to_string(),
            "LTAIroot".to_string()
        )),
        Some(&1)
    );
}
