//! Shared setup for the `cloud_*` integration tests: a scenario, a client pointed at the fake,
//! and OIDC tokens signed with the test-only key in `tests/fixtures/`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use acr_credential_controller::cloud::endpoints::{Endpoints, Network};
use acr_credential_controller::cloud::http::HttpConfig;
use acr_credential_controller::cloud::{CloudClient, CloudConfig, SignatureStyle};
use acr_fake_cloud::{FakeCloud, Scenario};

pub mod unreachable;

pub const ACCOUNT: &str = "1111111111111111";
pub const OTHER_ACCOUNT: &str = "2222222222222222";
pub const INSTANCE: &str = "cri-test1";
pub const OTHER_INSTANCE: &str = "cri-other";
pub const ROLE_ARN: &str = "acs:ram::1111111111111111:role/acr-puller";
pub const CROSS_ROLE_ARN: &str = "acs:ram::2222222222222222:role/cross-puller";
pub const OIDC_PROVIDER_ARN: &str = "acs:ram::1111111111111111:oidc-provider/ack-rrsa-test";
pub const ISSUER: &str = "https://oidc-ack.cn-hangzhou.aliyuncs.com/test";
pub const SUBJECT: &str = "system:serviceaccount:kube-system:acr-credential-controller";

pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The scenario every cloud test starts from.
pub fn scenario_yaml() -> String {
    format!(
        r#"
region: cn-hangzhou
accounts:
  - id: "{ACCOUNT}"
    accessKeys:
      - {{id: LTAIroot, secret: rootsecret}}
      - {{id: LTAIci, secret: cisecret, user: ci}}
      - {{id: LTAInoperm, secret: nopermsecret, user: noperm}}
      - {{id: LTAIdisabled, secret: disabledsecret, user: ci, enabled: false}}
    users:
      - {{name: ci, permissions: ["sts:AssumeRole", "cr:GetAuthorizationToken", "cr:ListInstanceEndpoint"]}}
      - {{name: noperm, permissions: []}}
    roles:
      - name: acr-puller
        maxSessionDuration: 7200
        permissions: ["cr:*", "sts:AssumeRole"]
        trust:
          principals: ["acs:ram::{ACCOUNT}:root"]
          oidc: [{{provider: ack-rrsa-test, subjects: ["{SUBJECT}"]}}]
      - name: node-role
        permissions: ["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint", "sts:AssumeRole"]
      - name: AliyunCSManagedAcrRole
        permissions: ["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint"]
    oidcProviders:
      - name: ack-rrsa-test
        issuer: "{ISSUER}"
        clientIds: [sts.aliyuncs.com]
        publicKeyFiles: ["{key}"]
    instances:
      - id: {INSTANCE}
        name: myreg
        region: cn-hangzhou
        endpoints:
          - type: internet
            enabled: true
            domains: [{{domain: myreg-registry.cn-hangzhou.cr.aliyuncs.com, type: SYSTEM}}, {{domain: images.example.com, type: USER}}]
          - type: vpc
            enabled: true
            domains: [{{domain: myreg-registry-vpc.cn-hangzhou.cr.aliyuncs.com, type: SYSTEM}}]
  - id: "{OTHER_ACCOUNT}"
    roles:
      - name: cross-puller
        maxSessionDuration: 3600
        permissions: ["cr:GetAuthorizationToken:{OTHER_INSTANCE}", "cr:ListInstanceEndpoint:{OTHER_INSTANCE}"]
        trust:
          principals: ["acs:ram::{ACCOUNT}:root"]
          externalId: ext-123
    instances:
      - {{id: {OTHER_INSTANCE}, name: other, region: cn-shanghai}}
metadata:
  account: "{ACCOUNT}"
  roleName: node-role
  hardened: true
"#,
        key = fixture("rrsa-test-key.pub.pem")
    )
}

pub fn scenario() -> Scenario {
    Scenario::from_str_resolved(&scenario_yaml()).unwrap()
}

pub async fn fake() -> FakeCloud {
    FakeCloud::start(scenario()).await.unwrap()
}

/// Fast retries so the robustness tests stay quick.
pub fn http() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_attempts: 3,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(2),
    }
}

pub fn client_with(fake: &FakeCloud, signature: SignatureStyle, http: HttpConfig) -> CloudClient {
    let endpoints =
        Endpoints::new("cn-hangzhou", Network::Vpc).with_all_overridden(fake.base_url());
    CloudClient::new(CloudConfig {
        endpoints,
        http,
        signature,
    })
    .unwrap()
}

pub fn client(fake: &FakeCloud) -> Arc<CloudClient> {
    Arc::new(client_with(fake, SignatureStyle::V2, http()))
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
}

/// An RS256 service-account token as the kubelet would project it.
pub fn oidc_token(sub: &str, aud: &str, iss: &str, exp_in_secs: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    let pem = std::fs::read(fixture("rrsa-test-key.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let claims = Claims {
        iss,
        sub,
        aud,
        exp: now + exp_in_secs,
        iat: now,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap()
}

/// Writes a token file into a fresh temporary directory and returns its path.
pub fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "acr-cloud-test-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}
