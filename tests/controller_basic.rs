//! The controller end to end on the local control plane with the fake cloud: Secrets in every
//! selected namespace, ServiceAccounts bound without losing others' entries, status and
//! `kubectl wait`, cleanup on deletion, and invalid specs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod support;

use std::time::Duration;

use acr_credential_controller::runtime::ControllerConfig;
use base64::Engine;
use controller_common::{
    ACCOUNT, DOMAINS, Harness, ROLE, SECRET_NAME, TestBinding, auths, pull_secret_names,
    ready_condition, wait_sa, wait_secret,
};
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};

/// A binding of `policy` to the test instance in cn-hangzhou, for the namespaces `names`.
fn ready_binding(names: &[&str], policy: &str) -> TestBinding {
    TestBinding::new(policy).region("cn-hangzhou").names(names)
}

#[tokio::test]
async fn one_binding_several_namespaces_default_service_account_ready() {
    let h = Harness::new("ctrl-basic", 3600, "15m").await;
    let ns1 = h.env.namespace().to_owned();
    let ns2 = h.env.extra_namespace("ctrl-basic-b").await;
    let ns3 = h.env.extra_namespace("ctrl-basic-c").await;
    h.with_controller(async |h| {
        let name = format!("{}-one", h.id);
        h.bind(&name, &ready_binding(&[&ns1, &ns2, &ns3], &h.policy))
            .await;

        let b = h.wait_ready(&name, "True", Duration::from_secs(60)).await;
        let status = b.status.unwrap();
        assert_eq!(status.observed_generation, b.metadata.generation);
        let token = status.token.unwrap();
        let (issued, expires, renew) = (
            token.issued_at.unwrap().0,
            token.expires_at.unwrap().0,
            token.renew_at.unwrap().0,
        );
        assert!(
            issued < renew && renew < expires,
            "{issued} {renew} {expires}"
        );
        assert_eq!(
            status.namespaces.as_ref().unwrap().summary.as_deref(),
            Some("3/3")
        );
        assert_eq!(status.service_accounts.as_ref().unwrap().bound, 3);
        let mut domains = status.domains.clone();
        domains.sort();
        let mut expected: Vec<String> = DOMAINS.iter().map(|d| (*d).to_owned()).collect();
        expected.sort();
        assert_eq!(domains, expected);
        for t in [
            "Ready",
            "TokenIssued",
            "SecretsSynced",
            "ServiceAccountsBound",
        ] {
            let c = status.conditions.iter().find(|c| c.type_ == t).unwrap();
            assert_eq!(c.status, "True", "{c:?}");
        }

        for ns in [&ns1, &ns2, &ns3] {
            let secret = wait_secret(&h.secrets(ns), "pull Secret", |_| true).await;
            assert_eq!(
                secret.type_.as_deref(),
                Some("kubernetes.io/dockerconfigjson")
            );
            let a = auths(&secret);
            assert_eq!(a.len(), 2, "{:?}", a.keys());
            for d in DOMAINS {
                let (user, password, auth) = &a[d];
                assert!(
                    h.handle().registry_token_valid(password),
                    "token in {ns} not valid"
                );
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth)
                    .unwrap();
                assert_eq!(decoded, format!("{user}:{password}").as_bytes());
            }
            let owners = secret.metadata.owner_references.unwrap();
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].name, name);
            let sa = wait_sa(
                &h.service_accounts(ns),
                "default",
                "default SA bound",
                |sa| pull_secret_names(sa).contains(&SECRET_NAME.to_owned()),
            )
            .await;
            assert_eq!(
                pull_secret_names(&sa)
                    .iter()
                    .filter(|n| *n == SECRET_NAME)
                    .count(),
                1
            );
        }
        // One token for all namespaces.
        assert_eq!(h.handle().count_ok("cr:GetAuthorizationToken"), 1);

        let out = support::kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("arb/{name}"),
            "--timeout=30s",
        ]);
        assert!(
            out.status.success(),
            "kubectl wait: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;
}

#[tokio::test]
async fn service_accounts_keep_entries_others_added_and_concurrent_writers_win_too() {
    let h = Harness::new("ctrl-sa", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let sas = h.service_accounts(&ns);
    // A ServiceAccount that already lists other pull secrets.
    h.env
        .apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: builder}\nimagePullSecrets: [{name: theirs-1}, {name: theirs-2}]\n")
        .await;
    h.with_controller(async |h| {
    let name = format!("{}-sa", h.id);
    h.bind(&name, &h.test_binding().names(&[&ns]).all_service_accounts())
        .await;
    // A concurrent writer adds its own entry while the controller reconciles, many times.
    let writer = {
        let sas = sas.clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..15 {
                let Ok(sa) = sas.get("builder").await else {
                    continue;
                };
                let mut names = pull_secret_names(&sa);
                names.push(format!("writer-{i}"));
                let refs: Vec<_> = names
                    .iter()
                    .map(|n| serde_json::json!({"name": n}))
                    .collect();
                let patch = serde_json::json!([
                    {"op": "test", "path": "/metadata/resourceVersion", "value": sa.metadata.resource_version},
                    {"op": "replace", "path": "/imagePullSecrets", "value": refs},
                ]);
                let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
                if sas
                    .patch(
                        "builder",
                        &PatchParams::default(),
                        &Patch::<()>::Json(patch),
                    )
                    .await
                    .is_ok()
                {
                    written.push(format!("writer-{i}"));
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            written
        })
    };
    h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    let written = writer.await.unwrap();
    let sa = wait_sa(&sas, "builder", "builder bound", |sa| {
        pull_secret_names(sa).contains(&SECRET_NAME.to_owned())
    })
    .await;
    let names = pull_secret_names(&sa);
    assert_eq!(&names[..2], ["theirs-1", "theirs-2"], "{names:?}");
    assert_eq!(
        names.iter().filter(|n| *n == SECRET_NAME).count(),
        1,
        "{names:?}"
    );
    // Every entry the writer managed to write is still there: our version-checked patches
    // never overwrite a concurrent change.
    assert!(!written.is_empty());
    for w in &written {
        assert!(names.contains(w), "{w} lost: {names:?}");
    }
    let default = wait_sa(&sas, "default", "default bound", |sa| {
        pull_secret_names(sa).contains(&SECRET_NAME.to_owned())
    })
    .await;
    assert_eq!(
        pull_secret_names(&default)
            .iter()
            .filter(|n| *n == SECRET_NAME)
            .count(),
        1
    );
    // Steady state: a ServiceAccount created later is bound promptly.
    h.env
        .apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: late}\n")
        .await;
    wait_sa(&sas, "late", "late SA bound", |sa| {
        pull_secret_names(sa).contains(&SECRET_NAME.to_owned())
    })
    .await;
    })
    .await;
}

#[tokio::test]
async fn deleting_the_binding_removes_secrets_and_only_our_entries() {
    let h = Harness::new("ctrl-delete", 3600, "15m").await;
    let ns1 = h.env.namespace().to_owned();
    let ns2 = h.env.extra_namespace("ctrl-delete-b").await;
    h.env
        .apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default}\nimagePullSecrets: [{name: keep-me}]\n")
        .await;
    h.with_controller(async |h| {
        let name = format!("{}-del", h.id);
        h.bind(&name, &ready_binding(&[&ns1, &ns2], &h.policy))
            .await;
        h.wait_ready(&name, "True", Duration::from_secs(60)).await;
        let sa = wait_sa(&h.service_accounts(&ns1), "default", "bound", |sa| {
            pull_secret_names(sa).contains(&SECRET_NAME.to_owned())
        })
        .await;
        assert_eq!(pull_secret_names(&sa), ["keep-me", SECRET_NAME]);

        h.bindings()
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
        support::wait_until(Duration::from_secs(60), "binding gone", || {
            let api = h.bindings();
            let name = name.clone();
            async move {
                api.get_opt(&name)
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                    .then_some(())
            }
        })
        .await;
        for ns in [&ns1, &ns2] {
            support::wait_until(Duration::from_secs(30), "Secret deleted", || {
                let api = h.secrets(ns);
                async move {
                    api.get_opt(SECRET_NAME)
                        .await
                        .ok()
                        .flatten()
                        .is_none()
                        .then_some(())
                }
            })
            .await;
        }
        let sa = h.service_accounts(&ns1).get("default").await.unwrap();
        assert_eq!(pull_secret_names(&sa), ["keep-me"]);
        assert!(
            sa.metadata
                .annotations
                .unwrap_or_default()
                .contains_key("acrcredentials.io/added-image-pull-secrets")
                .then_some(())
                .is_none()
        );
        let sa2 = h.service_accounts(&ns2).get("default").await.unwrap();
        assert!(
            pull_secret_names(&sa2).is_empty(),
            "{:?}",
            pull_secret_names(&sa2)
        );
    })
    .await;
}

#[tokio::test]
async fn invalid_binding_is_not_ready_with_the_validation_message_and_touches_nothing() {
    let h = Harness::new("ctrl-invalid", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    h.with_controller(async |h| {
        let name = format!("{}-bad", h.id);
        // Both names and all: the schema's CEL rule is missing on 1.20, the code rule catches it.
        let both = format!("{{names: [{ns}], all: true}}");
        h.bind(&name, &h.test_binding().namespaces_as_written(&both))
            .await;
        let b = h.wait_ready(&name, "False", Duration::from_secs(60)).await;
        let status = b.status.unwrap();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason, "InvalidSpec");
        assert!(
            ready
                .message
                .contains("exactly one of names, all or selector"),
            "{}",
            ready.message
        );
        assert_eq!(status.observed_generation, b.metadata.generation);
        // Nothing else touched: no token requested, no Secret, no ServiceAccount entry.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(h.handle().count("cr:GetAuthorizationToken"), 0);
        assert!(h.secrets(&ns).get_opt(SECRET_NAME).await.unwrap().is_none());
        let out = support::kubectl(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("regarding.name={name}"),
            "-o",
            "name",
        ]);
        let _ = out; // Events are best effort on 1.20's events.k8s.io/v1 field selectors.

        // A missing policy is reported too.
        let other = format!("{}-nopolicy", h.id);
        let missing = TestBinding::new(&h.named("missing")).names(&[&ns]);
        h.bind(&other, &missing).await;
        let b = h.wait_ready(&other, "False", Duration::from_secs(60)).await;
        let ready = ready_condition(&b);
        assert_eq!(ready.reason, "PolicyNotFound");
    })
    .await;
}

#[tokio::test]
async fn a_same_named_secret_we_do_not_own_is_left_alone_and_reported() {
    let h = Harness::new("ctrl-foreign", 3600, "15m").await;
    let ns1 = h.env.namespace().to_owned();
    let ns2 = h.env.extra_namespace("ctrl-foreign-b").await;
    h.env
        .apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {SECRET_NAME}, namespace: {ns2}}}\nstringData: {{note: hands off}}\n"
        ))
        .await;
    let foreign = h.secrets(&ns2).get(SECRET_NAME).await.unwrap();
    h.with_controller(async |h| {
        let name = format!("{}-foreign", h.id);
        h.bind(&name, &ready_binding(&[&ns1, &ns2], &h.policy))
            .await;
        h.wait_ready(&name, "False", Duration::from_secs(60)).await;
        wait_secret(&h.secrets(&ns1), "our Secret in ns1", |_| true).await;
        support::wait_until(
            Duration::from_secs(30),
            "SecretOwnedByOthers reported",
            || {
                let api = h.bindings();
                let name = name.clone();
                async move {
                    let b = api.get(&name).await.map_err(|e| e.to_string())?;
                    let s = b.status.clone().unwrap_or_default();
                    let c = s
                        .conditions
                        .iter()
                        .find(|c| c.type_ == "SecretsSynced")
                        .cloned();
                    match c {
                        Some(c) if c.reason == "SecretOwnedByOthers" => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await;
        let after = h.secrets(&ns2).get(SECRET_NAME).await.unwrap();
        assert_eq!(
            after.metadata.resource_version, foreign.metadata.resource_version,
            "foreign Secret touched"
        );
        let status = h.bindings().get(&name).await.unwrap().status.unwrap();
        let ns = status.namespaces.unwrap();
        assert_eq!(ns.summary.as_deref(), Some("1/2"));
        assert_eq!(ns.failed[0].name, ns2);
        assert_eq!(ns.failed[0].reason, "SecretOwnedByOthers");
        // No ServiceAccount there points at a Secret that is not ours.
        let sa = h.service_accounts(&ns2).get("default").await.unwrap();
        assert!(!pull_secret_names(&sa).contains(&SECRET_NAME.to_owned()));
    })
    .await;
}

#[tokio::test]
async fn invalid_policy_is_reported_on_the_policy_and_its_bindings() {
    let h = Harness::new("ctrl-badpolicy", 3600, "2h").await;
    let ns = h.env.namespace().to_owned();
    h.with_controller(async |h| {
        let name = format!("{}-bp", h.id);
        h.bind(&name, &ready_binding(&[&ns], &h.policy)).await;
        let b = h.wait_ready(&name, "False", Duration::from_secs(60)).await;
        let ready = ready_condition(&b);
        assert_eq!(ready.reason, "PolicyNotReady");
        assert!(ready.message.contains("renewBefore"), "{}", ready.message);
        support::wait_until(Duration::from_secs(30), "policy Ready=False", || {
            let api = h.policies();
            let policy = h.policy.clone();
            async move {
                let p = api.get(&policy).await.map_err(|e| e.to_string())?;
                let c = p
                    .status
                    .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"));
                match c {
                    Some(c)
                        if c.status == "False"
                            && c.reason == "InvalidSpec"
                            && c.message.contains("renewBefore") =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await;
        assert_eq!(h.handle().count("cr:GetAuthorizationToken"), 0);
        assert!(h.secrets(&ns).get_opt(SECRET_NAME).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn policy_reports_when_its_assumed_role_credentials_expire() {
    let h = Harness::new("ctrl-credexp", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let hop = format!("{}-hop", h.id);
    h.add_policy(
        &hop,
        &format!("assumeRole: {{roleArn: \"acs:ram::{ACCOUNT}:role/{ROLE}\", duration: 1h}}\nrenewBefore: 15m"),
    )
    .await;
    // Policies refresh their status from the token manager on every resync.
    let running = h.start_with(ControllerConfig {
        resync: Duration::from_secs(3),
        ..h.config()
    });
    let name = format!("{}-hop", h.id);
    h.bind(&name, &ready_binding(&[&ns], &hop)).await;
    h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    let issued = jiff::Timestamp::now();

    let expires = support::wait_until(
        Duration::from_secs(30),
        "the policy's status.credentialsExpireAt",
        || {
            let api = h.policies();
            let hop = hop.clone();
            async move {
                let p = api.get(&hop).await.map_err(|e| e.to_string())?;
                p.status
                    .and_then(|s| s.credentials_expire_at)
                    .ok_or_else(|| "not set yet".to_string())
            }
        },
    )
    .await;
    // STS credentials of a 1h session: they expire about an hour after they were issued.
    let left = expires.0.duration_since(issued).as_secs();
    assert!((3300..=3610).contains(&left), "expires in {left} s");
    assert_eq!(h.handle().count_ok("sts:AssumeRole"), 1);
    running.stop().await;
}

/// Two controllers on one cluster, each with its own object selector (a sharded install): when
/// someone edits the pull Secret of the first one's namespace, the second one's namespace pass
/// leaves it alone, although that Secret is the controller's kind and none of the second one's
/// bindings selects the namespace; the first one repairs nothing it did not have to.
#[tokio::test]
async fn a_namespace_pass_leaves_namespaces_another_controllers_bindings_own() {
    let h = Harness::new("ctrl-shard-a", 3600, "15m").await;
    let g = Harness::new("ctrl-shard-b", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let other = g.env.namespace().to_owned();
    let running_g = g.start();
    h.with_controller(async |h| {
        let mine = h.named("mine");
        h.bind(&mine, &ready_binding(&[&ns], &h.policy)).await;
        let theirs = g.named("theirs");
        g.bind(&theirs, &ready_binding(&[&other], &g.policy)).await;
        h.wait_ready(&mine, "True", Duration::from_secs(60)).await;
        g.wait_ready(&theirs, "True", Duration::from_secs(60)).await;
        let before = wait_secret(&h.secrets(&ns), "the first controller's Secret", |_| true).await;

        // Someone else's edit: both controllers see it, and each touches the namespace.
        let patch = serde_json::json!({"metadata": {"labels": {"team": "edited-by-someone"}}});
        h.secrets(&ns)
            .patch(SECRET_NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        // Give both namespace passes (and a deletion's re-creation) time to happen.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = h.secrets(&ns).get(SECRET_NAME).await.unwrap();
        assert_eq!(
            after.metadata.uid, before.metadata.uid,
            "the pull Secret was deleted and created again"
        );
        assert_eq!(
            after.labels().get("team").map(String::as_str),
            Some("edited-by-someone"),
            "the edit someone else made was undone"
        );
        assert_eq!(auths(&after), auths(&before));
    })
    .await;
    running_g.stop().await;
}
