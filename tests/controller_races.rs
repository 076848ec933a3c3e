//! The namespace sync against the real API server when the watch cache is behind it: a user's
//! Secret that replaced ours (or took our name first) must be neither deleted nor bound to
//! ServiceAccounts; and a pass right after our own ServiceAccount patch, which the cache has not
//! shown, must send no patch planned on the stale copy. The controller's own `converge_namespace`
//! runs over caches the test fills by hand (so the window between reading the cache and writing
//! is as wide as it can get), with tokens from the fake cloud.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod support;

use std::sync::Arc;
use std::time::Duration;

use acr_credential_controller::api::{AcrCredentialPolicy, AcrRegistryBinding};
use acr_credential_controller::binding::converge::converge_namespace;
use acr_credential_controller::cloud::CloudClient;
use acr_credential_controller::cloud::clock::SystemClock;
use acr_credential_controller::cloud::credentials::access_key::KubeSecretReader;
use acr_credential_controller::cluster::caches::Readiness;
use acr_credential_controller::cluster::recorder::Recorder;
use acr_credential_controller::cluster::tokens::{CloudFetcher, TokenManager};
use acr_credential_controller::cluster::written::Written;
use acr_credential_controller::cluster::{Context, Stores};
use acr_credential_controller::model::cached_secret::CachedSecret;
use acr_credential_controller::model::cached_service_account::CachedServiceAccount;
use acr_credential_controller::model::plan::SecretState;
use acr_credential_controller::model::resolve::{Resolved, resolve};
use controller_common::{Harness, SECRET_NAME, pull_secret_names, wait_sa};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;

/// A controller context over caches the test controls.
struct Rig {
    ctx: Context,
    secrets: Writer<CachedSecret>,
    namespaces: Writer<Namespace>,
    policies: Writer<AcrCredentialPolicy>,
}

fn rig(h: &Harness) -> Rig {
    let client = h.client();
    let (bindings, _binding_writer) = reflector::store::<AcrRegistryBinding>();
    let (policies, policy_writer) = reflector::store::<AcrCredentialPolicy>();
    let (namespaces, ns_writer) = reflector::store::<Namespace>();
    let (service_accounts, _sa_writer) = reflector::store::<CachedServiceAccount>();
    let (secrets, secret_writer) = reflector::store::<CachedSecret>();
    let written = Arc::new(Written::new(secrets.clone(), SECRET_NAME));
    let stores = Stores {
        bindings,
        policies,
        namespaces,
        service_accounts,
        secrets,
        written,
        patched: Arc::default(),
    };
    let fetcher = Arc::new(CloudFetcher::new(
        Arc::new(CloudClient::new(h.cloud()).unwrap()),
        Arc::new(KubeSecretReader::new(client.clone())),
    ));
    let tokens = Arc::new(TokenManager::new(fetcher, Arc::new(SystemClock)));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "acr-credential-controller".into(),
            instance: None,
        },
    );
    let ctx = Context::new(
        client,
        h.config(),
        stores,
        Readiness::new(std::iter::empty()),
        tokens,
        recorder,
        Arc::new(SystemClock),
    );
    Rig {
        ctx,
        secrets: secret_writer,
        namespaces: ns_writer,
        policies: policy_writer,
    }
}

impl Rig {
    /// Shows the namespace `ns`, as the API server has it, in the namespace cache.
    async fn cache_namespace(&mut self, h: &Harness, ns: &str) {
        let n = Api::<Namespace>::all(h.client()).get(ns).await.unwrap();
        self.namespaces.apply_watcher_event(&Event::Apply(n));
    }

    /// Applies binding `name` selecting `ns` (no controller runs: nothing acts on it), and
    /// resolves it against the test's policy, with a token from the fake cloud held.
    async fn binding(&mut self, h: &Harness, name: &str, ns: &str) -> Resolved {
        h.bind(name, &h.test_binding().names(&[ns])).await;
        let binding = h.bindings().get(name).await.unwrap();
        let policy = h.policies().get(&h.policy).await.unwrap();
        self.policies.apply_watcher_event(&Event::Apply(policy));
        let resolved = resolve(
            &binding,
            &self.ctx.stores.policies,
            &self.ctx.config.resolve,
        )
        .unwrap();
        let outcome = self.ctx.tokens.get(&resolved.request).await;
        assert!(
            outcome.token.is_some(),
            "no token from the fake cloud: {:?}",
            outcome.failure
        );
        resolved
    }
}

async fn default_sa(h: &Harness, ns: &str) -> Arc<CachedServiceAccount> {
    Arc::new(
        wait_sa(&h.service_accounts(ns), "default", "present", |_| true)
            .await
            .into(),
    )
}

/// A user's own pull Secret under our name: no label of ours.
fn users_secret() -> Secret {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "labels": {"team": "mine"}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "eyJhdXRocyI6e319"}
    }))
    .unwrap()
}

#[tokio::test]
async fn a_secret_that_replaced_ours_is_not_deleted() {
    let h = Harness::new("ctrl-races-delete", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let mut rig = rig(&h);
    rig.cache_namespace(&h, &ns).await;
    let secrets = h.secrets(&ns);
    let sa = default_sa(&h, &ns).await;

    for case in ["recreated by the user", "relabelled by the user"] {
        // Our Secret, as the cache shows it: labelled as ours, no binding selects the namespace.
        let ours: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET_NAME, "labels": {"acrcredentials.io/managed": "true"}},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": "eyJhdXRocyI6e319"}
        }))
        .unwrap();
        let ours = secrets.create(&PostParams::default(), &ours).await.unwrap();
        rig.secrets
            .apply_watcher_event(&Event::Apply(CachedSecret::from(ours.clone())));

        // Meanwhile, on the server, the user makes the name theirs.
        let theirs = match case {
            "recreated by the user" => {
                secrets
                    .delete(SECRET_NAME, &DeleteParams::default())
                    .await
                    .unwrap();
                secrets
                    .create(&PostParams::default(), &users_secret())
                    .await
                    .unwrap()
            }
            _ => {
                let mut relabelled = ours.clone();
                relabelled.metadata.labels = users_secret().metadata.labels;
                secrets
                    .replace(SECRET_NAME, &PostParams::default(), &relabelled)
                    .await
                    .unwrap()
            }
        };

        let outcome = converge_namespace(&rig.ctx, &ns, &[], std::slice::from_ref(&sa))
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(outcome.secret, SecretState::Absent, "{case}");
        let left = secrets.get_opt(SECRET_NAME).await.unwrap();
        assert_eq!(
            left.as_ref().and_then(|s| s.metadata.uid.clone()),
            theirs.metadata.uid,
            "{case}: the user's Secret was deleted"
        );

        // Clean up for the next case (the cache forgets it too).
        secrets
            .delete(SECRET_NAME, &DeleteParams::default())
            .await
            .unwrap();
        rig.secrets
            .apply_watcher_event(&Event::Delete(CachedSecret::from(theirs)));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_secret_a_create_conflict_reveals_gets_no_service_account() {
    let h = Harness::new("ctrl-races-create", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let mut rig = rig(&h);
    rig.cache_namespace(&h, &ns).await;
    let name = h.named("conflict");
    let resolved = rig.binding(&h, &name, &ns).await;
    let sa = default_sa(&h, &ns).await;

    // The user's Secret exists on the server; the cache has not shown it yet.
    let secrets = h.secrets(&ns);
    let theirs = secrets
        .create(&PostParams::default(), &users_secret())
        .await
        .unwrap();

    let outcome = converge_namespace(&rig.ctx, &ns, &[resolved], std::slice::from_ref(&sa))
        .await
        .unwrap();
    assert_eq!(outcome.secret, SecretState::OwnedByOthers);
    assert!(
        outcome.service_accounts.iter().all(|s| !s.bound),
        "{:?}",
        outcome.service_accounts
    );
    // On the server: the ServiceAccount does not reference the user's Secret, which is as the
    // user left it.
    let sa_now = h.service_accounts(&ns).get("default").await.unwrap();
    assert!(
        !pull_secret_names(&sa_now).contains(&SECRET_NAME.to_owned()),
        "default was bound to a Secret that is not ours: {:?}",
        pull_secret_names(&sa_now)
    );
    let after = secrets.get(SECRET_NAME).await.unwrap();
    assert_eq!(after.metadata.uid, theirs.metadata.uid);
    assert_eq!(after.data, theirs.data);
    assert_eq!(after.metadata.labels, theirs.metadata.labels);
}

/// A pass over a namespace right after our own ServiceAccount patch, while the cache still shows
/// the ServiceAccount as it was: the controller knows what it patched and sends nothing. The
/// second pass runs as a user with no rights at all, so any request it sent (a patch planned on
/// the stale copy, which the API server would refuse as a version conflict before, costing a
/// re-read) fails and shows as an error.
#[tokio::test]
async fn a_pass_before_the_cache_shows_our_patch_sends_no_patch() {
    let h = Harness::new("ctrl-races-patched", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let mut rig = rig(&h);
    rig.cache_namespace(&h, &ns).await;
    let name = h.named("patched");
    let resolved = rig.binding(&h, &name, &ns).await;
    // The ServiceAccount as the cache shows it, before our patch; it never catches up here.
    let stale = default_sa(&h, &ns).await;

    let first = converge_namespace(
        &rig.ctx,
        &ns,
        std::slice::from_ref(&resolved),
        std::slice::from_ref(&stale),
    )
    .await
    .unwrap();
    assert!(first.service_accounts.iter().all(|s| s.bound), "{first:?}");
    let patched = h.service_accounts(&ns).get("default").await.unwrap();
    assert!(pull_secret_names(&patched).contains(&SECRET_NAME.to_owned()));

    let nobody = Context::new(
        support::client_as("acc-test-nobody").await,
        h.config(),
        rig.ctx.stores.clone(),
        Readiness::new(std::iter::empty()),
        rig.ctx.tokens.clone(),
        rig.ctx.recorder.clone(),
        Arc::new(SystemClock),
    );
    let second = converge_namespace(
        &nobody,
        &ns,
        std::slice::from_ref(&resolved),
        std::slice::from_ref(&stale),
    )
    .await
    .unwrap();
    assert!(
        second.service_account_errors.is_empty(),
        "a request went out: {:?}",
        second.service_account_errors
    );
    assert!(
        second.service_accounts.iter().all(|s| s.bound),
        "{second:?}"
    );
    let after = h.service_accounts(&ns).get("default").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        patched.metadata.resource_version
    );
}
