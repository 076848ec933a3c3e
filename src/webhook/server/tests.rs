#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;

use kube::runtime::reflector;
use serde_json::{Value, json};

use super::*;
use crate::cluster::written::Written;
use crate::model::cached_secret::CachedSecret;
use crate::model::cached_service_account::CachedServiceAccount;
use crate::webhook::certs::{self, CertTimings, ServingNames};
use crate::webhook::review::tests::request;

/// A client whose every request is recorded (path and query) and answered 404.
fn recording_client() -> (Client, Arc<Mutex<Vec<String>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        seen.lock().unwrap().push(req.uri().to_string());
        async {
            let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "reason": "NotFound", "code": 404});
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(404)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(body.to_string().into_bytes()))
                    .unwrap(),
            )
        }
    });
    (Client::new(service, "default"), calls)
}

/// A handler over empty caches that have all listed.
fn handler(client: Client) -> Handler {
    let secrets = reflector::store::<CachedSecret>().0;
    let stores = Stores {
        bindings: reflector::store().0,
        policies: reflector::store().0,
        namespaces: reflector::store().0,
        service_accounts: reflector::store::<CachedServiceAccount>().0,
        secrets: secrets.clone(),
        written: Arc::new(Written::new(secrets, "acr-credentials")),
        patched: Arc::default(),
    };
    Handler::new(
        client,
        stores,
        Readiness::new([]),
        crate::model::ResolveConfig::default(),
        Settings::new("acr-credentials", "acr-system"),
    )
}

async fn decide(h: &Handler, ns: &str) -> Value {
    let body = request(ns, json!({"metadata": {"name": "app"}})).to_string();
    let (_, response) = h.review(body.as_bytes()).await;
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The namespace of the unauthenticated body went unescaped into `GET
/// /api/v1/namespaces/{ns}`: `x?watch=1` made the controller issue a watch. It is now
/// answered without any request.
#[tokio::test]
async fn a_namespace_that_is_not_a_dns_label_is_answered_without_an_api_call() {
    let (client, calls) = recording_client();
    let h = handler(client);
    let answer = decide(&h, "x?watch=1").await;
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(
        answer["response"]["auditAnnotations"]["decision"],
        "InvalidName"
    );
    assert_eq!(*calls.lock().unwrap(), Vec::<String>::new());
    // A valid name that is not cached is looked up once (the recording works).
    let answer = decide(&h, "team-a").await;
    assert_eq!(
        answer["response"]["auditAnnotations"]["decision"],
        "NamespaceUnknown"
    );
    assert_eq!(*calls.lock().unwrap(), ["/api/v1/namespaces/team-a"]);
}

fn pair(now: Timestamp) -> certs::Pair {
    let timings = CertTimings {
        validity: Duration::from_secs(3600),
        renew_before: Duration::from_secs(600),
        overlap: Duration::from_secs(10),
    };
    let serving_names = ServingNames {
        dns_names: vec!["acr-webhook.acr-system.svc".into()],
        ip_addresses: vec![],
    };
    let ca = certs::mint_ca(now, &timings).unwrap();
    certs::mint_serving(&ca, now, &timings, &serving_names)
        .unwrap()
        .0
}

use jiff::Timestamp;

/// A certificate and a key that do not belong together (a file swap caught between the two
/// reads) are refused, and the previous pair stays served.
#[test]
fn a_certificate_and_a_key_that_do_not_match_are_refused() {
    let now = Timestamp::now();
    let (a, b) = (pair(now), pair(now));
    let slot = CertSlot::default();
    assert!(slot.load(&a).unwrap());
    let mixed = certs::Pair {
        cert: b.cert.clone(),
        key: a.key.clone(),
    };
    let err = slot.load(&mixed).unwrap_err();
    assert_eq!(err.reason(), "TlsError", "{err}");
    assert!(slot.serves(&a.cert));
    assert!(slot.load(&b).unwrap());
    assert!(slot.serves(&b.cert));
}
