//! End-to-end pulls on a kubelet: a kubelet 1.20.2 (`scripts/kubelet.sh`, built from the same
//! Debian source as the control plane) registered as a node of the local control plane, on the
//! containerd of the pull chain (`scripts/pull-chain.sh`) whose registry takes its tokens from
//! the fake cloud. Pods name the node directly (`nodeName`), pull with `imagePullPolicy: Always`
//! and mount no ServiceAccount token; the API server's ServiceAccount admission copies the
//! ServiceAccount's `imagePullSecrets` into them, as in any cluster.
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
use e2e_common::PullHarness;
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
    fn start(chain_dir: &Path, name: &str) -> Node {
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
        let out = Command::new("bash")
            .arg(kubelet_script())
            .arg("up")
            .arg(&node.chain_dir)
            .arg(&node.kubeconfig)
            .arg(&node.name)
            .output()
            .unwrap();
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

/// Deletes the Pod at once; the kubelet stops its sandbox, and the chain's teardown stops any
/// shim still running.
async fn force_delete(api: &Api<Pod>, name: &str) {
    api.delete(name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
}

#[tokio::test]
async fn on_a_kubelet_a_bound_service_accounts_pod_pulls_and_runs_and_an_unselected_namespaces_pod_gets_the_registrys_401()
 {
    let started = Instant::now();
    let p = PullHarness::new("e2e-kubelet", 3600, "15m").await;
    let node_name = format!("acr-e2e-{}", support::random_suffix(6));
    let node = Node::start(&p.chain.dir, &node_name);
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
        let phase = support::wait_until(Duration::from_secs(60), "Pod finished", || {
            let pods = pods.clone();
            async move {
                let phase = pods
                    .get("private-app")
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
        .await;
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
    eprintln!("kubelet test took {:?}", started.elapsed());
}
