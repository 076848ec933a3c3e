//! `accessKey`: a long-lived AccessKey pair kept in a Kubernetes Secret.
//!
//! The Secret is read through the small [`SecretReader`] trait: [`KubeSecretReader`] reads it
//! from the API server, [`StaticSecrets`] holds it in memory (unit tests, `doctor` with
//! files), and the controller can implement the trait over a watch cache. Values are trimmed
//! of surrounding whitespace, the usual damage done by `echo` into a Secret.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::{CredentialSource, Credentials};
use crate::cloud::error::CloudError;
use crate::sensitive::Sensitive;

const KIND: &str = "accessKey";

/// Where the AccessKey pair lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
    pub access_key_id_key: String,
    pub access_key_secret_key: String,
}

/// A Secret's data, every value kept out of prints.
pub type SecretData = BTreeMap<String, Sensitive<Vec<u8>>>;

/// Reads Secrets by namespace and name; `Ok(None)` when the Secret does not exist.
pub trait SecretReader: Send + Sync {
    fn read<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<SecretData>, CloudError>>;
}

/// Reads Secrets from the API server.
#[derive(Clone)]
pub struct KubeSecretReader {
    client: kube::Client,
}

impl KubeSecretReader {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl SecretReader for KubeSecretReader {
    fn read<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<SecretData>, CloudError>> {
        Box::pin(async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
                kube::Api::namespaced(self.client.clone(), namespace);
            let secret = api
                .get_opt(name)
                .await
                .map_err(|e| CloudError::CredentialSource {
                    source_kind: KIND,
                    message: read_failure(namespace, name, &e),
                })?;
            Ok(secret.map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, Sensitive::new(v.0)))
                    .collect()
            }))
        })
    }
}

/// The Helm chart value that grants the controller read access to an AccessKey Secret.
pub const CHART_VALUE: &str = "accessKeySecrets";

/// What went wrong reading the Secret. A refusal by RBAC says what to change: the controller may
/// read only the AccessKey Secrets its installation names.
pub fn read_failure(namespace: &str, name: &str, error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.code == 403 => format!(
            "the controller is not allowed to read Secret {namespace}/{name}: add {{namespace: {namespace}, name: {name}}} to the Helm chart value `{CHART_VALUE}` (or grant its ServiceAccount `get` on that Secret)"
        ),
        e => format!("cannot read Secret {namespace}/{name}: {e}"),
    }
}

/// Secrets held in memory, changeable at run time.
#[derive(Clone, Default)]
pub struct StaticSecrets {
    inner: Arc<Mutex<BTreeMap<(String, String), SecretData>>>,
}

impl StaticSecrets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores (or replaces) a Secret with string values.
    pub fn insert(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let data = data
            .iter()
            .map(|(k, v)| (k.to_string(), Sensitive::new(v.as_bytes().to_vec())))
            .collect();
        if let Ok(mut m) = self.inner.lock() {
            m.insert((namespace.to_string(), name.to_string()), data);
        }
    }

    pub fn remove(&self, namespace: &str, name: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(&(namespace.to_string(), name.to_string()));
        }
    }
}

impl SecretReader for StaticSecrets {
    fn read<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<SecretData>, CloudError>> {
        let found = self
            .inner
            .lock()
            .ok()
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())).cloned());
        Box::pin(async move { Ok(found) })
    }
}

/// Builds credentials from a Secret's data.
pub fn credentials_from(
    secret_ref: &SecretRef,
    data: &SecretData,
) -> Result<Credentials, CloudError> {
    let value = |key: &str| -> Result<String, CloudError> {
        let raw = data.get(key).ok_or_else(|| CloudError::CredentialSource {
            source_kind: KIND,
            message: format!(
                "Secret {}/{} has no key {key:?}",
                secret_ref.namespace, secret_ref.name
            ),
        })?;
        let text = std::str::from_utf8(raw.expose()).map_err(|_| CloudError::CredentialSource {
            source_kind: KIND,
            message: format!(
                "Secret {}/{} key {key:?} is not UTF-8",
                secret_ref.namespace, secret_ref.name
            ),
        })?;
        let text = text.trim();
        if text.is_empty() {
            return Err(CloudError::CredentialSource {
                source_kind: KIND,
                message: format!(
                    "Secret {}/{} key {key:?} is empty",
                    secret_ref.namespace, secret_ref.name
                ),
            });
        }
        Ok(text.to_string())
    };
    let access_key_id = value(&secret_ref.access_key_id_key)?;
    Ok(Credentials {
        principal: format!("{KIND}:{access_key_id}"),
        access_key_id,
        access_key_secret: Sensitive::new(value(&secret_ref.access_key_secret_key)?),
        security_token: None,
        expires_at: None,
    })
}

/// Reads the AccessKey pair from its Secret on every fetch.
pub struct AccessKeySource {
    reader: Arc<dyn SecretReader>,
    secret_ref: SecretRef,
}

impl AccessKeySource {
    pub fn new(reader: Arc<dyn SecretReader>, secret_ref: SecretRef) -> Self {
        Self { reader, secret_ref }
    }
}

impl CredentialSource for AccessKeySource {
    fn describe(&self) -> String {
        format!(
            "{KIND}:{}/{}",
            self.secret_ref.namespace, self.secret_ref.name
        )
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CloudError>> {
        Box::pin(async move {
            let r = &self.secret_ref;
            let data = self
                .reader
                .read(&r.namespace, &r.name)
                .await?
                .ok_or_else(|| CloudError::CredentialSource {
                    source_kind: KIND,
                    message: format!("Secret {}/{} not found", r.namespace, r.name),
                })?;
            credentials_from(r, &data)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_ref() -> SecretRef {
        SecretRef {
            namespace: "ops".into(),
            name: "ak".into(),
            access_key_id_key: "AccessKeyId".into(),
            access_key_secret_key: "AccessKeySecret".into(),
        }
    }

    fn api_error(code: u16) -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(
            serde_json::json!({"code": code, "message": "m", "reason": "r"}),
        )
        .unwrap();
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn a_refused_read_names_the_chart_value() {
        let m = read_failure("ops", "ak", &api_error(403));
        assert!(
            m.contains("`accessKeySecrets`") && m.contains("ops/ak"),
            "{m}"
        );
        let m = read_failure("ops", "ak", &api_error(500));
        assert!(
            !m.contains("accessKeySecrets") && m.contains("ops/ak"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn reads_trims_and_follows_changes() {
        let secrets = StaticSecrets::new();
        secrets.insert(
            "ops",
            "ak",
            &[("AccessKeyId", "LTAI1\n"), ("AccessKeySecret", " s1 ")],
        );
        let source = AccessKeySource::new(Arc::new(secrets.clone()), secret_ref());
        let c = source.fetch().await.unwrap();
        assert_eq!(
            (
                c.access_key_id.as_str(),
                c.access_key_secret.expose().as_str()
            ),
            ("LTAI1", "s1")
        );
        assert_eq!(c.principal, "accessKey:LTAI1");
        assert_eq!(source.describe(), "accessKey:ops/ak");
        secrets.insert(
            "ops",
            "ak",
            &[("AccessKeyId", "LTAI2"), ("AccessKeySecret", "s2")],
        );
        assert_eq!(source.fetch().await.unwrap().access_key_id, "LTAI2");
    }

    #[tokio::test]
    async fn missing_secret_or_key_is_reported_plainly() {
        let secrets = StaticSecrets::new();
        let source = AccessKeySource::new(Arc::new(secrets.clone()), secret_ref());
        let e = source.fetch().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "accessKey credentials: Secret ops/ak not found"
        );
        secrets.insert("ops", "ak", &[("AccessKeyId", "LTAI1")]);
        let e = source.fetch().await.unwrap_err();
        assert!(e.to_string().contains("no key \"AccessKeySecret\""), "{e}");
    }
}
