//! The controller's Events against the real API server: every distinct note is an Event of its
//! own (two renewals show two expiries), and the same note repeated folds into one Event's
//! count (a steady state creates no new Events). Both for a namespaced object (events.k8s.io)
//! and for a binding, which is cluster-scoped (Kubernetes 1.20 takes those only as core v1
//! Events in `default`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod support;

use std::sync::Arc;

use acr_credential_controller::cloud::CloudClient;
use acr_credential_controller::cloud::clock::SystemClock;
use acr_credential_controller::cloud::credentials::access_key::KubeSecretReader;
use acr_credential_controller::cluster::caches::Readiness;
use acr_credential_controller::cluster::recorder::Recorder;
use acr_credential_controller::cluster::tokens::{CloudFetcher, TokenManager};
use acr_credential_controller::cluster::written::Written;
use acr_credential_controller::cluster::{Context, Stores};
use controller_common::{Harness, SECRET_NAME};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, ListParams};
use kube::runtime::events::{EventType, Reporter};
use kube::runtime::reflector;

/// A controller context whose caches stay empty: only its Event recorder is used.
fn context(h: &Harness) -> Context {
    let client = h.client();
    let (secrets, _) = reflector::store();
    let stores = Stores {
        bindings: reflector::store().0,
        policies: reflector::store().0,
        namespaces: reflector::store().0,
        service_accounts: reflector::store().0,
        secrets: secrets.clone(),
        written: Arc::new(Written::new(secrets, SECRET_NAME)),
        patched: Arc::default(),
    };
    let fetcher = Arc::new(CloudFetcher::new(
        Arc::new(CloudClient::new(h.cloud()).unwrap()),
        Arc::new(KubeSecretReader::new(client.clone())),
    ));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "acr-credential-controller".into(),
            instance: None,
        },
    );
    Context::new(
        client,
        h.config(),
        stores,
        Readiness::new(std::iter::empty()),
        Arc::new(TokenManager::new(fetcher, Arc::new(SystemClock))),
        recorder,
        Arc::new(SystemClock),
    )
}

/// (note, count) of every `TokenRenewed` Event about `name` in `namespace`, sorted by note;
/// the count is the series count, or the core v1 count, or 1.
async fn renewed(h: &Harness, namespace: &str, name: &str) -> Vec<(String, i32)> {
    let api: Api<K8sEvent> = Api::namespaced(h.client(), namespace);
    let mut found: Vec<(String, i32)> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some("TokenRenewed"))
        .map(|e| {
            let count = e
                .series
                .map(|s| s.count)
                .or(e.deprecated_count)
                .unwrap_or(1);
            (e.note.unwrap_or_default(), count)
        })
        .collect();
    found.sort();
    found
}

/// Publishes the renewal notes A, B, B about `object` through the controller's context.
async fn renew_twice_then_repeat<K>(ctx: &Context, object: &K)
where
    K: kube::Resource<DynamicType = ()>,
{
    for expiry in ["10:00", "11:00", "11:00"] {
        ctx.event(
            object,
            EventType::Normal,
            "TokenRenewed",
            "RenewToken",
            format!("registry token renewed, valid until {expiry}"),
        )
        .await;
    }
}

fn expected() -> Vec<(String, i32)> {
    vec![
        ("registry token renewed, valid until 10:00".into(), 1),
        ("registry token renewed, valid until 11:00".into(), 2),
    ]
}

#[tokio::test]
async fn events_about_a_namespaced_object_keep_their_notes_and_fold_repeats() {
    let h = Harness::new("ctrl-events-ns", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let ctx = context(&h);
    let sa = support::wait_until(std::time::Duration::from_secs(30), "ServiceAccount", || {
        let api: Api<ServiceAccount> = Api::namespaced(h.client(), &ns);
        async move { api.get("default").await.map_err(|e| e.to_string()) }
    })
    .await;
    renew_twice_then_repeat(&ctx, &sa).await;
    assert_eq!(renewed(&h, &ns, "default").await, expected());
}

#[tokio::test]
async fn events_about_a_binding_keep_their_notes_and_fold_repeats() {
    let h = Harness::new("ctrl-events-b", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let ctx = context(&h);
    let name = format!("{}-events", h.id);
    h.bind(&name, &h.test_binding().names(&[&ns])).await;
    let binding = h.bindings().get(&name).await.unwrap();
    renew_twice_then_repeat(&ctx, &binding).await;
    assert_eq!(renewed(&h, "default", &name).await, expected());
}
