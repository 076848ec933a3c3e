//! Smoke test: the harness reaches a real API server with a real controller-manager behind it.
//!
//! Fails against a mock or a bare API server: it needs the serviceaccount controller (the
//! `default` ServiceAccount appears by itself), the garbage collector (an owned object goes
//! away with its owner) and the namespace controller (a deleted namespace really disappears).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use support::{TestEnv, wait_until};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn control_plane_is_real_and_complete() {
    let env = TestEnv::new("smoke").await;
    let ns = env.namespace();
    let client = env.client();

    // The serviceaccount controller gives every new namespace its `default` ServiceAccount.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    wait_until(
        WAIT,
        "the default ServiceAccount in a new namespace",
        || async { sas.get_opt("default").await.ok().flatten() },
    )
    .await;

    // A pull Secret of the kind the controller writes.
    let docker_config = json!({"auths": {"registry.example.com": {
        "username": "cr_temp_user", "password": "not-a-real-token",
        "auth": "Y3JfdGVtcF91c2VyOm5vdC1hLXJlYWwtdG9rZW4="}}});
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("acr-credentials".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(serde_json::to_vec(&docker_config).unwrap()),
        )])),
        ..Default::default()
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let created = secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    assert!(created.uid().is_some());

    // A ServiceAccount that already lists another writer's pull secret.
    let sa: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "builder"},
        "imagePullSecrets": [{"name": "someone-elses"}],
    }))
    .unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();

    // Watch it, then add our entry with a version-checked JSON patch (the controller's way).
    // Other writers race us: on 1.20 the token controller adds a `secrets` entry right after
    // creation, which makes a version-checked patch fail (422); read again and retry, as the
    // controller does.
    let mut attempt = 0;
    let (patch, mut events) = loop {
        attempt += 1;
        let rv = sas
            .get("builder")
            .await
            .unwrap()
            .resource_version()
            .unwrap();
        let params = WatchParams::default().fields("metadata.name=builder");
        let events = sas.watch(&params, &rv).await.unwrap().boxed();
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "acr-credentials"}},
        ]))
        .unwrap();
        match sas
            .patch(
                "builder",
                &PatchParams::default(),
                &Patch::Json::<()>(patch.clone()),
            )
            .await
        {
            Ok(_) => break (patch, events),
            Err(kube::Error::Api(e)) if e.code == 422 && attempt < 10 => continue,
            Err(e) => panic!("version-checked patch failed: {e}"),
        }
    };

    let seen = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.try_next().await.unwrap() {
            if let WatchEvent::Modified(sa) = event {
                return sa;
            }
        }
        unreachable!("watch ended without the modification")
    })
    .await
    .expect("the watch delivers the patched ServiceAccount");
    let names: Vec<_> = seen
        .image_pull_secrets
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["someone-elses", "acr-credentials"]);

    // The same patch again is refused: the resourceVersion it tests is stale.
    let stale = sas
        .patch(
            "builder",
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await;
    assert!(
        matches!(&stale, Err(kube::Error::Api(e)) if e.code == 422 || e.code == 409),
        "stale version-checked patch must fail, got {stale:?}"
    );

    // Read everything back.
    let back = secrets.get("acr-credentials").await.unwrap();
    assert_eq!(
        back.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let raw = &back.data.unwrap()[".dockerconfigjson"].0;
    let parsed: serde_json::Value = serde_json::from_slice(raw).unwrap();
    assert_eq!(parsed, docker_config);
    assert_eq!(back.metadata.uid, created.metadata.uid);

    // The garbage collector deletes an object whose owner is gone.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let owner: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap();
    let owner = cms.create(&PostParams::default(), &owner).await.unwrap();
    let mut child: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "child"}})).unwrap();
    child.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    cms.create(&PostParams::default(), &child).await.unwrap();
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    wait_until(
        WAIT,
        "garbage collection of the owned ConfigMap",
        || async {
            match cms.get_opt("child").await {
                Ok(None) => Ok(()),
                Ok(Some(c)) => Err(format!("child still present (uid {:?})", c.uid())),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn namespace_deletion_completes() {
    let env = TestEnv::new("smoke-ns").await;
    let extra = env.extra_namespace("doomed").await;
    let client = env.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &extra);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "content"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();

    let namespaces: Api<Namespace> = Api::all(client);
    namespaces
        .delete(&extra, &DeleteParams::background())
        .await
        .unwrap();
    // Only the namespace controller can empty it and remove the `kubernetes` finalizer.
    wait_until(WAIT, "the deleted namespace to disappear", || async {
        match namespaces.get_opt(&extra).await {
            Ok(None) => Ok(()),
            Ok(Some(n)) => Err(format!(
                "still there, phase {:?}",
                n.status.and_then(|s| s.phase)
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}
