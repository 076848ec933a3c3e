//! The ServiceAccount admission webhook (`injectOnCreate`) end to end on the local control
//! plane: the controller runs in-process with its webhook on a loopback port, mints its own CA
//! and publishes it as the `caBundle` of a MutatingWebhookConfiguration whose
//! `clientConfig.url` is `https://127.0.0.1:<port>/mutate-serviceaccounts`, and kube-apiserver
//! calls it for every ServiceAccount created in this test's namespaces.
//!
//! Each test owns its webhook configuration, scoped to its own namespaces (a label) and to
//! objects labelled with its id (to reach kube-system), so tests run side by side.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod support;

use std::time::{Duration, Instant};

use acr_credential_controller::model::service_accounts::ADDED_ANNOTATION;
use acr_credential_controller::runtime::ControllerConfig;
use acr_credential_controller::webhook::certs::{self, CertTimings, ServingNames};
use acr_credential_controller::webhook::{
    CertSource, Managed, OPT_OUT_LABEL, PATH, Settings, WebhookConfig,
};
use controller_common::{Harness, INSTANCE, Running, SECRET_NAME, pull_secret_names, wait_sa};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::core::ApiResource;
use serde_json::{Value, json};

/// The label that puts a namespace under this test's binding and webhook.
const SELECT_LABEL: &str = "acrcredentials.io/test-webhook";
/// The certificate Secret, in the test's (the controller's) namespace.
const CERT_SECRET: &str = "acr-credential-controller-webhook-tls";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Webhook {
    port: u16,
    configuration: String,
}

impl Webhook {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}{PATH}", self.port)
    }

    fn config(&self, h: &Harness, timings: CertTimings) -> ControllerConfig {
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
                    timings,
                }),
            }),
            ..h.config()
        }
    }
}

fn long_timings() -> CertTimings {
    CertTimings {
        validity: Duration::from_secs(3600),
        renew_before: Duration::from_secs(600),
        overlap: Duration::from_secs(2),
    }
}

/// The test's MutatingWebhookConfiguration, as the chart renders it (no caBundle: the
/// controller publishes it), with the URL on loopback. A second webhook reaches ServiceAccounts
/// labelled with the test's id in any namespace (kube-system included, which the first one's
/// namespace selector cannot express on 1.20); it has no opt-out selector, so the webhook's own
/// checks are what keeps those ServiceAccounts untouched.
async fn webhook_configuration(h: &Harness) -> Webhook {
    let w = Webhook {
        port: free_port(),
        configuration: format!("acr-webhook-{}", h.id),
    };
    let common = format!(
        "    clientConfig: {{url: \"{url}\"}}\n    rules: [{{apiGroups: [\"\"], apiVersions: [v1], operations: [CREATE], resources: [serviceaccounts], scope: Namespaced}}]\n    failurePolicy: Ignore\n    matchPolicy: Equivalent\n    sideEffects: None\n    timeoutSeconds: 5\n    admissionReviewVersions: [v1]\n    reinvocationPolicy: Never\n",
        url = w.url()
    );
    h.env
        .apply(&format!(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: {name}}}\nwebhooks:\n  - name: namespaces.{id}.acrcredentials.io\n    namespaceSelector: {{matchLabels: {{{SELECT_LABEL}: {id}}}}}\n    objectSelector: {{matchExpressions: [{{key: {OPT_OUT_LABEL}, operator: NotIn, values: [\"false\"]}}]}}\n{common}  - name: objects.{id}.acrcredentials.io\n    objectSelector: {{matchLabels: {{{SELECT_LABEL}: {id}}}}}\n{common}",
            name = w.configuration,
            id = h.id,
        ))
        .await;
    w
}

/// A binding with injectOnCreate for every ServiceAccount of the namespaces labelled for this
/// test.
async fn injecting_binding(h: &Harness, name: &str) {
    h.binding(
        name,
        &format!(
            "  registry: {{instanceId: {INSTANCE}}}\n  policyRef: {{name: {}}}\n  namespaces: {{selector: {{matchLabels: {{{SELECT_LABEL}: {}}}}}}}\n  serviceAccounts: {{all: true}}\n  injectOnCreate: true\n",
            h.policy, h.id
        ),
    )
    .await;
}

/// A fresh namespace, labelled for this test when `selected`; deleted with the env.
async fn namespace(h: &Harness, slug: &str, selected: bool) -> String {
    let name = support::unique_name(slug);
    let labels = if selected {
        json!({ SELECT_LABEL: h.id, support::TEST_LABEL: "true" })
    } else {
        json!({ support::TEST_LABEL: "true" })
    };
    h.env.labelled_namespace(&name, labels).await
}

/// Creates a ServiceAccount from JSON and returns the API server's create response.
async fn create_sa(h: &Harness, ns: &str, object: Value) -> ServiceAccount {
    let sa: ServiceAccount = serde_json::from_value(object).unwrap();
    h.service_accounts(ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap()
}

fn has_ours(sa: &ServiceAccount) -> bool {
    pull_secret_names(sa).iter().any(|n| n == SECRET_NAME)
}

/// Waits until the webhook mutates: a probe ServiceAccount's create response carries the
/// reference (the caches are synced, the certificate loaded, the caBundle published and seen
/// by the API server).
async fn wait_mutating(h: &Harness, ns: &str) {
    let n = std::sync::atomic::AtomicU32::new(0);
    support::wait_until(Duration::from_secs(60), "the webhook to mutate", || async {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sa = create_sa(h, ns, json!({"metadata": {"name": format!("probe-{i}")}})).await;
        if has_ours(&sa) {
            Ok(())
        } else {
            Err(format!("{:?}", pull_secret_names(&sa)))
        }
    })
    .await;
}

/// Whether `manager` owns fields of the ServiceAccount (the reconciler's patches leave this).
fn managed_by(sa: &ServiceAccount, manager: &str) -> bool {
    sa.metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|m| m.manager.as_deref() == Some(manager))
}

fn admissions(result: &str) -> u64 {
    acr_credential_controller::metrics::global()
        .admissions
        .get_or_create(&vec![("result", result.to_owned())])
        .get()
}

fn patched_after_create(binding: &str) -> u64 {
    acr_credential_controller::metrics::global()
        .patched_after_create
        .get_or_create(&vec![("binding", binding.to_owned())])
        .get()
}

async fn start(h: &Harness, w: &Webhook, timings: CertTimings) -> Running {
    h.start_with(w.config(h, timings))
}

#[tokio::test]
async fn the_create_response_carries_the_reference_where_selected_only() {
    let h = Harness::new("webhook-selected", 3600, "15m").await;
    let w = webhook_configuration(&h).await;
    let binding = format!("{}-inject", h.id);
    injecting_binding(&h, &binding).await;
    let running = start(&h, &w, long_timings()).await;
    let selected = namespace(&h, "wh-sel", true).await;
    wait_mutating(&h, &selected).await;

    // A new ServiceAccount: the create response itself carries it, recorded as ours.
    let sa = create_sa(&h, &selected, json!({"metadata": {"name": "app"}})).await;
    assert_eq!(pull_secret_names(&sa), [SECRET_NAME]);
    assert_eq!(
        sa.metadata.annotations.as_ref().unwrap()[ADDED_ANNOTATION],
        SECRET_NAME
    );
    // Entries others put there stay, in order; ours is appended once.
    let theirs = create_sa(
        &h,
        &selected,
        json!({"metadata": {"name": "theirs"}, "imagePullSecrets": [{"name": "a"}, {"name": "a"}, {}]}),
    )
    .await;
    assert_eq!(pull_secret_names(&theirs), ["a", "a", "", SECRET_NAME]);
    let listed = create_sa(
        &h,
        &selected,
        json!({"metadata": {"name": "listed"}, "imagePullSecrets": [{"name": SECRET_NAME}]}),
    )
    .await;
    assert_eq!(pull_secret_names(&listed), [SECRET_NAME]);
    assert!(
        listed.metadata.annotations.is_none(),
        "not recorded: not ours"
    );

    // The `default` ServiceAccount kube-controller-manager creates in a new selected namespace,
    // carrying it from its creation (the reconciler never had to patch it).
    let fresh = namespace(&h, "wh-new", true).await;
    let default = wait_sa(&h.service_accounts(&fresh), "default", "default SA", |_| {
        true
    })
    .await;
    assert!(has_ours(&default), "{:?}", pull_secret_names(&default));
    assert!(!managed_by(&default, "acr-credential-controller"));

    // Untouched: an unselected namespace, and the opt-out label (reached through the second
    // webhook, which has no opt-out selector).
    let unselected = namespace(&h, "wh-unsel", false).await;
    let sa = create_sa(&h, &unselected, json!({"metadata": {"name": "app"}})).await;
    assert!(sa.image_pull_secrets.is_none());
    let labelled = |name: &str| json!({"metadata": {"name": name, "labels": {SELECT_LABEL: h.id}}});
    let mut opted_out = labelled("opted-out");
    opted_out["metadata"]["labels"][OPT_OUT_LABEL] = json!("false");
    let sa = create_sa(&h, &selected, opted_out).await;
    assert!(sa.image_pull_secrets.is_none());

    // kube-system and the controller's own namespace are skipped by the webhook even when a
    // binding names them (the reconciler still serves them after creation).
    let system_binding = format!("{}-system", h.id);
    h.binding(
        &system_binding,
        &format!(
            "  registry: {{instanceId: {INSTANCE}}}\n  policyRef: {{name: {}}}\n  namespaces: {{names: [kube-system, {}]}}\n  serviceAccounts: {{selector: {{matchLabels: {{{SELECT_LABEL}: {}}}}}}}\n  injectOnCreate: true\n",
            h.policy,
            h.env.namespace(),
            h.id
        ),
    )
    .await;
    h.wait_ready(&system_binding, "True", Duration::from_secs(60))
        .await;
    let excluded_before = admissions("ExcludedNamespace");
    let system_name = format!("acr-webhook-test-{}", h.id);
    h.env.track(
        ApiResource::erase::<ServiceAccount>(&()),
        Some("kube-system"),
        &system_name,
    );
    let system = create_sa(&h, "kube-system", labelled(&system_name)).await;
    assert!(system.image_pull_secrets.is_none());
    let own = create_sa(&h, h.env.namespace(), labelled("own")).await;
    assert!(own.image_pull_secrets.is_none());
    assert!(admissions("ExcludedNamespace") >= excluded_before + 2);

    // The reconciler agrees where nothing selects, and had nothing to patch after the webhook.
    h.wait_ready(&binding, "True", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sa = h.service_accounts(&unselected).get("app").await.unwrap();
    assert!(sa.image_pull_secrets.is_none());
    let app = h.service_accounts(&selected).get("app").await.unwrap();
    assert!(has_ours(&app) && !managed_by(&app, "acr-credential-controller"));
    running.stop().await;
}

#[tokio::test]
async fn with_the_webhook_down_creates_succeed_and_the_reconciler_catches_up() {
    let h = Harness::new("webhook-down", 3600, "15m").await;
    let w = webhook_configuration(&h).await;
    let binding = format!("{}-inject", h.id);
    injecting_binding(&h, &binding).await;
    let running = start(&h, &w, long_timings()).await;
    let selected = namespace(&h, "wh-down", true).await;
    wait_mutating(&h, &selected).await;
    running.stop().await;

    // The webhook process is gone (its port is closed): Ignore lets the creates through.
    let started = Instant::now();
    let names: Vec<String> = (0..3).map(|i| format!("missed-{i}")).collect();
    for name in &names {
        let sa = create_sa(&h, &selected, json!({"metadata": {"name": name}})).await;
        assert!(sa.image_pull_secrets.is_none(), "{name}");
    }
    eprintln!("3 creates with the webhook down: {:?}", started.elapsed());
    let before = patched_after_create(&binding);
    // The controller back without its webhook: the reconciler patches them, and counts them.
    let running = h.start();
    for name in &names {
        wait_sa(&h.service_accounts(&selected), name, "patched", has_ours).await;
    }
    assert!(
        patched_after_create(&binding) >= before + 3,
        "{} → {}",
        before,
        patched_after_create(&binding)
    );
    running.stop().await;
}

/// Reads the certificate Secret's published bundle (as PEM blocks).
async fn bundle(h: &Harness) -> Vec<String> {
    let s: Secret = Api::namespaced(h.client(), h.env.namespace())
        .get(CERT_SECRET)
        .await
        .unwrap();
    let pem = String::from_utf8(s.data.unwrap()[certs::key::BUNDLE].0.clone()).unwrap();
    certs::split_pem(&pem)
}

#[tokio::test]
async fn a_rotation_under_load_fails_and_misses_no_admission() {
    let h = Harness::new("webhook-rotate", 3600, "15m").await;
    let w = webhook_configuration(&h).await;
    injecting_binding(&h, &format!("{}-inject", h.id)).await;
    // Rotation starts 4 s after minting; its three steps are 1.5 s apart.
    let timings = CertTimings {
        validity: Duration::from_secs(10),
        renew_before: Duration::from_secs(6),
        overlap: Duration::from_millis(1500),
    };
    let running = start(&h, &w, timings).await;
    let ns = namespace(&h, "wh-rot", true).await;
    wait_mutating(&h, &ns).await;
    let first = bundle(&h).await;
    assert_eq!(first.len(), 1);

    let mut bundles = vec![first.clone()];
    let (mut created, mut unmutated, mut failed) = (0, Vec::new(), Vec::new());
    let started = Instant::now();
    let api = h.service_accounts(&ns);
    while started.elapsed() < Duration::from_secs(14) {
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": format!("loop-{created}")}}))
                .unwrap();
        match api.create(&PostParams::default(), &sa).await {
            Ok(sa) if has_ours(&sa) => {}
            Ok(sa) => unmutated.push(sa.metadata.name.unwrap()),
            Err(e) => failed.push(e.to_string()),
        }
        created += 1;
        let now = bundle(&h).await;
        if bundles.last() != Some(&now) {
            bundles.push(now);
        }
    }
    eprintln!(
        "{created} ServiceAccounts created across {} bundle changes",
        bundles.len() - 1
    );
    assert!(failed.is_empty(), "failed creates: {failed:?}");
    assert!(
        unmutated.is_empty(),
        "created without the reference: {unmutated:?}"
    );
    // At least one whole rotation: a second CA joined the bundle and the first left it.
    assert!(bundles.iter().any(|b| b.len() == 2), "{}", bundles.len());
    let last = bundles.last().unwrap();
    assert!(!last.contains(&first[0]), "the first CA is still trusted");
    // The configuration carries what the Secret says.
    let config: MutatingWebhookConfiguration =
        Api::all(h.client()).get(&w.configuration).await.unwrap();
    for hook in config.webhooks.unwrap() {
        let published = String::from_utf8(hook.client_config.ca_bundle.unwrap().0).unwrap();
        assert!(bundles.iter().any(|b| b.concat() == published));
    }
    running.stop().await;
}

/// POSTs `body` to the webhook directly, trusting the controller's CA.
async fn post(h: &Harness, w: &Webhook, body: &str) -> (u16, String) {
    let ca = bundle(h).await.concat();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = client
        .post(w.url())
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn review(ns: &str, kind: &str, resource: &str, operation: &str, object: Value) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7e57",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "namespace": ns,
            "operation": operation,
            "object": object,
        }
    })
    .to_string()
}

/// Every bad input the webhook may get, and the clear answer to each: HTTP 400 with a reason
/// when there is no review to answer, else `allowed: true` without a patch and the decision in
/// the audit annotation. None hangs (5 s client timeout) or takes the server down (a good
/// review is mutated afterwards).
#[tokio::test]
async fn bad_inputs_each_get_a_clear_answer() {
    let h = Harness::new("webhook-bad", 3600, "15m").await;
    let w = webhook_configuration(&h).await;
    injecting_binding(&h, &format!("{}-inject", h.id)).await;
    let running = start(&h, &w, long_timings()).await;
    let ns = namespace(&h, "wh-bad", true).await;
    wait_mutating(&h, &ns).await;

    let invalid = [
        ("empty body", String::new(), "the body is empty"),
        ("not JSON", "{\"apiVersion\":".to_owned(), "the body is not JSON"),
        (
            "a ServiceAccount, not a review",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}}).to_string(),
            "apiVersion v1 kind ServiceAccount",
        ),
        (
            "an admission.k8s.io/v1beta1 review",
            json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "1"}}).to_string(),
            "apiVersion admission.k8s.io/v1beta1",
        ),
        (
            "a review without a uid",
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}).to_string(),
            "the request has no uid",
        ),
    ];
    for (case, body, reason) in invalid {
        let (status, text) = post(&h, &w, &body).await;
        assert_eq!(status, 400, "{case}: {text}");
        assert!(text.contains(reason), "{case}: {text}");
    }

    let sa = |extra: Value| {
        let mut o = json!({"metadata": {"name": "x"}});
        if let (Some(o), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
            o.extend(extra.clone());
        }
        o
    };
    let unchanged = [
        (
            "a Pod instead of a ServiceAccount",
            review(
                &ns,
                "Pod",
                "pods",
                "CREATE",
                json!({"metadata": {"name": "p"}}),
            ),
            "NotAServiceAccount",
        ),
        (
            "a ServiceAccount UPDATE",
            review(
                &ns,
                "ServiceAccount",
                "serviceaccounts",
                "UPDATE",
                sa(json!({})),
            ),
            "NotACreate",
        ),
        (
            "a CREATE without an object",
            review(
                &ns,
                "ServiceAccount",
                "serviceaccounts",
                "CREATE",
                Value::Null,
            ),
            "NoObject",
        ),
        (
            "imagePullSecrets as a string",
            review(
                &ns,
                "ServiceAccount",
                "serviceaccounts",
                "CREATE",
                sa(json!({"imagePullSecrets": "acr"})),
            ),
            "UnexpectedShape",
        ),
        (
            "imagePullSecrets as an object",
            review(
                &ns,
                "ServiceAccount",
                "serviceaccounts",
                "CREATE",
                sa(json!({"imagePullSecrets": {"name": "acr"}})),
            ),
            "UnexpectedShape",
        ),
        (
            "labels that are not strings",
            review(
                &ns,
                "ServiceAccount",
                "serviceaccounts",
                "CREATE",
                json!({"metadata": {"name": "x", "labels": {"a": 1}}}),
            ),
            "UnexpectedShape",
        ),
        (
            "a namespace that does not exist",
            review(
                "no-such-namespace-7e57",
                "ServiceAccount",
                "serviceaccounts",
                "CREATE",
                sa(json!({})),
            ),
            "NamespaceUnknown",
        ),
        (
            // Would be `GET /api/v1/namespaces/x?watch=1` if it were looked up.
            "a namespace that is not a DNS label",
            review(
                "x?watch=1",
                "ServiceAccount",
                "serviceaccounts",
                "CREATE",
                sa(json!({})),
            ),
            "InvalidName",
        ),
    ];
    for (case, body, decision) in unchanged {
        let (status, text) = post(&h, &w, &body).await;
        assert_eq!(status, 200, "{case}: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        let response = &answer["response"];
        assert_eq!(response["uid"], "7e57", "{case}");
        assert_eq!(response["allowed"], true, "{case}");
        assert!(response.get("patch").is_none(), "{case}: {text}");
        assert_eq!(response["auditAnnotations"]["decision"], decision, "{case}");
    }

    // Odd but valid entries: appended after them, nothing removed.
    let odd = review(
        &ns,
        "ServiceAccount",
        "serviceaccounts",
        "CREATE",
        sa(json!({"imagePullSecrets": [{}, {"name": "x"}, {"name": "x"}]})),
    );
    let (status, text) = post(&h, &w, &odd).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer["response"]["auditAnnotations"]["decision"],
        "Patched"
    );
    assert_eq!(answer["response"]["patchType"], "JSONPatch");

    // A GET is not an admission review.
    let ca = bundle(&h).await.concat();
    let get = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap()
        .get(w.url())
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);

    // Still serving the API server.
    let after = create_sa(&h, &ns, json!({"metadata": {"name": "after"}})).await;
    assert!(has_ours(&after));
    running.stop().await;
}
