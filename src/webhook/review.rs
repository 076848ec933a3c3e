//! AdmissionReview v1 in and out, as plain JSON (pure).
//!
//! [`parse`] reads a request body into a [`Review`]: a ServiceAccount CREATE to decide on, a
//! review that is well formed but not ours to mutate (another kind, resource or operation), or
//! an [`Invalid`] body. [`respond`] builds the AdmissionReview answer: always `allowed: true`
//! (the webhook only adds a reference, it never blocks a create), with a JSONPatch when there is
//! one, and an audit annotation naming the decision. A body that is not an AdmissionReview at
//! all has no `uid` to answer to; the server turns [`Invalid`] into an HTTP 400 with its message.
//!
//! The object is kept as JSON rather than decoded into `ServiceAccount`: a field of an odd
//! shape is then something to skip with a clear reason, not a decoding failure.

use serde_json::{Map, Value, json};

/// The AdmissionReview API version this webhook speaks.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// The audit annotation key (prefixed by the API server with the webhook's name).
pub const AUDIT_KEY: &str = "decision";

/// A body that is not an AdmissionReview v1 request; the message says what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an AdmissionReview {API_VERSION} request: {0}")]
pub struct Invalid(pub String);

/// A ServiceAccount being created, as the API server sent it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceAccountCreate {
    pub uid: String,
    pub namespace: String,
    /// Empty when the ServiceAccount is created with `generateName`.
    pub name: String,
    /// The ServiceAccount object (`request.object`), a JSON object.
    pub object: Map<String, Value>,
}

/// What a well-formed request asks.
#[derive(Clone, Debug, PartialEq)]
pub enum Review {
    /// A ServiceAccount CREATE: decide on it.
    Create(ServiceAccountCreate),
    /// Well formed, but nothing for this webhook to do; `why` is a fixed reason.
    NotOurs { uid: String, why: &'static str },
}

/// Fixed reasons of [`Review::NotOurs`].
pub mod not_ours {
    pub const NOT_A_SERVICE_ACCOUNT: &str = "NotAServiceAccount";
    pub const NOT_A_CREATE: &str = "NotACreate";
    pub const NO_OBJECT: &str = "NoObject";
    /// The namespace is not a DNS-1123 label, or the name not a DNS-1123 subdomain: no API
    /// server sends that (it validates names first), so nothing is looked up for it.
    pub const INVALID_NAME: &str = "InvalidName";
}

/// Whether `s` is a DNS-1123 label (a namespace name): at most 63 lowercase letters, digits and
/// `-`, starting and ending with a letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| alnum(c) || c == b'-')
        && b.first().copied().is_some_and(alnum)
        && b.last().copied().is_some_and(alnum)
}

/// Whether `s` is a DNS-1123 subdomain (a ServiceAccount name): at most 253 characters of
/// DNS-1123 labels joined by `.`.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Reads an AdmissionReview request body.
pub fn parse(body: &[u8]) -> Result<Review, Invalid> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Invalid("the body is empty".into()));
    }
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| Invalid(format!("the body is not JSON: {e}")))?;
    if !doc.is_object() {
        return Err(Invalid("the body is not a JSON object".into()));
    }
    let (api_version, kind) = (str_at(&doc, "apiVersion"), str_at(&doc, "kind"));
    if api_version != Some(API_VERSION) || kind != Some("AdmissionReview") {
        return Err(Invalid(format!(
            "apiVersion {} kind {}",
            api_version.unwrap_or("(none)"),
            kind.unwrap_or("(none)")
        )));
    }
    let request = doc
        .get("request")
        .filter(|r| r.is_object())
        .ok_or_else(|| Invalid("no request".into()))?;
    let uid = str_at(request, "uid")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Invalid("the request has no uid".into()))?
        .to_owned();
    let not_ours = |why| {
        Ok(Review::NotOurs {
            uid: uid.clone(),
            why,
        })
    };
    let kind = request.get("kind").unwrap_or(&Value::Null);
    let resource = request.get("resource").unwrap_or(&Value::Null);
    let is_service_account = str_at(kind, "group") == Some("")
        && str_at(kind, "version") == Some("v1")
        && str_at(kind, "kind") == Some("ServiceAccount")
        && str_at(resource, "resource") == Some("serviceaccounts")
        && str_at(request, "subResource").is_none_or(str::is_empty);
    if !is_service_account {
        return not_ours(not_ours::NOT_A_SERVICE_ACCOUNT);
    }
    if str_at(request, "operation") != Some("CREATE") {
        return not_ours(not_ours::NOT_A_CREATE);
    }
    let Some(object) = request.get("object").and_then(Value::as_object) else {
        return not_ours(not_ours::NO_OBJECT);
    };
    let meta = object.get("metadata").unwrap_or(&Value::Null);
    let namespace = str_at(request, "namespace")
        .or_else(|| str_at(meta, "namespace"))
        .unwrap_or_default()
        .to_owned();
    let name = str_at(request, "name")
        .filter(|n| !n.is_empty())
        .or_else(|| str_at(meta, "name"))
        .unwrap_or_default()
        .to_owned();
    // Checked before anything is looked up: the namespace goes into an API path.
    if !is_dns_label(&namespace) || !(name.is_empty() || is_dns_subdomain(&name)) {
        return not_ours(not_ours::INVALID_NAME);
    }
    Ok(Review::Create(ServiceAccountCreate {
        uid,
        namespace,
        name,
        object: object.clone(),
    }))
}

/// The AdmissionReview answer to request `uid`: allowed, with `patch` (a JSONPatch document)
/// when there is one, and `decision` as the audit annotation.
pub fn respond(uid: &str, decision: &str, patch: Option<&Value>) -> Value {
    use base64::Engine as _;
    let mut response = json!({
        "uid": uid,
        "allowed": true,
        "auditAnnotations": { AUDIT_KEY: decision },
    });
    if let (Some(patch), Some(obj)) = (patch, response.as_object_mut()) {
        let bytes = patch.to_string();
        obj.insert("patchType".into(), json!("JSONPatch"));
        obj.insert(
            "patch".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
        );
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "AdmissionReview",
        "response": response,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// An AdmissionReview request for a ServiceAccount CREATE of `object` in `ns`.
    pub(crate) fn request(ns: &str, object: Value) -> Value {
        json!({
            "apiVersion": API_VERSION,
            "kind": "AdmissionReview",
            "request": {
                "uid": "0b1c",
                "kind": {"group": "", "version": "v1", "kind": "ServiceAccount"},
                "resource": {"group": "", "version": "v1", "resource": "serviceaccounts"},
                "requestKind": {"group": "", "version": "v1", "kind": "ServiceAccount"},
                "namespace": ns,
                "name": object["metadata"]["name"].clone(),
                "operation": "CREATE",
                "object": object,
            }
        })
    }

    fn invalid(body: &str) -> String {
        match parse(body.as_bytes()) {
            Err(Invalid(m)) => m,
            other => panic!("{body:?} parsed: {other:?}"),
        }
    }

    #[test]
    fn bodies_that_are_not_reviews_are_invalid_with_a_reason() {
        assert_eq!(invalid(""), "the body is empty");
        assert_eq!(invalid(" \n"), "the body is empty");
        assert!(invalid("{not json").starts_with("the body is not JSON"));
        assert_eq!(invalid("[1]"), "the body is not a JSON object");
        assert_eq!(
            invalid(r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#),
            "apiVersion admission.k8s.io/v1beta1 kind AdmissionReview"
        );
        assert_eq!(
            invalid(r#"{"apiVersion":"v1","kind":"ServiceAccount"}"#),
            "apiVersion v1 kind ServiceAccount"
        );
        assert_eq!(
            invalid(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            "no request"
        );
        assert_eq!(
            invalid(
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#
            ),
            "the request has no uid"
        );
    }

    #[test]
    fn a_service_account_create_is_read() {
        let body = request("team-a", json!({"metadata": {"name": "builder"}}));
        let Review::Create(c) = parse(body.to_string().as_bytes()).unwrap() else {
            panic!("not a create");
        };
        assert_eq!((c.uid.as_str(), c.namespace.as_str()), ("0b1c", "team-a"));
        assert_eq!(c.name, "builder");
    }

    #[test]
    fn generate_name_leaves_the_name_empty() {
        let mut body = request("team-a", json!({"metadata": {"generateName": "job-"}}));
        body["request"]["name"] = json!("");
        let Review::Create(c) = parse(body.to_string().as_bytes()).unwrap() else {
            panic!("not a create");
        };
        assert_eq!(c.name, "");
    }

    #[test]
    fn other_kinds_operations_and_subresources_are_not_ours() {
        let not_ours = |body: Value| match parse(body.to_string().as_bytes()).unwrap() {
            Review::NotOurs { uid, why } => {
                assert_eq!(uid, "0b1c");
                why
            }
            other => panic!("{other:?}"),
        };
        let sa = json!({"metadata": {"name": "x"}});
        let mut pod = request("a", sa.clone());
        pod["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
        pod["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "pods"});
        assert_eq!(not_ours(pod), not_ours::NOT_A_SERVICE_ACCOUNT);
        let mut token = request("a", sa.clone());
        token["request"]["subResource"] = json!("token");
        assert_eq!(not_ours(token), not_ours::NOT_A_SERVICE_ACCOUNT);
        let mut update = request("a", sa.clone());
        update["request"]["operation"] = json!("UPDATE");
        assert_eq!(not_ours(update), not_ours::NOT_A_CREATE);
        let mut empty = request("a", sa);
        empty["request"]["object"] = Value::Null;
        assert_eq!(not_ours(empty), not_ours::NO_OBJECT);
    }

    /// A namespace from the (unauthenticated) body goes into `GET /api/v1/namespaces/{ns}`:
    /// anything but a DNS-1123 label is answered without a lookup.
    #[test]
    fn names_that_are_not_dns_names_are_not_looked_up() {
        for ns in [
            "x?watch=1",
            "a/b",
            "",
            "UPPER",
            "-a",
            "a-",
            &"a".repeat(64),
            "a.b",
        ] {
            let body = request(ns, json!({"metadata": {"name": "x"}}));
            match parse(body.to_string().as_bytes()).unwrap() {
                Review::NotOurs { why, .. } => assert_eq!(why, not_ours::INVALID_NAME, "{ns:?}"),
                other => panic!("{ns:?}: {other:?}"),
            }
        }
        for name in ["x?watch=1", "a/b", "A", &"a".repeat(254), "a..b"] {
            let body = request("team-a", json!({"metadata": {"name": name}}));
            match parse(body.to_string().as_bytes()).unwrap() {
                Review::NotOurs { why, .. } => {
                    assert_eq!(why, not_ours::INVALID_NAME, "{name:?}")
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
        for (ns, name) in [
            ("a", "b"),
            ("team-a-1", "build.er-2"),
            (&*"a".repeat(63), "x"),
        ] {
            let body = request(ns, json!({"metadata": {"name": name}}));
            assert!(matches!(
                parse(body.to_string().as_bytes()).unwrap(),
                Review::Create(_)
            ));
        }
    }

    #[test]
    fn the_answer_carries_uid_patch_and_decision() {
        use base64::Engine as _;
        let patch = json!([{"op": "add", "path": "/imagePullSecrets", "value": [{"name": "s"}]}]);
        let out = respond("u1", "Patched", Some(&patch));
        assert_eq!(out["apiVersion"], API_VERSION);
        assert_eq!(out["response"]["uid"], "u1");
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(out["response"]["patch"].as_str().unwrap())
            .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), patch);
        let skipped = respond("u2", "NotSelected", None);
        assert!(skipped["response"].get("patch").is_none());
        assert_eq!(
            skipped["response"]["auditAnnotations"][AUDIT_KEY],
            "NotSelected"
        );
    }
}
