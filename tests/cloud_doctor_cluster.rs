//! `doctor --binding NAME` reading the binding, its policy and the AccessKey Secret from a real
//! API server (the local control plane), then walking the chain against the fake cloud.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cloud_common;
mod support;

use std::time::Duration;

use acr_credential_controller::api::crd;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use support::{TestEnv, unique_name, wait_until};

/// Installs the CRDs (without CEL rules, which the 1.20 control plane cannot take; the objects
/// here are valid either way) and waits until they are served.
async fn install_crds(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for c in crd::crds_without_cel() {
        let name = c.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("acr-credential-controller-tests-crds").force(),
            &Patch::Apply(&c),
        )
        .await
        .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
        wait_until(
            Duration::from_secs(60),
            &format!("CRD {name} Established"),
            || async {
                let crd = api.get(&name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }
}

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
    assert!(stdout.contains("identity:   accessKey:LTAIci"), "{stdout}");
    assert!(stdout.contains("result: OK"), "{stdout}");
    assert!(!stdout.contains("cisecret"));
}
