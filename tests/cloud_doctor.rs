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
            "identity:   accessKey:LTAIci+assumeRole:{ROLE_ARN}"
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
