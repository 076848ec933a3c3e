//! Namespace and ServiceAccount selection end to end: a label selector (namespaces joining and
//! leaving), `all` with `exclude` inside a policy's `allowedNamespaces`, ServiceAccounts by
//! selector, and two bindings sharing one namespace's Secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod support;

use std::time::Duration;

use controller_common::{
    DOMAINS, Harness, INSTANCE, OTHER_DOMAIN, OTHER_INSTANCE, SECRET_NAME, TestBinding, auths,
    pull_secret_names, wait_sa, wait_secret,
};
use kube::api::DeleteParams;

async fn label_namespace(h: &Harness, ns: &str, labels: &str) {
    h.env
        .apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{{labels}}}}}\n"
        ))
        .await;
}

async fn wait_secret_gone(h: &Harness, ns: &str) {
    support::wait_until(
        Duration::from_secs(60),
        &format!("no Secret in {ns}"),
        || {
            let api = h.secrets(ns);
            async move {
                match api.get_opt(SECRET_NAME).await.unwrap() {
                    None => Ok(()),
                    Some(_) => Err("still there"),
                }
            }
        },
    )
    .await;
}

fn has_ours(sa: &k8s_openapi::api::core::v1::ServiceAccount) -> bool {
    pull_secret_names(sa).contains(&SECRET_NAME.to_owned())
}

#[tokio::test]
async fn label_selector_namespaces_join_and_leave() {
    let h = Harness::new("ctrl-selector", 3600, "15m").await;
    let label = format!("sel-{}", h.id);
    let ns1 = h.env.namespace().to_owned();
    let ns2 = h.env.extra_namespace("ctrl-selector-b").await;
    label_namespace(&h, &ns1, &format!("acr-test: {label}")).await;
    h.with_controller(async |h| {
        let name = format!("{}-sel", h.id);
        h.bind(&name, &h.test_binding().labelled("acr-test", &label))
            .await;
        h.wait_ready(&name, "True", Duration::from_secs(60)).await;
        wait_secret(&h.secrets(&ns1), "Secret in ns1", |_| true).await;
        assert!(
            h.secrets(&ns2)
                .get_opt(SECRET_NAME)
                .await
                .unwrap()
                .is_none()
        );

        // ns2 is labelled later: it joins.
        label_namespace(h, &ns2, &format!("acr-test: {label}")).await;
        wait_secret(&h.secrets(&ns2), "Secret in ns2", |_| true).await;
        wait_sa(
            &h.service_accounts(&ns2),
            "default",
            "ns2 default bound",
            has_ours,
        )
        .await;

        // ns1 loses its label: it leaves, and is cleaned up.
        label_namespace(h, &ns1, "other: x").await;
        wait_secret_gone(h, &ns1).await;
        wait_sa(
            &h.service_accounts(&ns1),
            "default",
            "ns1 default unbound",
            |sa| !has_ours(sa),
        )
        .await;
        h.wait_summary(&name, "1/1", Duration::from_secs(30)).await;
    })
    .await;
}

#[tokio::test]
async fn all_namespaces_with_exclude_and_service_accounts_by_selector() {
    let h = Harness::new("ctrl-all", 3600, "15m").await;
    let label = format!("all-{}", h.id);
    let ns1 = h.env.namespace().to_owned();
    let ns2 = h.env.extra_namespace("ctrl-all-b").await;
    let ns3 = h.env.extra_namespace("ctrl-all-excluded").await;
    for ns in [&ns1, &ns2, &ns3] {
        label_namespace(&h, ns, &format!("acr-test: {label}")).await;
        h.env
            .apply(&format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: puller, namespace: {ns}, labels: {{pull: acr}}}}\n"))
            .await;
    }
    // `all` must stay inside this test's namespaces: the policy only allows them.
    let policy = format!("{}-all", h.id);
    h.add_policy(
        &policy,
        &format!("allowedNamespaces: {{matchLabels: {{acr-test: {label}}}}}"),
    )
    .await;
    h.with_controller(async |h| {
        let name = format!("{}-all", h.id);
        let binding = TestBinding::new(&policy)
            .all_except(&[&ns3])
            .service_accounts_labelled("pull", "acr");
        h.bind(&name, &binding).await;
        for ns in [&ns1, &ns2] {
            let s = wait_secret(&h.secrets(ns), "Secret", |_| true).await;
            assert_eq!(auths(&s).len(), DOMAINS.len());
            wait_sa(&h.service_accounts(ns), "puller", "puller bound", has_ours).await;
        }
        // Settle, then check nothing went where it must not.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            h.secrets(&ns3)
                .get_opt(SECRET_NAME)
                .await
                .unwrap()
                .is_none(),
            "excluded namespace got a Secret"
        );
        let default = h.service_accounts(&ns1).get("default").await.unwrap();
        assert!(!has_ours(&default), "default SA is not selected");
        // Every other namespace of the cluster is selected by `all` but not allowed by the policy:
        // reported, never written.
        let b = h.bindings().get(&name).await.unwrap();
        let status = b.status.unwrap();
        let namespaces = status.namespaces.unwrap();
        assert_eq!(namespaces.selected, 2, "{namespaces:?}");
        assert_eq!(namespaces.synced, 2);
        assert!(
            namespaces
                .failed
                .iter()
                .all(|f| f.reason == "NamespaceNotAllowed"),
            "{:?}",
            namespaces.failed
        );
        assert_eq!(status.service_accounts.unwrap().bound, 2);
    })
    .await;
}

#[tokio::test]
async fn two_bindings_share_a_namespace_then_one_is_deleted() {
    let h = Harness::new("ctrl-shared", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    h.with_controller(async |h| {
        let a = format!("{}-a", h.id);
        let b = format!("{}-b", h.id);
        for (name, instance) in [(&a, INSTANCE), (&b, OTHER_INSTANCE)] {
            h.bind(name, &h.test_binding().instance(instance).names(&[&ns]))
                .await;
        }
        h.wait_ready(&a, "True", Duration::from_secs(60)).await;
        h.wait_ready(&b, "True", Duration::from_secs(60)).await;
        let secrets = h.secrets(&ns);
        let both = wait_secret(&secrets, "Secret with both registries", |s| {
            auths(s).len() == 3
        })
        .await;
        let uid = both.metadata.uid.clone();
        let domains: Vec<String> = auths(&both).keys().cloned().collect();
        assert!(
            domains.contains(&OTHER_DOMAIN.to_owned()) && domains.contains(&DOMAINS[0].to_owned()),
            "{domains:?}"
        );
        assert_eq!(both.metadata.owner_references.as_ref().unwrap().len(), 2);
        let sa = wait_sa(&h.service_accounts(&ns), "default", "bound once", has_ours).await;
        assert_eq!(
            pull_secret_names(&sa)
                .iter()
                .filter(|n| *n == SECRET_NAME)
                .count(),
            1
        );

        h.bindings()
            .delete(&a, &DeleteParams::default())
            .await
            .unwrap();
        let only_b = wait_secret(&secrets, "Secret with only b's registry", |s| {
            auths(s).keys().cloned().collect::<Vec<_>>() == [OTHER_DOMAIN.to_owned()]
        })
        .await;
        assert_eq!(only_b.metadata.uid, uid, "the Secret was recreated");
        let owners = only_b.metadata.owner_references.unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].name, b);
        let sa = h.service_accounts(&ns).get("default").await.unwrap();
        assert!(has_ours(&sa), "b still needs the entry");
        h.wait_ready(&b, "True", Duration::from_secs(10)).await;
    })
    .await;
}
