//! End-to-end pulls on a kubelet: a kubelet 1.20.2 (`scripts/kubelet.sh`, built from the same
//! Debian source as the control plane) registered as a node of the local control plane, on the
//! containerd of the pull chain (`scripts/pull-chain.sh`) whose registry takes its tokens from
//! the fake cloud. Pods name the node directly (`nodeName`), pull with `imagePullPolicy: Always`
//! and mount no ServiceAccount token; the API server's ServiceAccount admission copies the
//! ServiceAccount's `imagePullSecrets` into them, as in any cluster.
//!
//! Four Pods: one of a ServiceAccount the controller bound pulls with its Secret and runs; one
//! in a namespace no binding selects gets `ErrImagePull` with the registry's 401; one whose
//! ServiceAccount is created just before it, under an `injectOnCreate` binding with the
//! controller's webhook on loopback (as in `webhook_inject.rs`), pulls on the first try; then
//! the kubelet is restarted with `acr-credential-provider` as its image credential provider
//! (1.20: feature gate `KubeletCredentialProviders`, `credentialprovider.kubelet.k8s.io/v1alpha1`,
//! node identity through the fake's ECS metadata) and a Pod with no pull Secret at all pulls and
//! runs.
//!
//! One node per test binary: the steps run one after another in one test function, on one
//! kubelet, restarted once for the provider. Dropping [`Node`] stops it by PID, restores the sysctls it changed
//! and deletes its Node object, also after a failed assertion; if the binary dies without
//! unwinding, the chain's watchdog stops the kubelet with the rest of the chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod e2e_common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use acr_credential_controller::runtime::ControllerConfig;
use acr_credential_controller::webhook::certs::{CertTimings, ServingNames};
use acr_credential_controller::webhook::{
    CertSource, Managed, OPT_OUT_LABEL, PATH, Settings, WebhookConfig,
};
use controller_common::{Harness, SECRET_NAME, pull_secret_names, wait_sa, wait_secret};
use e2e_common::{INSTANCE, NODE_ROLE, PullHarness};
use k8s_openapi::api::core::v1::{Event, Node as NodeObject, Pod, ServiceAccount};
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

/// The label that puts a namespace under the injectOnCreate binding and the webhook.
const SELECT_LABEL: &str = "acrcredentials.io/test-webhook";
/// The webhook's certificate Secret, in the controller's namespace.
const CERT_SECRET: &str = "acr-credential-controller-webhook-tls";

struct Webhook {
    port: u16,
    configuration: String,
}

impl Webhook {
    fn config(&self, h: &Harness) -> ControllerConfig {
        ControllerConfig {
            webhook: Some(WebhookConfig {
                address: format!("127.0.0.1:{}", self.port).parse().unwrap(),
                settings: Settings::new(SECRET_NAME, h.env.namespace()),
                certs: CertSource::Managed(Managed {
                    namespace: h.env.namespace().to_owned(),
                    certificate_secret_name: CERT_SECRET.to_owned(),
                    configuration_name: self.configuration.clone(),
                    serving_names: ServingNames {
                        dns_names: vec![],
                        ip_addresses: vec!["127.0.0.1".parse().unwrap()],
                    },
                    timings: CertTimings {
                        validity: Duration::from_secs(3600),
                        renew_before: Duration::from_secs(600),
                        overlap: Duration::from_secs(2),
                    },
                }),
            }),
            ..h.config()
        }
    }
}

/// The test's MutatingWebhookConfiguration for ServiceAccounts created in namespaces labelled
/// for it, with the URL on loopback (the controller publishes the caBundle).
async fn webhook_configuration(h: &Harness) -> Webhook {
    let w = Webhook {
        port: e2e_common::free_port(),
        configuration: format!("acr-webhook-{}", h.id),
    };
    h.env
        .apply(&format!(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: {name}}}\nwebhooks:\n  - name: namespaces.{id}.acrcredentials.io\n    namespaceSelector: {{matchLabels: {{{SELECT_LABEL}: {id}}}}}\n    objectSelector: {{matchExpressions: [{{key: {OPT_OUT_LABEL}, operator: NotIn, values: [\"false\"]}}]}}\n    clientConfig: {{url: \"https://127.0.0.1:{port}{PATH}\"}}\n    rules: [{{apiGroups: [\"\"], apiVersions: [v1], operations: [CREATE], resources: [serviceaccounts], scope: Namespaced}}]\n    failurePolicy: Ignore\n    matchPolicy: Equivalent\n    sideEffects: None\n    timeoutSeconds: 5\n    admissionReviewVersions: [v1]\n    reinvocationPolicy: Never\n",
            name = w.configuration,
            id = h.id,
            port = w.port,
        ))
        .await;
    w
}

/// A fresh namespace labelled for the injectOnCreate binding; deleted with the env.
async fn labelled_namespace(h: &Harness, slug: &str) -> String {
    let labels = serde_json::json!({SELECT_LABEL: h.id, support::TEST_LABEL: "true"});
    h.env
        .labelled_namespace(&support::unique_name(slug), labels)
        .await
}

/// Waits until the webhook mutates: a probe ServiceAccount's create response carries the
/// reference.
async fn wait_mutating(h: &Harness, ns: &str) {
    let n = std::sync::atomic::AtomicU32::new(0);
    support::wait_until(Duration::from_secs(60), "the webhook to mutate", || async {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": format!("probe-{i}")}}))
                .unwrap();
        let sa = h
            .service_accounts(ns)
            .create(&PostParams::default(), &sa)
            .await
            .unwrap();
        if pull_secret_names(&sa).iter().any(|n| n == SECRET_NAME) {
            Ok(())
        } else {
            Err(format!("{:?}", pull_secret_names(&sa)))
        }
    })
    .await;
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
             source: {{workerRole: {{}}}}\nregistries:\n  - {{instanceId: {INSTANCE}, domains: [\"{host}\"]}}\n\
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

/// The pull Secrets admission gave a created Pod.
fn pod_pull_secrets(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

/// Waits until Pod `name` in `ns` ended and its `Started` Event is there; prints its Events and
/// how long it took since `t` (`label` names the case). The phase and the Events.
async fn wait_ran(
    client: &kube::Client,
    ns: &str,
    name: &str,
    label: &str,
    t: Instant,
) -> (String, Vec<(String, String)>) {
    let phase = wait_finished(&Api::namespaced(client.clone(), ns), name).await;
    let ev = wait_events(client, ns, name, "Started event", |ev| {
        ev.iter().any(|(r, _)| r == "Started")
    })
    .await;
    print_events(ns, name, &ev);
    eprintln!("Pod {label} {phase} after {:?}", t.elapsed());
    (phase, ev)
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

    // The controller with its ServiceAccount webhook on a loopback port (as tests/webhook_inject.rs
    // runs it), for the injectOnCreate Pod; dropping `running` on a panic aborts it.
    let webhook = webhook_configuration(h).await;
    let running = h.start_with(webhook.config(h));
    {
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
        assert_eq!(
            pod_pull_secrets(&created),
            vec![SECRET_NAME.to_owned()],
            "admission copied the SA's Secret"
        );
        let (phase, ev) = wait_ran(&client, &ns, "private-app", "private-app", t).await;
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

        // (b') A ServiceAccount created together with its Pod, in a namespace an injectOnCreate
        // binding selects: the webhook adds the reference in the create response, so the Pod
        // gets the Secret from admission and pulls on the first try.
        let injected = labelled_namespace(h, "e2e-kubelet-inject").await;
        let inject = h.named("inject");
        h.binding(
            &inject,
            &format!(
                "  registry: {{instanceId: {INSTANCE}}}\n  policyRef: {{name: {}}}\n  namespaces: {{selector: {{matchLabels: {{{SELECT_LABEL}: {}}}}}}}\n  serviceAccounts: {{all: true}}\n  injectOnCreate: true\n",
                h.policy, h.id
            ),
        )
        .await;
        h.wait_ready(&inject, "True", Duration::from_secs(60)).await;
        wait_secret(&h.secrets(&injected), "injected namespace's Secret", |_| {
            true
        })
        .await;
        wait_mutating(h, &injected).await;
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "created-with-pod"}}))
                .unwrap();
        let injected_pods: Api<Pod> = Api::namespaced(client.clone(), &injected);
        let t = Instant::now();
        h.service_accounts(&injected)
            .create(&PostParams::default(), &sa)
            .await
            .unwrap();
        let created = injected_pods
            .create(
                &PostParams::default(),
                &pod("private-app", &node.name, "created-with-pod", &image),
            )
            .await
            .unwrap();
        assert_eq!(
            pod_pull_secrets(&created),
            vec![SECRET_NAME.to_owned()],
            "the Pod got the Secret at admission"
        );
        let (phase, ev) = wait_ran(
            &client,
            &injected,
            "private-app",
            "private-app (injectOnCreate)",
            t,
        )
        .await;
        assert_eq!(phase, "Succeeded", "{ev:?}");
        assert!(
            ev.iter().all(|(r, _)| r != "Failed" && r != "BackOff"),
            "not on the first try: {ev:?}"
        );
        force_delete(&injected_pods, "private-app").await;

        force_delete(&pods, "private-app").await;
        force_delete(&other, "private-app").await;
    }
    running.stop().await;
    drop(node);
    eprintln!("Secret pulls took {:?}", started.elapsed());

    // (c) The kubelet runs `acr-credential-provider` (node identity: the ECS metadata role) and
    // a Pod with no pull Secret at all, in the namespace no binding selects, pulls and runs.
    let t = Instant::now();
    let (config, bin_dir) = provider_files(&p.chain.dir, &p.chain.registry, h.fake.base_url());
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
    let (phase, ev) = wait_ran(&client, &unselected, "provider-app", "provider-app", t).await;
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
