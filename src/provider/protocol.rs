//! The kubelet's exec credential provider protocol, `credentialprovider.kubelet.k8s.io/v1`
//! (Kubernetes 1.26+), `v1beta1` (1.24+) and `v1alpha1` (1.20–1.25, feature gate
//! `KubeletCredentialProviders`).
//!
//! The kubelet writes a `CredentialProviderRequest` to the plugin's stdin (`image`, and with
//! KEP-4412 `serviceAccountToken` and `serviceAccountAnnotations`) and reads a
//! `CredentialProviderResponse` from its stdout (`cacheKeyType`, `cacheDuration` as a Go
//! duration string, `auth` keyed by registry host). Field names follow the kubelet's Go types.
//! The three versions share these fields; the kubelet sends the version named in its provider
//! configuration and decodes the response as that version, so the plugin answers in the
//! version it was asked in ([`Response::in_version_of`]), as other clouds' providers do.
//!
//! Requests are read field by field from a JSON value rather than through a derived
//! deserializer, so an error message can never echo a value (the token is a secret). Fields
//! newer kubelets may add are ignored, as the kubelet's own decoder would do for us.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::sensitive::Sensitive;

/// The stable protocol version (Kubernetes 1.26+).
pub const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// Every version this plugin answers: v1, v1beta1 (1.24+), v1alpha1 (1.20–1.25).
pub const API_VERSIONS: [&str; 3] = [
    API_VERSION,
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];
pub const REQUEST_KIND: &str = "CredentialProviderRequest";
pub const RESPONSE_KIND: &str = "CredentialProviderResponse";

/// What the kubelet asks for.
#[derive(Debug, Clone)]
pub struct Request {
    /// The protocol version the kubelet asked in (one of [`API_VERSIONS`]).
    pub api_version: &'static str,
    pub image: String,
    /// The pulling Pod's ServiceAccount token (KEP-4412), when `tokenAttributes` is configured.
    pub service_account_token: Option<Sensitive<String>>,
    /// The ServiceAccount annotations the kubelet was told to pass.
    pub service_account_annotations: BTreeMap<String, String>,
}

/// Why a request could not be read. Messages name fields, never values of secret fields.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed CredentialProviderRequest: {0}")]
pub struct RequestError(pub String);

fn bad(message: impl Into<String>) -> RequestError {
    RequestError(message.into())
}

/// Shortens a non-secret value for an error message.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(80).collect();
    format!("{cut:?}")
}

/// Parses the kubelet's request from stdin bytes.
pub fn parse_request(input: &[u8]) -> Result<Request, RequestError> {
    if input.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("stdin is empty; the kubelet sends a JSON request"));
    }
    // serde_json's syntax errors give a position, never the text around it.
    let value: serde_json::Value = serde_json::from_slice(input).map_err(|e| {
        bad(format!(
            "not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let obj = value
        .as_object()
        .ok_or_else(|| bad("the request must be a JSON object"))?;
    let text = |name: &str| -> Result<Option<&str>, RequestError> {
        match obj.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(bad(format!("field {name} must be a string"))),
        }
    };
    let api_version = match text("apiVersion")? {
        Some(asked) => API_VERSIONS
            .into_iter()
            .find(|v| *v == asked)
            .ok_or_else(|| {
                bad(format!(
                    "apiVersion {} is not supported; set the kubelet's provider apiVersion to one of {}",
                    shown(asked),
                    API_VERSIONS.join(", ")
                ))
            })?,
        None => return Err(bad("field apiVersion is required")),
    };
    match text("kind")? {
        Some(REQUEST_KIND) => {}
        Some(other) => {
            return Err(bad(format!("kind {} is not {REQUEST_KIND}", shown(other))));
        }
        None => return Err(bad("field kind is required")),
    }
    let image = text("image")?
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("field image is required and must not be empty"))?
        .to_string();
    let service_account_token = text("serviceAccountToken")?
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Sensitive::new(s.to_string()));
    let mut service_account_annotations = BTreeMap::new();
    match obj.get("serviceAccountAnnotations") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => {
            for (k, v) in map {
                let v = v.as_str().ok_or_else(|| {
                    bad(format!(
                        "serviceAccountAnnotations[{}] must be a string",
                        shown(k)
                    ))
                })?;
                service_account_annotations.insert(k.clone(), v.to_string());
            }
        }
        Some(_) => return Err(bad("field serviceAccountAnnotations must be an object")),
    }
    Ok(Request {
        api_version,
        image,
        service_account_token,
        service_account_annotations,
    })
}

/// How the kubelet keys its cache of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CacheKeyType {
    Image,
    Registry,
    Global,
}

/// One registry login.
#[derive(Clone, Serialize)]
pub struct AuthConfig {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the plugin answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub cache_key_type: CacheKeyType,
    /// A Go duration string (`55m0s`); `0s` tells the kubelet not to cache.
    pub cache_duration: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<BTreeMap<String, AuthConfig>>,
}

impl Response {
    /// Credentials for `host`, cached per registry for `cache_for`.
    pub fn credentials(host: &str, auth: AuthConfig, cache_for: Duration) -> Self {
        Self {
            api_version: API_VERSION,
            kind: RESPONSE_KIND,
            cache_key_type: CacheKeyType::Registry,
            cache_duration: go_duration(cache_for),
            auth: Some(BTreeMap::from([(host.to_string(), auth)])),
        }
    }

    /// The same answer in the protocol version `request` was asked in.
    pub fn in_version_of(mut self, request: &Request) -> Self {
        self.api_version = request.api_version;
        self
    }

    /// "No credentials from this plugin" (`auth` null), not cached, so a later configuration
    /// change takes effect at the next pull.
    pub fn no_credentials() -> Self {
        Self {
            api_version: API_VERSION,
            kind: RESPONSE_KIND,
            cache_key_type: CacheKeyType::Registry,
            cache_duration: go_duration(Duration::ZERO),
            auth: None,
        }
    }
}

/// Formats whole seconds as Go's `time.Duration.String()` does: `0s`, `45s`, `55m0s`, `1h0m0s`.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// The registry host of an image reference (`host[:port]`), lower-cased, or `None` when the
/// reference names no registry (Docker Hub short forms such as `nginx` or `library/nginx`).
pub fn image_host(image: &str) -> Option<String> {
    let (first, rest) = image.split_once('/')?;
    if rest.is_empty() {
        return None;
    }
    let looks_like_host = first.contains('.') || first.contains(':') || first == "localhost";
    looks_like_host.then(|| first.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> Result<Request, RequestError> {
        parse_request(json.to_string().as_bytes())
    }

    #[test]
    fn reads_a_kep_4412_request() {
        let r = req(serde_json::json!({
            "apiVersion": API_VERSION, "kind": REQUEST_KIND,
            "image": "myreg-registry.cn-hangzhou.cr.aliyuncs.com/team/app:v1",
            "serviceAccountToken": "eyJ.secret.token",
            "serviceAccountAnnotations": {"acrcredentials.io/role-arn": "acs:ram::1:role/r"},
            "someFutureField": 1
        }))
        .unwrap();
        assert_eq!(
            r.image,
            "myreg-registry.cn-hangzhou.cr.aliyuncs.com/team/app:v1"
        );
        assert_eq!(
            r.service_account_token.unwrap().expose(),
            "eyJ.secret.token"
        );
        assert_eq!(r.service_account_annotations.len(), 1);
    }

    #[test]
    fn malformed_requests_name_the_problem_without_echoing_values() {
        let canary = "CANARY-token-value";
        let cases = [
            (
                serde_json::json!({"apiVersion": API_VERSION, "kind": REQUEST_KIND}),
                "image",
            ),
            (
                serde_json::json!({"apiVersion": "v2", "kind": REQUEST_KIND, "image": "a/b"}),
                "apiVersion",
            ),
            (
                serde_json::json!({"apiVersion": API_VERSION, "kind": "Other", "image": "a/b"}),
                "kind",
            ),
            (
                serde_json::json!({"kind": REQUEST_KIND, "image": "a/b"}),
                "apiVersion",
            ),
            (
                serde_json::json!({"apiVersion": API_VERSION, "kind": REQUEST_KIND, "image": "a/b",
                "serviceAccountToken": [canary]}),
                "serviceAccountToken",
            ),
            (
                serde_json::json!({"apiVersion": API_VERSION, "kind": REQUEST_KIND, "image": "a/b",
                "serviceAccountAnnotations": {"k": [canary]}}),
                "serviceAccountAnnotations",
            ),
            (serde_json::json!([canary]), "object"),
        ];
        for (json, field) in cases {
            let e = req(json).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
            assert!(!e.contains(canary), "{e}");
        }
        let e = parse_request(format!("{{\"serviceAccountToken\": \"{canary}").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not JSON") && !e.contains(canary), "{e}");
        assert!(parse_request(b"  \n").unwrap_err().0.contains("empty"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(45)), "45s");
        assert_eq!(go_duration(Duration::from_secs(3300)), "55m0s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(go_duration(Duration::from_millis(1999)), "1s");
    }

    #[test]
    fn image_hosts() {
        assert_eq!(
            image_host("MyReg-registry.cn-hangzhou.cr.aliyuncs.com/a/b:v1").as_deref(),
            Some("myreg-registry.cn-hangzhou.cr.aliyuncs.com")
        );
        assert_eq!(
            image_host("localhost:5000/app@sha256:abc").as_deref(),
            Some("localhost:5000")
        );
        assert_eq!(image_host("nginx"), None);
        assert_eq!(image_host("library/nginx:1"), None);
        assert_eq!(image_host("registry.cn-hangzhou.aliyuncs.com/"), None);
    }

    #[test]
    fn answers_in_the_version_asked() {
        for version in API_VERSIONS {
            let r = req(
                serde_json::json!({"apiVersion": version, "kind": REQUEST_KIND, "image": "a.b/c"}),
            )
            .unwrap();
            assert_eq!(r.api_version, version);
            let answer = Response::credentials(
                "a.b",
                AuthConfig {
                    username: "u".into(),
                    password: "p".into(),
                },
                Duration::from_secs(60),
            )
            .in_version_of(&r);
            let v = serde_json::to_value(&answer).unwrap();
            assert_eq!(v["apiVersion"], version);
            assert_eq!(v["kind"], RESPONSE_KIND);
            let none = serde_json::to_value(Response::no_credentials().in_version_of(&r)).unwrap();
            assert_eq!(none["apiVersion"], version);
        }
        let e = req(
            serde_json::json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v2",
            "kind": REQUEST_KIND, "image": "a.b/c"}),
        )
        .unwrap_err();
        assert!(e.0.contains("v1alpha1"), "{e}");
    }

    #[test]
    fn responses_serialize_with_the_kubelet_field_names() {
        let r = Response::credentials(
            "h.example.com",
            AuthConfig {
                username: "u".into(),
                password: "p".into(),
            },
            Duration::from_secs(3300),
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"apiVersion": API_VERSION, "kind": RESPONSE_KIND, "cacheKeyType": "Registry",
                "cacheDuration": "55m0s", "auth": {"h.example.com": {"username": "u", "password": "p"}}})
        );
        assert!(!format!("{r:?}").contains("\"p\""));
        let none = serde_json::to_value(Response::no_credentials()).unwrap();
        assert_eq!(none.get("auth"), None);
        assert_eq!(none["cacheDuration"], "0s");
    }
}
