//! `kubectl acr explain`: the real binary, started as `kubectl-acr` (directly and through the
//! real `kubectl`), as a user holding only the read rights the README lists, against bindings
//! the real controller reconciles on the local control plane with the fake cloud. For each
//! "why not" (binding not reconciled yet, namespace not selected, not allowed by the policy,
//! ServiceAccount not selected, someone else's Secret of the same name, the cloud refusing the
//! token) and for the bound case, explain's verdict is checked, and so is what the reconciler
//! really did: whether the pull Secret is there and whose, whether the ServiceAccount lists it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use acr_credential_controller::cli::plugin::PLUGIN_BIN;
use acr_credential_controller::model::secret::{is_ours, owner_bindings};
use acr_credential_controller::model::service_accounts::recorded;
use controller_common::{
    Harness, OTHER_INSTANCE, OWNER_LABEL, SECRET_NAME, TestBinding, pull_secret_names,
};
use serde_json::Value;

const GAT: &str = "cr:GetAuthorizationToken";

/// A directory holding `kubectl-acr`, a link to the built binary; removed on drop.
struct PluginDir(PathBuf);

impl PluginDir {
    fn new(id: &str) -> PluginDir {
        let dir = std::env::temp_dir().join(format!("{id}-explain"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_acr-credential-controller"),
            dir.join(PLUGIN_BIN),
        )
        .unwrap();
        PluginDir(dir)
    }

    /// `kubectl acr <args>` by the real kubectl, with this directory first on PATH.
    fn kubectl_acr(&self, kubeconfig: &Path, args: &[&str]) -> String {
        let path = std::env::join_paths(
            std::iter::once(self.0.clone())
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
        )
        .unwrap();
        ok(Command::new("kubectl")
            .arg("acr")
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("running kubectl"))
    }

    /// `kubectl-acr explain <target> -l <selector> -o json`, run directly.
    fn explain_json(&self, kubeconfig: &Path, target: &str, selector: &str) -> Value {
        let out = ok(Command::new(self.0.join(PLUGIN_BIN))
            .args(["explain", target, "-l", selector, "-o", "json"])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env_remove("KUBECONFIG")
            .output()
            .expect("running kubectl-acr"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ok(o: Output) -> String {
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// The read-only ClusterRole the README's Day 2 section gives for the plugin.
fn readme_role() -> String {
    let text = std::fs::read_to_string(support::repo_root().join("README.md")).unwrap();
    let start = text
        .find("```yaml\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: acr-reader}")
        .expect("the README gives the plugin's read-only role");
    let body = &text[start + "```yaml\n".len()..];
    body[..body.find("```").unwrap()].trim_end().to_owned()
}

/// The explanation of binding `name` in an explain document.
fn of<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no binding {name} in {doc:#}"))
}

/// The verdict of binding `name`.
fn verdict(doc: &Value, name: &str) -> String {
    of(doc, name)["verdict"].as_str().unwrap().to_owned()
}

/// `(result, reason)` of one step of binding `name`.
fn step(doc: &Value, name: &str, step: &str) -> (String, String) {
    let s = of(doc, name)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == step)
        .unwrap_or_else(|| panic!("no step {step}"))
        .clone();
    (
        s["result"].as_str().unwrap().to_owned(),
        s["reason"].as_str().unwrap().to_owned(),
    )
}

/// What the reconciler really did in `ns`: the pull Secret (is it ours, and whose auths) and
/// whether ServiceAccount `sa` lists it, and whether the controller recorded adding it.
async fn actual(h: &Harness, ns: &str, sa: &str) -> (Option<(bool, Vec<String>)>, bool, bool) {
    let secret = h.secrets(ns).get_opt(SECRET_NAME).await.unwrap();
    let secret = secret.map(|s| (is_ours(&s), owner_bindings(&s).into_iter().collect()));
    let sa = h.service_accounts(ns).get(sa).await.unwrap();
    let listed = pull_secret_names(&sa).iter().any(|n| n == SECRET_NAME);
    (secret, listed, recorded(&sa).contains(SECRET_NAME))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_why_and_the_reconciler_agrees() {
    let h = Harness::new("explain", 3600, "15m").await;
    let plugin = PluginDir::new(&h.id);
    let selector = format!("{OWNER_LABEL}={}", h.id);
    let ns_good = h.env.namespace().to_owned();
    let ns_unselected = h.env.extra_namespace("explain-unsel").await;
    let ns_denied = h.env.extra_namespace("explain-denied").await;
    let ns_sa = h.env.extra_namespace("explain-sa").await;
    let ns_foreign = h.env.extra_namespace("explain-foreign").await;
    let ns_cloud = h.env.extra_namespace("explain-cloud").await;
    // The read rights the README lists, and nothing else: its role, under this test's name.
    let role = readme_role().replace("{name: acr-reader}", &format!("{{name: {}-explain}}", h.id));
    h.env
        .apply(&format!(
            r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader}}
---
{role}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {id}-explain}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {id}-explain}}
subjects: [{{kind: ServiceAccount, name: reader, namespace: {ns_good}}}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: builder, namespace: {ns_sa}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {SECRET_NAME}, namespace: {ns_foreign}}}
stringData: {{note: hands off}}
"#,
            id = h.id
        ))
        .await;
    let reader = h.service_account_kubeconfig(&ns_good, "reader").await;
    // Default ServiceAccounts exist before anything is explained.
    for ns in [
        &ns_good,
        &ns_unselected,
        &ns_denied,
        &ns_sa,
        &ns_foreign,
        &ns_cloud,
    ] {
        let sas = h.service_accounts(ns);
        support::wait_until(Duration::from_secs(60), "default ServiceAccount", || {
            let sas = sas.clone();
            async move { sas.get_opt("default").await.ok().flatten() }
        })
        .await;
    }

    // 1. Not reconciled yet: the binding exists, the controller has not run.
    let good = h.named("good");
    h.binding(
        &good,
        &format!(
            "{}  injectOnCreate: true\n",
            TestBinding::new(&h.policy).names(&[&ns_good]).spec()
        ),
    )
    .await;
    let target = format!("{ns_good}/default");
    let doc = plugin.explain_json(&reader, &target, &selector);
    assert_eq!(verdict(&doc, &good), "Progressing", "{doc:#}");
    assert_eq!(step(&doc, &good, "secret").1, "SecretAbsent");
    assert_eq!(step(&doc, &good, "injectOnCreate").1, "Patched");
    let table = plugin.kubectl_acr(&reader, &["explain", &target, "-l", &selector]);
    println!("$ kubectl acr explain {target}   # before the controller runs\n{table}");
    assert_eq!(actual(&h, &ns_good, "default").await, (None, false, false));

    // The other cases, and the controller.
    let unselected = h.named("unselected");
    h.bind(
        &unselected,
        &TestBinding::new(&h.policy).labelled("explain-no-such-label", &h.id),
    )
    .await;
    let strict = h.named("strict");
    h.add_policy(
        &strict,
        &format!(
            "allowedNamespaces: {{matchLabels: {{acr-allowed: {}}}}}",
            h.id
        ),
    )
    .await;
    let denied = h.named("denied");
    h.bind(&denied, &TestBinding::new(&strict).names(&[&ns_denied]))
        .await;
    let builder = h.named("builder");
    h.binding(
        &builder,
        &format!(
            "{}  serviceAccounts: {{names: [builder]}}\n",
            TestBinding::new(&h.policy).names(&[&ns_sa]).spec()
        ),
    )
    .await;
    let foreign = h.named("foreign");
    h.bind(&foreign, &TestBinding::new(&h.policy).names(&[&ns_foreign]))
        .await;
    let running = h.start();
    h.wait_ready(&good, "True", Duration::from_secs(60)).await;
    h.wait_ready(&builder, "True", Duration::from_secs(60))
        .await;
    h.wait_ready(&denied, "False", Duration::from_secs(60))
        .await;
    h.wait_ready(&foreign, "False", Duration::from_secs(60))
        .await;
    h.wait_ready_reason(
        &unselected,
        "True",
        Some("NoNamespacesSelected"),
        Duration::from_secs(60),
    )
    .await;

    // 2. Bound: the same binding, reconciled.
    let doc = plugin.explain_json(&reader, &target, &selector);
    assert_eq!(verdict(&doc, &good), "Bound", "{doc:#}");
    assert_eq!(
        step(&doc, &good, "entry"),
        ("Pass".into(), "AddedByController".into())
    );
    assert_eq!(doc["secret"]["managed"], true);
    assert_eq!(doc["secret"]["bindings"], serde_json::json!([good]));
    // Every other binding says why it does not reach this ServiceAccount.
    assert_eq!(verdict(&doc, &unselected), "NamespaceNotSelected");
    assert_eq!(verdict(&doc, &builder), "NamespaceNotSelected");
    let table = plugin.kubectl_acr(&reader, &["explain", &target, "--binding", &good]);
    println!("$ kubectl acr explain {target} --binding {good}\n{table}");
    assert!(table.contains(&format!(
        "AcrRegistryBinding {good} (policy {}): Bound",
        h.policy
    )));
    assert_eq!(
        actual(&h, &ns_good, "default").await,
        (Some((true, vec![good.clone()])), true, true)
    );

    // 3. Namespace not selected.
    let doc = plugin.explain_json(&reader, &format!("{ns_unselected}/default"), &selector);
    assert_eq!(
        verdict(&doc, &unselected),
        "NamespaceNotSelected",
        "{doc:#}"
    );
    assert_eq!(doc["secret"]["present"], false);
    assert_eq!(
        actual(&h, &ns_unselected, "default").await,
        (None, false, false)
    );

    // 4. Selected, but not allowed by the policy's allowedNamespaces.
    let doc = plugin.explain_json(&reader, &format!("{ns_denied}/default"), &selector);
    assert_eq!(verdict(&doc, &denied), "NamespaceNotAllowed", "{doc:#}");
    assert_eq!(step(&doc, &denied, "namespace").0, "Pass");
    assert_eq!(
        step(&doc, &denied, "lastError"),
        ("Fail".into(), "NamespaceNotAllowed".into())
    );
    assert_eq!(
        actual(&h, &ns_denied, "default").await,
        (None, false, false)
    );

    // 5. ServiceAccount not selected; its neighbour is.
    let doc = plugin.explain_json(&reader, &format!("{ns_sa}/default"), &selector);
    assert_eq!(
        verdict(&doc, &builder),
        "ServiceAccountNotSelected",
        "{doc:#}"
    );
    assert_eq!(step(&doc, &builder, "secret").0, "Pass");
    assert_eq!(
        actual(&h, &ns_sa, "default").await,
        (Some((true, vec![builder.clone()])), false, false)
    );
    let doc = plugin.explain_json(&reader, &format!("{ns_sa}/builder"), &selector);
    assert_eq!(verdict(&doc, &builder), "Bound", "{doc:#}");
    assert_eq!(
        actual(&h, &ns_sa, "builder").await,
        (Some((true, vec![builder.clone()])), true, true)
    );
    let table = plugin.kubectl_acr(&reader, &["explain", &ns_sa, "--binding", &builder]);
    println!("$ kubectl acr explain {ns_sa} --binding {builder}\n{table}");

    // 6. Someone else's Secret of the same name.
    let doc = plugin.explain_json(&reader, &format!("{ns_foreign}/default"), &selector);
    assert_eq!(verdict(&doc, &foreign), "SecretOwnedByOthers", "{doc:#}");
    assert_eq!(doc["secret"]["managed"], false);
    assert!(
        !doc["secret"]["writtenBy"].as_array().unwrap().is_empty(),
        "{doc:#}"
    );
    assert_eq!(
        actual(&h, &ns_foreign, "default").await,
        (Some((false, vec![])), false, false)
    );
    let table = plugin.kubectl_acr(
        &reader,
        &[
            "explain",
            &format!("{ns_foreign}/default"),
            "--binding",
            &foreign,
        ],
    );
    println!("$ kubectl acr explain {ns_foreign}/default --binding {foreign}\n{table}");

    // 7. The cloud refuses the token: a binding of another instance (no token held for it).
    h.handle().fail(GAT, 403, "Forbidden.RAM", None);
    let cloud = h.named("cloud");
    h.bind(
        &cloud,
        &TestBinding::new(&h.policy)
            .instance(OTHER_INSTANCE)
            .names(&[&ns_cloud]),
    )
    .await;
    let failed = h.wait_ready(&cloud, "False", Duration::from_secs(60)).await;
    let ready = controller_common::ready_condition(&failed);
    let doc = plugin.explain_json(&reader, &format!("{ns_cloud}/default"), &selector);
    assert_eq!(verdict(&doc, &cloud), ready.reason, "{doc:#}");
    assert_eq!(of(&doc, &cloud)["message"], ready.message.as_str());
    assert_eq!(
        step(&doc, &cloud, "lastError"),
        ("Fail".into(), ready.reason.clone())
    );
    assert_eq!(step(&doc, &cloud, "secret").1, "SecretAbsent");
    assert_eq!(actual(&h, &ns_cloud, "default").await, (None, false, false));
    let table = plugin.kubectl_acr(
        &reader,
        &[
            "explain",
            &format!("{ns_cloud}/default"),
            "--binding",
            &cloud,
        ],
    );
    println!("$ kubectl acr explain {ns_cloud}/default --binding {cloud}\n{table}");
    let json = ok(Command::new("kubectl")
        .args([
            "acr",
            "explain",
            &format!("{ns_cloud}/default"),
            "--binding",
            &cloud,
            "-o",
            "json",
        ])
        .env(
            "PATH",
            std::env::join_paths(
                std::iter::once(plugin.0.clone())
                    .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
            )
            .unwrap(),
        )
        .env("KUBECONFIG", &reader)
        .output()
        .unwrap());
    println!("$ kubectl acr explain {ns_cloud}/default --binding {cloud} -o json\n{json}");
    h.handle().clear_faults();

    let _ = std::fs::remove_file(&reader);
    running.stop().await;
}
