//! The doctor chain walk against the fake: a working setup and broken ones, never a secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cloud_common;

use std::sync::Arc;
use std::time::Duration;

use acr_credential_controller::cloud::credentials::access_key::{SecretRef, StaticSecrets};
use acr_credential_controller::cloud::credentials::{AssumeRoleConfig, SourceConfig};
use acr_credential_controller::cloud::doctor::{DoctorPlan, StepStatus, walk};
use acr_credential_controller::cloud::registry::Registry;
use cloud_common::*;

fn plan(secret_name: &str, domains: Option<Vec<String>>) -> DoctorPlan {
    DoctorPlan {
        context: vec![
            ("policy".into(), "default".into()),
            ("binding".into(), "team-a".into()),
        ],
        source: SourceConfig::AccessKey(SecretRef {
            namespace: "ops".into(),
            name: secret_name.into(),
            access_key_id_key: "AccessKeyId".into(),
            access_key_secret_key: "AccessKeySecret".into(),
        }),
        assume_role: Some(AssumeRoleConfig {
            role_arn: ROLE_ARN.into(),
            session_name: "acr-credential-controller".into(),
            external_id: None,
            duration: Duration::from_secs(3600),
        }),
        registry: Registry::Enterprise {
            region: "cn-hangzhou".into(),
            instance_id: INSTANCE.into(),
        },
        domains,
    }
}

fn secrets() -> Arc<StaticSecrets> {
    let s = StaticSecrets::new();
    s.insert(
        "ops",
        "good",
        &[("AccessKeyId", "LTAIci"), ("AccessKeySecret", "cisecret")],
    );
    s.insert(
        "ops",
        "typo",
        &[
            ("AccessKeyId", "LTAIci"),
            ("AccessKeySecret", "cisecret-typo"),
        ],
    );
    Arc::new(s)
}

#[tokio::test]
async fn doctor_working_setup() {
    let fake = fake().await;
    let report = walk(client(&fake), secrets(), &plan("good", None)).await;
    let text = report.render();
    println!("{text}");
    assert!(report.ok(), "{text}");
    assert!(
        text.contains(&format!(
            "principal:  accessKey:LTAIci+assumeRole:{ROLE_ARN}"
        )),
        "{text}"
    );
    assert!(
        text.contains("domain:     myreg-registry-vpc.cn-hangzhou.cr.aliyuncs.com"),
        "{text}"
    );
    assert!(text.contains("username:   cr_temp_user"));
    assert!(!text.contains("cisecret"), "no secret in the report");
}

#[tokio::test]
async fn doctor_broken_setups_name_the_failing_step() {
    let fake = fake().await;
    let report = walk(client(&fake), secrets(), &plan("typo", None)).await;
    let text = report.render();
    println!("{text}");
    assert!(!report.ok());
    assert_eq!(report.steps[1].status, StepStatus::Failed);
    assert!(text.contains("code:       SignatureDoesNotMatch"), "{text}");
    assert!(
        text.contains("hint:       the AccessKeySecret does not belong to this AccessKeyId"),
        "{text}"
    );
    assert!(text.contains("[SKIP] registry token"), "{text}");
    assert!(!text.contains("cisecret-typo"));

    let report = walk(client(&fake), secrets(), &plan("missing", None)).await;
    let text = report.render();
    println!("{text}");
    assert!(text.contains("[FAIL] credentials"), "{text}");
    assert!(text.contains("Secret ops/missing not found"), "{text}");

    let crpi = Some(vec![
        "crpi-k3i9x2y7.cn-hangzhou.personal.cr.aliyuncs.com".to_string(),
    ]);
    let report = walk(client(&fake), secrets(), &plan("good", crpi)).await;
    let text = report.render();
    println!("{text}");
    assert!(text.contains("reason:     Unsupported"), "{text}");
}

fn manifests(secret: &str) -> String {
    format!(
        r#"apiVersion: acrcredentials.io/v1alpha1
kind: AcrCredentialPolicy
metadata: {{name: default}}
spec:
  source:
    accessKey:
      secretRef: {{namespace: ops, name: alibaba-ak}}
  assumeRole:
    roleArn: "{ROLE_ARN}"
    duration: 1h
---
apiVersion: acrcredentials.io/v1alpha1
kind: AcrRegistryBinding
metadata: {{name: team-a}}
spec:
  registry: {{instanceId: {INSTANCE}, region: cn-hangzhou}}
  namespaces: {{names: [team-a]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: alibaba-ak, namespace: ops}}
stringData: {{AccessKeyId: LTAIci, AccessKeySecret: "{secret}"}}
"#
    )
}

async fn run_cli(
    fake: &acr_fake_cloud::FakeCloud,
    file: &std::path::Path,
) -> (Option<i32>, String, String) {
    run_cli_with(fake, file, &[]).await
}

async fn run_cli_with(
    fake: &acr_fake_cloud::FakeCloud,
    file: &std::path::Path,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_acr-credential-controller"))
        .args([
            "doctor",
            "-f",
            file.to_str().unwrap(),
            "--region",
            "cn-hangzhou",
            "--network",
            "vpc",
        ])
        .args(["--endpoint-url", fake.base_url().as_str()])
        .args(extra)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn doctor_command_from_files() {
    let fake = fake().await;
    let good = temp_file("setup.yaml", &manifests("cisecret"));
    let (code, stdout, stderr) = run_cli(&fake, &good).await;
    println!("$ acr-credential-controller doctor -f setup.yaml ...\n{stdout}{stderr}");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("result: OK"), "{stdout}");
    assert!(!stdout.contains("cisecret"));

    let broken = temp_file("setup.yaml", &manifests("cisecret-rotated-away"));
    let (code, stdout, stderr) = run_cli(&fake, &broken).await;
    println!("$ acr-credential-controller doctor -f broken.yaml ...\n{stdout}{stderr}");
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("[FAIL] assume role"), "{stdout}");
    assert!(stdout.contains("SignatureDoesNotMatch"), "{stdout}");
    assert!(!stdout.contains("cisecret-rotated-away"));

    let invalid = temp_file(
        "setup.yaml",
        &manifests("x").replace("duration: 1h", "duration: 30m"),
    );
    let (code, _, stderr) = run_cli(&fake, &invalid).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("AcrCredentialPolicy/default"), "{stderr}");
}

/// STS credentials (the assumed role's, whose SecurityToken carries a marker) and the registry
/// API unreachable in four ways: `doctor` reports the network failure without the signed
/// request (SecurityToken, Signature, AccessKeyId).
#[tokio::test]
async fn doctor_with_the_registry_api_unreachable_prints_no_signed_request() {
    use cloud_common::unreachable::Unreachable;
    let fake = fake().await;
    let marker = "CANARYDOCTOR";
    fake.handle().set_marker(marker);
    let file = temp_file("setup.yaml", &manifests("cisecret"));
    for endpoint in Unreachable::all().await {
        let (code, stdout, stderr) =
            run_cli_with(&fake, &file, &["--cr-endpoint", &endpoint.url]).await;
        let all = format!("{stdout}{stderr}");
        let what = endpoint.failure.name();
        assert_eq!(code, Some(1), "{what}: {all}");
        assert!(all.contains("NetworkError"), "{what}: {all}");
        for secret in [marker, "SecurityToken=", "Signature=", "AccessKeyId="] {
            assert!(!all.contains(secret), "{what}: {secret} printed: {all}");
        }
        // The assumed role's AccessKeyId is shown once, as the step's principal; never in the
        // error.
        let id = all
            .split("access key: ")
            .filter_map(|s| s.split_whitespace().next())
            .find(|id| id.starts_with("STS."))
            .unwrap_or_else(|| panic!("{what}: no STS access key shown: {all}"));
        assert_eq!(all.matches(id).count(), 1, "{what}: {all}");
    }
    assert!(
        fake.handle().count_ok("sts:AssumeRole") >= 4,
        "no STS credentials were used"
    );
}
