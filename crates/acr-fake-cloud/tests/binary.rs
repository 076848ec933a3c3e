//! The `acr-fake-cloud` binary the sandbox runs: loads a scenario file, listens on loopback,
//! writes its address, serves the APIs and the `/__fake/` control API. The scenario is the
//! ready-made one in `tests/fixtures/`, so these tests also keep it loadable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use acr_credential_controller::cloud::credentials::Credentials;
use acr_credential_controller::cloud::endpoints::{Endpoints, Network, parse_base};
use acr_credential_controller::cloud::http::HttpConfig;
use acr_credential_controller::cloud::{CloudClient, CloudConfig, SignatureStyle};
use acr_credential_controller::sensitive::Sensitive;

/// The fixture's account, its AccessKey (a RAM user allowed to pull) and its instance.
const ACCOUNT: &str = "1234567890123456";
const ACCESS_KEY_ID: &str = "LTAIsandboxUser";
const ACCESS_KEY_SECRET: &str = "sandbox-user-secret";
const INSTANCE: &str = "cri-sandbox0000001";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

/// A fresh temporary directory for one test.
fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "acr-fake-cloud-test-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn http_config() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_attempts: 3,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(2),
    }
}

struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test]
async fn binary_serves_a_scenario_and_takes_faults_over_http() {
    let scenario = fixture("fake-cloud-scenario.yaml");
    let address_file = temp_dir().join("address");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_acr-fake-cloud"))
        .args([
            "--scenario",
            scenario.to_str().unwrap(),
            "--address-file",
            address_file.to_str().unwrap(),
        ])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _child = Child(child);
    let mut base = String::new();
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(&address_file) {
            base = text.trim().to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        base.starts_with("http://127.0.0.1:"),
        "address file: {base:?}"
    );
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/__fake/health"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );

    let url = parse_base(&base).unwrap();
    let endpoints = Endpoints::new("cn-hangzhou", Network::Public).with_all_overridden(&url);
    let client = CloudClient::new(CloudConfig {
        endpoints,
        http: http_config(),
        signature: SignatureStyle::V2,
    })
    .unwrap();
    let creds = Credentials {
        access_key_id: ACCESS_KEY_ID.into(),
        access_key_secret: Sensitive::new(ACCESS_KEY_SECRET.into()),
        security_token: None,
        expires_at: None,
        principal: format!("accessKey:{ACCESS_KEY_ID}"),
    };
    client
        .enterprise_token(&creds, "cn-hangzhou", INSTANCE)
        .await
        .unwrap();

    let fault = serde_json::json!({"api": "cr:GetAuthorizationToken", "kind": "error", "status": 403, "code": "NoPrivilege", "times": 1});
    let r = http
        .post(format!("{base}/__fake/faults"))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let e = client
        .enterprise_token(&creds, "cn-hangzhou", INSTANCE)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("NoPrivilege"));

    let log: serde_json::Value = http
        .get(format!("{base}/__fake/log"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let counts = log["counts"].as_array().unwrap();
    assert!(
        counts.iter().any(|c| c["api"] == "cr:GetAuthorizationToken"
            && c["caller"] == ACCESS_KEY_ID
            && c["count"] == 2),
        "{log}"
    );

    let issued: serde_json::Value = http
        .post(format!("{base}/__fake/credentials"))
        .json(&serde_json::json!({"account": ACCOUNT, "role": "acr-puller", "seconds": 900}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(issued["AccessKeyId"].as_str().unwrap().starts_with("STS."));
}

#[tokio::test]
async fn binary_refuses_a_non_loopback_address() {
    let scenario = temp_dir().join("scenario.yaml");
    std::fs::write(&scenario, "accounts: []\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_acr-fake-cloud"))
        .args([
            "--scenario",
            scenario.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}

#[test]
fn the_shipped_scenarios_load() {
    let fixture = acr_fake_cloud::Scenario::load(&fixture("fake-cloud-scenario.yaml")).unwrap();
    assert_eq!(fixture.accounts.len(), 2);
    assert!(fixture.metadata.is_some_and(|m| m.hardened));
    // The scenario `scripts/sandbox.sh` starts the fake with.
    let sandbox = acr_fake_cloud::Scenario::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/sandbox/scenario.yaml"),
    )
    .unwrap();
    assert_eq!(sandbox.accounts.len(), 2);
}
