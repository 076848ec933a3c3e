//! End-to-end pulls on a kubelet: a kubelet 1.20.2 (`scripts/kubelet.sh`, built from the same
//! Debian source as the control plane) registered as a node of the local control plane, on the
//! containerd of the pull chain (`scripts/pull-chain.sh`) whose registry takes its tokens from
//! the fake cloud. Pods name the node directly (`nodeName`), pull with `imagePullPolicy: Always`
//! and mount no ServiceAccount token; the API server's ServiceAccount admission copies the
//! ServiceAccount's `imagePullSecrets` into them, as in any cluster.
//!
//! Three Pods: one of a ServiceAccount the controller bound pulls with its Secret and runs; one
//! in a namespace no binding selects gets `ErrImagePull` with the registry's 401; then the kubelet
//! is restarted with `acr-credential-provider` as its image credential provider (1.20: feature
//! gate `KubeletCredentialProviders`, `credentialprovider.kubelet.k8s.io/v1alpha1`, node identity
//! through the fake's ECS metadata) and a Pod with no pull Secret at all pulls and runs.
//!
//! One node per test binary: the tests here run one after another in one test function, so the
//! kubelet is started once. Dropping [`Node`] stops it by PID, restores the sysctls it changed
//! and deletes its Node object, also after a failed assertion; if the binary dies without
//! unwinding, the chain's watchdog stops the kubelet with the rest of the chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod e2e_common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use controller_common::{SECRET_NAME, pull_secret_names, wait_sa};
use e2e_common::{INSTANCE, NODE_ROLE, PullHarness};
use k8s_openapi::api::core::v1::{Event, Node as NodeObject, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

fn kubelet_script() -> PathBuf {
    support::repo_root().join("scripts/kubelet.sh")
}

/// A kubelet on the chain's containerd, registered as node `name`; stopped on drop.
struct Node {
    name: String,
    chain_dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Node {
    /// Starts the kubelet; with `provider`, (the kubelet's `CredentialProviderConfig` file, the
    /// folder holding the plugin) it runs image credential providers.
    fn start(chain_dir: &Path, name: &str, provider: Option<(&Path, &Path)>) -> Node {
        let built = Command::new("bash")
            .arg(kubelet_script())
            .arg("path")
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "no kubelet built: run `scripts/kubelet.sh build` once (about 20 minutes, cached)"
        );
        let kubeconfig = support::cluster()
            .kubeconfig
            .clone()
            .expect("the kubelet needs the local control plane's kubeconfig file");
        let node = Node {
            name: name.to_owned(),
            chain_dir: chain_dir.to_owned(),
            kubeconfig,
        };
        let mut up = Command::new("bash");
        up.arg(kubelet_script())
            .arg("up")
            .arg(&node.chain_dir)
            .arg(&node.kubeconfig)
            .arg(&node.name);
        if let Some((config, bin_dir)) = provider {
            up.env("ACC_KUBELET_PROVIDER_CONFIG", config)
                .env("ACC_KUBELET_PROVIDER_BIN_DIR", bin_dir);
        }
        let out = up.output().unwrap();
        assert!(
            out.status.success(),
            "kubelet.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(kubelet_script())
            .arg("down")
            .arg(&self.chain_dir)
            .status();
        // After a failed test, Pods left on the stopped node would hold their namespaces in
        // Terminating: nothing confirms their deletion any more.
        let selector = format!("spec.nodeName={}", self.name);
        let kubectl = |args: &[&str]| {
            let _ = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args)
                .output();
        };
        kubectl(&[
            "delete",
            "pods",
            "--all-namespaces",
            "--field-selector",
            &selector,
            "--grace-period=0",
            "--force",
        ]);
        kubectl(&[
            "delete",
            "node",
            &self.name,
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

/// A Pod of ServiceAccount `sa` on `node` running `image`, pulled on every start.
fn pod(name: &str, node: &str, sa: &str, image: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "serviceAccountName": sa,
            "automountServiceAccountToken": false,
            "restartPolicy": "Never",
            "containers": [{"name": "app", "image": image, "imagePullPolicy": "Always"}],
        },
    }))
    .unwrap()
}

/// The Pod's Events, oldest first, as `reason: message` lines.
async fn events(client: &kube::Client, ns: &str, pod: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut list = api
        .list(&ListParams::default().fields(&format!("involvedObject.name={pod}")))
        .await
        .unwrap()
        .items;
    list.sort_by_key(|e| {
        e.first_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
    });
    list.into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default().trim().to_owned(),
            )
        })
        .filter(|(reason, _)| reason != "MissingClusterDNS")
        .collect()
}

fn print_events(ns: &str, pod: &str, events: &[(String, String)]) {
    eprintln!("Events of Pod {ns}/{pod}:");
    for (reason, message) in events {
        eprintln!("  {reason:<10} {message}");
    }
}

/// Waits until the Pod's Events satisfy `check`; returns them.
async fn wait_events(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    what: &str,
    check: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    support::wait_until(Duration::from_secs(60), what, || {
        let check = &check;
        async move {
            let ev = events(client, ns, pod).await;
            if check(&ev) {
                Ok(ev)
            } else {
                Err(format!("{ev:?}"))
            }
        }
    })
    .await
}

/// Writes the plugin's configuration, the kubelet's `CredentialProviderConfig` (v1alpha1, as
/// kubelet 1.20 reads it) and a plugin folder holding `acr-credential-provider` into the chain's
/// folder; returns (kubelet config, plugin folder).
fn provider_files(chain_dir: &Path, registry: &str, cloud: &url::Url) -> (PathBuf, PathBuf) {
    let dir = chain_dir.join("provider");
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_acr-credential-provider"),
        bin_dir.join("acr-credential-provider"),
    )
    .unwrap();
    let base = cloud.as_str().trim_end_matches('/');
    let host = registry.split(':').next().unwrap();
    let plugin_config = dir.join("acr-credential-provider.yaml");
    std::fs::write(
        &plugin_config,
        format!(
            "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialProviderConfig\nregion: cn-hangzhou\n\
             identity: {{node: {{}}}}\nregistries:\n  - {{instanceId: {INSTANCE}, domains: [\"{host}\"]}}\n\
             personalEdition: false\nendpoints: {{sts: '{base}', cr: '{base}', metadata: '{base}'}}\n"
        ),
    )
    .unwrap();
    let kubelet_config = dir.join("credential-providers.yaml");
    std::fs::write(
        &kubelet_config,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1alpha1\nkind: CredentialProviderConfig\nproviders:\n\
             \x20 - name: acr-credential-provider\n\
             \x20   apiVersion: credentialprovider.kubelet.k8s.io/v1alpha1\n\
             \x20   matchImages: [\"{registry}\"]\n\
             \x20   defaultCacheDuration: 1m\n\
             \x20   args: [--config, \"{}\"]\n",
            plugin_config.display()
        ),
    )
    .unwrap();
    (kubelet_config, bin_dir)
}

/// Waits until the Pod ended; its phase.
async fn wait_finished(api: &Api<Pod>, name: &str) -> String {
    support::wait_until(Duration::from_secs(60), "Pod finished", || {
        let api = api.clone();
        async move {
            let phase = api
                .get(name)
                .await
                .map_err(|e| e.to_string())?
                .status
                .and_then(|s| s.phase)
                .unwrap_or_default();
            match phase.as_str() {
                "Succeeded" | "Failed" => Ok(phase),
                _ => Err(phase),
            }
        }
    })
    .await
}

/// Deletes the Pod at once; the kubelet stops its sandbox, and the chain's teardown stops any
/// shim still running.
async fn force_delete(api: &Api<Pod>, name: &str) {
    api.delete(name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
}

#[tokio::test]
async fn on_a_kubelet_pods_pull_with_the_controllers_secret_or_through_the_credential_provider_and_with_neither_get_the_registrys_401()
 {
    let started = Instant::now();
    let p = PullHarness::new("e2e-kubelet", 3600, "15m").await;
    let node_name = format!("acr-e2e-{}", support::random_suffix(6));
    let node = Node::start(&p.chain.dir, &node_name, None);
    eprintln!("node {node_name} Ready after {:?}", started.elapsed());
    let h = &p.h;
    let client = h.client();
    let ns = h.env.namespace().to_owned();
    let unselected = h.env.extra_namespace("e2e-kubelet-unselected").await;
    let image = p.chain.app_image.clone();
    let nodes: Api<NodeObject> = Api::all(client.clone());
    assert!(nodes.get_opt(&node.name).await.unwrap().is_some());

    h.with_controller(async |h| {
        let name = h.named("kubelet");
        h.bind(&name, &h.test_binding().names(&[&ns])).await;
        h.wait_ready(&name, "True", Duration::from_secs(60)).await;
        wait_sa(&h.service_accounts(&ns), "default", "default bound", |sa| {
            pull_secret_names(&sa.clone()).contains(&SECRET_NAME.to_owned())
        })
        .await;

        // (a) The bound ServiceAccount's Pod: the kubelet pulls with the controller's Secret.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let t = Instant::now();
        let created = pods
            .create(
                &PostParams::default(),
                &pod("private-app", &node.name, "default", &image),
            )
            .await
            .unwrap();
        let copied: Vec<_> = created
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(
            copied,
            vec![SECRET_NAME.to_owned()],
            "admission copied the SA's Secret"
        );
        let phase = wait_finished(&pods, "private-app").await;
        let ev = wait_events(&client, &ns, "private-app", "Started event", |ev| {
            ev.iter().any(|(r, _)| r == "Started")
        })
        .await;
        print_events(&ns, "private-app", &ev);
        eprintln!("Pod private-app {phase} after {:?}", t.elapsed());
        assert_eq!(phase, "Succeeded", "{ev:?}");
        let reasons: Vec<&str> = ev.iter().map(|(r, _)| r.as_str()).collect();
        for expected in ["Pulling", "Pulled", "Created", "Started"] {
            assert!(reasons.contains(&expected), "no {expected} Event: {ev:?}");
        }
        assert!(
            ev.iter().any(|(r, m)| r == "Pulled"
                && m.starts_with(&format!("Successfully pulled image \"{image}\""))),
            "{ev:?}"
        );
        assert!(!reasons.contains(&"Failed"), "{ev:?}");
        let log = h.handle().log();
        assert!(
            log.iter()
                .any(|e| e.api.starts_with("registry:") && e.status == 200),
            "the kubelet's pull did not get a token from the realm: {log:?}"
        );

        // (b) A namespace no binding selects: no Secret, the registry refuses the pull.
        wait_sa(
            &h.service_accounts(&unselected),
            "default",
            "default SA",
            |_| true,
        )
        .await;
        let other: Api<Pod> = Api::namespaced(client.clone(), &unselected);
        let t = Instant::now();
        let created = other
            .create(
                &PostParams::default(),
                &pod("private-app", &node.name, "default", &image),
            )
            .await
            .unwrap();
        assert_eq!(
            created.spec.and_then(|s| s.image_pull_secrets),
            None,
            "an unselected namespace's Pod has no pull Secret"
        );
        let pull_refused = |(r, m): &(String, String)| {
            r == "Failed"
                && m.starts_with(&format!("Failed to pull image \"{image}\""))
                && m.contains("401 Unauthorized")
        };
        let ev = wait_events(
            &client,
            &unselected,
            "private-app",
            "the registry's 401",
            |ev| {
                ev.iter().any(pull_refused)
                    && ev
                        .iter()
                        .any(|(r, m)| r == "Failed" && m == "Error: ErrImagePull")
            },
        )
        .await;
        print_events(&unselected, "private-app", &ev);
        eprintln!("ErrImagePull after {:?}", t.elapsed());
        support::wait_until(
            Duration::from_secs(30),
            "container waiting on the pull",
            || {
                let other = other.clone();
                async move {
                    let waiting = other
                        .get("private-app")
                        .await
                        .map_err(|e| e.to_string())?
                        .status
                        .and_then(|s| s.container_statuses)
                        .and_then(|c| c.into_iter().next())
                        .and_then(|c| c.state)
                        .and_then(|s| s.waiting)
                        .and_then(|w| w.reason);
                    match waiting.as_deref() {
                        Some("ErrImagePull" | "ImagePullBackOff") => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await;

        force_delete(&pods, "private-app").await;
        force_delete(&other, "private-app").await;
    })
    .await;
    drop(node);
    eprintln!("Secret pulls took {:?}", started.elapsed());

    // (c) The kubelet runs `acr-credential-provider` (node identity: the ECS metadata role) and
    // a Pod with no pull Secret at all, in the namespace no binding selects, pulls and runs.
    let t = Instant::now();
    let (config, bin_dir) = provider_files(&p.chain.dir, &p.chain.registry, &h.fake.base_url());
    let node = Node::start(
        &p.chain.dir,
        &format!("{node_name}-provider"),
        Some((&config, &bin_dir)),
    );
    eprintln!(
        "node {} (with the provider) Ready after {:?}",
        node.name,
        t.elapsed()
    );
    let handle = h.handle();
    handle.clear_log();
    let other: Api<Pod> = Api::namespaced(client.clone(), &unselected);
    let t = Instant::now();
    let created = other
        .create(
            &PostParams::default(),
            &pod("provider-app", &node.name, "default", &image),
        )
        .await
        .unwrap();
    assert_eq!(
        created.spec.and_then(|s| s.image_pull_secrets),
        None,
        "the Pod has no pull Secret"
    );
    let phase = wait_finished(&other, "provider-app").await;
    let ev = wait_events(
        &client,
        &unselected,
        "provider-app",
        "Started event",
        |ev| ev.iter().any(|(r, _)| r == "Started"),
    )
    .await;
    print_events(&unselected, "provider-app", &ev);
    eprintln!("Pod provider-app {phase} after {:?}", t.elapsed());
    assert_eq!(phase, "Succeeded", "{ev:?}");
    assert!(
        ev.iter().any(|(r, m)| r == "Pulled"
            && m.starts_with(&format!("Successfully pulled image \"{image}\""))),
        "{ev:?}"
    );
    let log = handle.log();
    for e in &log {
        eprintln!(
            "  fake cloud: {} {} {:?} {:?}",
            e.api, e.status, e.identity, e.code
        );
    }
    assert!(
        log.iter().any(|e| e.api.contains("GetAuthorizationToken")
            && e.status == 200
            && e.identity.as_deref().is_some_and(|i| i.contains(NODE_ROLE))),
        "the provider did not get a token as the node's role"
    );
    assert!(
        log.iter()
            .any(|e| e.api.starts_with("registry:") && e.status == 200),
        "the pull did not get a token from the realm"
    );
    force_delete(&other, "provider-app").await;
    drop(node);
    eprintln!("kubelet test took {:?}", started.elapsed());
}
