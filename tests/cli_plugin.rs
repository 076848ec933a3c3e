//! `kubectl acr`: the real binary, started as `kubectl-acr` through a link and through the real
//! `kubectl` (which finds plugins on PATH), against bindings the controller reconciles on the
//! local control plane. `status` as a table and as JSON, `renew` setting the rotation annotation,
//! and a read-only user for whom status works and renew names the missing right. The krew
//! manifest installs the binary under the name it answers to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use acr_credential_controller::api::rotation::requested_rotation;
use acr_credential_controller::cli::plugin::PLUGIN_BIN;
use controller_common::{Harness, OWNER_LABEL, SECRET_NAME, TestBinding};
use jiff::Timestamp;

/// A directory holding `kubectl-acr`, a link to the built binary; removed on drop.
struct PluginDir(PathBuf);

impl PluginDir {
    fn new(id: &str) -> PluginDir {
        let dir = std::env::temp_dir().join(format!("{id}-plugin"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_acr-credential-controller"),
            dir.join(PLUGIN_BIN),
        )
        .unwrap();
        PluginDir(dir)
    }

    fn bin(&self) -> PathBuf {
        self.0.join(PLUGIN_BIN)
    }

    /// `kubectl acr <args>` by the real kubectl, with this directory first on PATH.
    fn kubectl_acr(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        let path = std::env::join_paths(
            std::iter::once(self.0.clone())
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
        )
        .unwrap();
        Command::new("kubectl")
            .arg("acr")
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("running kubectl")
    }

    /// `kubectl-acr <args>` run directly, with `--kubeconfig`.
    fn direct(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new(self.bin())
            .args(args)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env_remove("KUBECONFIG")
            .output()
            .expect("running kubectl-acr")
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The output, which must be a success.
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// The table's rows as header → cell maps (cells split on the header's column starts).
fn table_rows(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let starts: Vec<(usize, &str)> = [
        "NAME",
        "READY",
        "REGISTRY",
        "NAMESPACES",
        "EXPIRES",
        "RENEWS",
        "FIRST FAILURE",
    ]
    .iter()
    .map(|h| {
        (
            header
                .find(h)
                .unwrap_or_else(|| panic!("no {h} in {header}")),
            *h,
        )
    })
    .collect();
    lines
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(i, (at, h))| {
                    let end = starts.get(i + 1).map_or(line.len(), |n| n.0);
                    (
                        (*h).to_owned(),
                        line[*at..end.min(line.len())].trim().to_owned(),
                    )
                })
                .collect()
        })
        .collect()
}

/// `47m` → 47; anything else fails the test.
fn minutes(cell: &str) -> u32 {
    cell.strip_suffix('m')
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("{cell:?} is not whole minutes"))
}

/// The rotation request annotation of binding `name`.
async fn binding_request(h: &Harness, name: &str) -> Option<String> {
    let b = h.bindings().get(name).await.unwrap();
    requested_rotation(&b.metadata).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_renew_through_kubectl_with_the_users_rights() {
    let h = Harness::new("plugin", 3600, "15m").await;
    let ns1 = h.env.namespace().to_owned();
    let ns2 = h.env.extra_namespace("plugin-b").await;
    // A Secret of our name that is not ours: the second binding cannot sync ns2.
    h.env
        .apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {SECRET_NAME}, namespace: {ns2}}}\nstringData: {{note: hands off}}\n"
        ))
        .await;
    let admin = support::cluster().kubeconfig.clone().unwrap();
    let plugin = PluginDir::new(&h.id);
    let good = h.named("good");
    let bad = h.named("bad");
    let selector = format!("{OWNER_LABEL}={}", h.id);
    let running = h.start();
    h.bind(&good, &TestBinding::new(&h.policy).names(&[&ns1]))
        .await;
    h.bind(&bad, &TestBinding::new(&h.policy).names(&[&ns1, &ns2]))
        .await;
    let good_b = h.wait_ready(&good, "True", Duration::from_secs(60)).await;
    h.wait_ready(&bad, "False", Duration::from_secs(60)).await;
    support::wait_until(Duration::from_secs(30), "ns2's failure in status", || {
        let api = h.bindings();
        let bad = bad.clone();
        async move {
            let b = api.get(&bad).await.map_err(|e| e.to_string())?;
            let failed = b.status.and_then(|s| s.namespaces).map(|n| n.failed);
            match failed.as_deref() {
                Some([one, ..]) => Ok(one.reason.clone()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    let bad_b = h.bindings().get(&bad).await.unwrap();

    // status, as a table, through the real kubectl.
    let table = ok(plugin.kubectl_acr(&admin, &["status", "-l", &selector]));
    println!("$ kubectl acr status\n{table}");
    let rows = table_rows(&table);
    assert_eq!(rows.len(), 2, "{table}");
    let (b, g) = (&rows[0], &rows[1]);
    assert_eq!(g["NAME"], good);
    assert_eq!(g["READY"], "True");
    assert_eq!(g["REGISTRY"], controller_common::INSTANCE);
    assert_eq!(g["NAMESPACES"], "1/1");
    assert_eq!(g["FIRST FAILURE"], "<none>");
    // A 1h token, renewed 15m before it expires: "59m"/"44m" or a minute less by now.
    assert!((57..=60).contains(&minutes(&g["EXPIRES"])), "{table}");
    assert!((42..=45).contains(&minutes(&g["RENEWS"])), "{table}");
    assert_eq!(b["NAME"], bad);
    assert!(b["READY"].starts_with("False ("), "{table}");
    assert_eq!(b["NAMESPACES"], "1/2");
    assert_eq!(
        b["FIRST FAILURE"],
        format!("{ns2}: SecretOwnedByOthers"),
        "{table}"
    );

    // status -o json, run directly under the plugin's name: what the bindings' status says.
    let json: serde_json::Value = serde_json::from_str(&ok(
        plugin.direct(&admin, &["status", &good, &bad, "-o", "json"])
    ))
    .unwrap();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 2);
    let by_name = |name: &str| items.iter().find(|i| i["name"] == name).unwrap().clone();
    let g = by_name(&good);
    let token = good_b.status.as_ref().unwrap().token.clone().unwrap();
    assert_eq!(g["policy"], h.policy.as_str());
    assert_eq!(g["ready"]["status"], "True");
    assert_eq!(g["ready"]["reason"], "Reconciled");
    assert_eq!(
        g["namespaces"],
        serde_json::json!({"synced": 1, "selected": 1})
    );
    assert_eq!(
        g["expiresAt"],
        serde_json::to_value(token.expires_at.unwrap()).unwrap()
    );
    assert_eq!(
        g["renewAt"],
        serde_json::to_value(token.renew_at.unwrap()).unwrap()
    );
    assert_eq!(g["firstFailure"], serde_json::Value::Null);
    assert_eq!(g["generation"], good_b.metadata.generation.unwrap());
    let b = by_name(&bad);
    let failed = &bad_b
        .status
        .as_ref()
        .unwrap()
        .namespaces
        .as_ref()
        .unwrap()
        .failed[0];
    assert_eq!(b["firstFailure"]["namespace"], ns2.as_str());
    assert_eq!(b["firstFailure"]["reason"], "SecretOwnedByOthers");
    assert_eq!(b["firstFailure"]["message"], failed.message.as_str());
    assert_eq!(b["ready"]["status"], "False");
    let one = ok(plugin.kubectl_acr(&admin, &["status", &good, "-o", "json"]));
    println!("$ kubectl acr status {good} -o json\n{one}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&one).unwrap()[0],
        g
    );

    // renew: the annotation appears with a fresh time, and a second renew changes it.
    assert_eq!(binding_request(&h, &good).await, None);
    let before = Timestamp::now();
    let said = ok(plugin.kubectl_acr(&admin, &["renew", &good]));
    let after = Timestamp::now();
    println!("$ kubectl acr renew {good}\n{said}");
    assert_eq!(
        said,
        format!("Manually triggered rotation for AcrRegistryBinding {good}\n")
    );
    let first = binding_request(&h, &good).await.expect("annotation set");
    let at: Timestamp = first.parse().unwrap();
    assert!(
        before <= at && at <= after,
        "{first} not in [{before}, {after}]"
    );
    ok(plugin.kubectl_acr(&admin, &["renew", &good]));
    let second = binding_request(&h, &good).await.unwrap();
    assert_ne!(first, second);
    assert_eq!(binding_request(&h, &bad).await, None);

    // --all (with a selector) reaches both; --policy annotates the policy and names its users.
    let said = ok(plugin.kubectl_acr(&admin, &["renew", "--all", "-l", &selector]));
    assert_eq!(said.lines().count(), 2, "{said}");
    let third = binding_request(&h, &good).await.unwrap();
    assert_ne!(third, second);
    assert!(binding_request(&h, &bad).await.is_some());
    let said = ok(plugin.kubectl_acr(&admin, &["renew", "--policy", &h.policy]));
    println!("$ kubectl acr renew --policy {}\n{said}", h.policy);
    let mut users = [good.as_str(), bad.as_str()];
    users.sort();
    assert_eq!(
        said,
        format!(
            "Manually triggered rotation for AcrCredentialPolicy {} (bindings: {})\n",
            h.policy,
            users.join(", ")
        )
    );
    let policy = h.policies().get(&h.policy).await.unwrap();
    assert!(requested_rotation(&policy.metadata).is_some());
    // Only the annotation changed: no new generation.
    assert_eq!(
        h.bindings().get(&good).await.unwrap().metadata.generation,
        good_b.metadata.generation
    );

    // A missing binding is named.
    let missing = plugin.direct(&admin, &["renew", "no-such-binding"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing)
            .contains("acrregistrybindings.acrcredentials.io \"no-such-binding\" not found"),
        "{}",
        stderr(&missing)
    );

    // A user with read rights only: status works, renew fails naming the right it lacks.
    let ns = h.env.namespace().to_owned();
    h.env
        .apply(&format!(
            r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {id}-reader}}
rules:
  - {{apiGroups: [acrcredentials.io], resources: [acrregistrybindings, acrcredentialpolicies], verbs: [get, list, watch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {id}-reader}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {id}-reader}}
subjects: [{{kind: ServiceAccount, name: reader, namespace: {ns}}}]
"#,
            id = h.id
        ))
        .await;
    let reader = h.service_account_kubeconfig(&ns, "reader").await;
    let table = ok(plugin.kubectl_acr(&reader, &["status", &good]));
    assert_eq!(table_rows(&table)[0]["NAME"], good);
    let denied = plugin.kubectl_acr(&reader, &["renew", &good]);
    println!(
        "$ kubectl acr renew {good}   # as a read-only user\n{}",
        stderr(&denied)
    );
    assert_eq!(denied.status.code(), Some(2), "{}", stdout(&denied));
    assert!(
        stderr(&denied).contains("\"patch\" right on acrregistrybindings.acrcredentials.io"),
        "{}",
        stderr(&denied)
    );
    assert_eq!(binding_request(&h, &good).await.unwrap(), third);
    let denied = plugin.kubectl_acr(&reader, &["renew", "--policy", &h.policy]);
    assert!(
        stderr(&denied).contains("\"patch\" right on acrcredentialpolicies.acrcredentials.io"),
        "{}",
        stderr(&denied)
    );

    // --context picks a context of a merged KUBECONFIG list: the reader's first (current),
    // the admin's by name.
    let admin_context = {
        let text = std::fs::read_to_string(&admin).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        v["current-context"].as_str().unwrap().to_owned()
    };
    let list = std::env::join_paths([&reader, &admin]).unwrap();
    let run_listed = |args: &[&str]| {
        Command::new(plugin.bin())
            .args(args)
            .env("KUBECONFIG", &list)
            .output()
            .unwrap()
    };
    assert_eq!(run_listed(&["renew", &good]).status.code(), Some(2));
    ok(run_listed(&["renew", &good, "--context", &admin_context]));
    assert_ne!(binding_request(&h, &good).await.unwrap(), third);

    let _ = std::fs::remove_file(&reader);
    running.stop().await;
}

/// The krew manifest is a template a release fills in; filled in, it installs the binary under
/// the name the binary dispatches on, for Linux on amd64 and arm64.
#[test]
fn the_krew_manifest_installs_the_binary_under_its_plugin_name() {
    let path = support::repo_root().join("deploy/krew/acr.yaml");
    let template = std::fs::read_to_string(&path).unwrap();
    // Every placeholder is one a release knows how to fill.
    let placeholders: BTreeSet<&str> = template
        .match_indices("${")
        .map(|(i, _)| {
            let rest = &template[i + 2..];
            &rest[..rest.find('}').unwrap()]
        })
        .collect();
    assert_eq!(
        placeholders,
        BTreeSet::from(["SHA256_LINUX_AMD64", "SHA256_LINUX_ARM64", "VERSION"])
    );
    let filled = template
        .replace("${VERSION}", "1.2.3")
        .replace("${SHA256_LINUX_AMD64}", &"a".repeat(64))
        .replace("${SHA256_LINUX_ARM64}", &"b".repeat(64));
    let m: serde_yaml::Value = serde_yaml::from_str(&filled).unwrap();
    assert_eq!(
        m["apiVersion"].as_str(),
        Some("krew.googlecontainertools.github.com/v1alpha2")
    );
    assert_eq!(m["kind"].as_str(), Some("Plugin"));
    // kubectl runs `kubectl-<name>` for `kubectl <name>`.
    let name = m["metadata"]["name"].as_str().unwrap();
    assert_eq!(format!("kubectl-{name}"), PLUGIN_BIN);
    assert_eq!(m["spec"]["version"].as_str(), Some("v1.2.3"));
    let mut platforms = BTreeSet::new();
    for p in m["spec"]["platforms"].as_sequence().unwrap() {
        let labels = &p["selector"]["matchLabels"];
        let (os, arch) = (
            labels["os"].as_str().unwrap(),
            labels["arch"].as_str().unwrap(),
        );
        platforms.insert(format!("{os}/{arch}"));
        assert_eq!(p["bin"].as_str(), Some(PLUGIN_BIN));
        let files = p["files"].as_sequence().unwrap();
        assert!(
            files.iter().any(|f| f["from"].as_str() == Some(PLUGIN_BIN)),
            "{files:?}"
        );
        let uri = p["uri"].as_str().unwrap();
        assert!(
            uri.starts_with("https://") && uri.contains("v1.2.3"),
            "{uri}"
        );
        assert!(uri.ends_with(&format!("_{os}_{arch}.tar.gz")), "{uri}");
        let sha = p["sha256"].as_str().unwrap();
        assert!(sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()));
    }
    assert_eq!(
        platforms,
        BTreeSet::from(["linux/amd64".to_owned(), "linux/arm64".to_owned()])
    );
    // The binary, installed under that name, is the plugin.
    let dir = PluginDir::new(&format!("krew-{}", support::random_suffix(6)));
    let help = ok(Command::new(dir.bin()).arg("--help").output().unwrap());
    assert!(help.contains("Usage: kubectl acr <COMMAND>"), "{help}");
    assert!(help.contains("status") && help.contains("renew"), "{help}");
}
