//! The `acr-fake-cloud` binary the sandbox runs: loads a scenario file, listens on loopback,
//! writes its address, serves the APIs and the `/__fake/` control API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cloud_common;

use std::time::Duration;

use acr_credential_controller::cloud::credentials::Credentials;
use acr_credential_controller::cloud::endpoints::{Endpoints, Network, parse_base};
use acr_credential_controller::cloud::{CloudClient, CloudConfig, SignatureStyle};
use acr_credential_controller::sensitive::Sensitive;

struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test]
async fn binary_serves_a_scenario_and_takes_faults_over_http() {
    let scenario = cloud_common::temp_file("scenario.yaml", &cloud_common::scenario_yaml());
    let address_file = scenario.with_file_name("address");
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
        http: cloud_common::http(),
        signature: SignatureStyle::V2,
    })
    .unwrap();
    let creds = Credentials {
        access_key_id: "LTAIci".into(),
        access_key_secret: Sensitive::new("cisecret".into()),
        security_token: None,
        expires_at: None,
        identity: "accessKey:LTAIci".into(),
    };
    client
        .enterprise_token(&creds, "cn-hangzhou", cloud_common::INSTANCE)
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
        .enterprise_token(&creds, "cn-hangzhou", cloud_common::INSTANCE)
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
            && c["caller"] == "LTAIci"
            && c["count"] == 2),
        "{log}"
    );

    let issued: serde_json::Value = http
        .post(format!("{base}/__fake/credentials"))
        .json(&serde_json::json!({"account": cloud_common::ACCOUNT, "role": "acr-puller", "seconds": 900}))
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
    let scenario = cloud_common::temp_file("scenario.yaml", "accounts: []\n");
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
fn the_shipped_sandbox_scenario_loads() {
    let s = acr_credential_controller::fake::Scenario::load(std::path::Path::new(
        &cloud_common::fixture("fake-cloud-scenario.yaml"),
    ))
    .unwrap();
    assert_eq!(s.accounts.len(), 2);
    assert!(s.metadata.is_some_and(|m| m.hardened));
}
