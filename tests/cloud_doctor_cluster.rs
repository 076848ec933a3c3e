//! `doctor --binding NAME` reading the binding, its policy and the AccessKey Secret from a real
//! API server (the local control plane), then walking the chain against the fake cloud.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cloud_common;
mod support;

use support::{TestEnv, install_crds, unique_name};

#[tokio::test]
async fn doctor_reads_the_chain_from_the_cluster() {
    let env = TestEnv::new("cloud-doctor").await;
    install_crds(&env.client()).await;
    let (policy, binding) = (unique_name("doctor-policy"), unique_name("doctor-binding"));
    let ns = env.namespace().to_string();
    env.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: alibaba-ak}}
stringData: {{AccessKeyId: LTAIci, AccessKeySecret: cisecret}}
---
apiVersion: acrcredentials.io/v1alpha1
kind: AcrCredentialPolicy
metadata: {{name: {policy}}}
spec:
  source: {{accessKey: {{secretRef: {{namespace: {ns}, name: alibaba-ak}}}}}}
---
apiVersion: acrcredentials.io/v1alpha1
kind: AcrRegistryBinding
metadata: {{name: {binding}}}
spec:
  registry: {{instanceId: {instance}, region: cn-hangzhou}}
  policyRef: {{name: {policy}}}
  namespaces: {{names: [{ns}]}}
"#,
        instance = cloud_common::INSTANCE
    ))
    .await;
    let fake = cloud_common::fake().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_acr-credential-controller"));
    cmd.args([
        "doctor",
        "--binding",
        &binding,
        "--endpoint-url",
        fake.base_url().as_str(),
    ]);
    if let Some(kubeconfig) = &support::cluster().kubeconfig {
        cmd.env("KUBECONFIG", kubeconfig);
    }
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("binding    {binding} (from cluster)")),
        "{stdout}"
    );
    assert!(stdout.contains("principal:  accessKey:LTAIci"), "{stdout}");
    assert!(stdout.contains("result: OK"), "{stdout}");
    assert!(!stdout.contains("cisecret"));
}
