//! The AccessKey pairs written inline in the legacy ConfigMap (`customAccessKey`): put into
//! the Secret the translated policy names, under [`FIELD_MANAGER`], unless a Secret of that
//! name exists that the translation did not write. Talks to the cluster: yes. When reading or
//! writing is not allowed, a Warning Event says which Secret to create (never the values).
//!
//! After each pass, [`Translator::prune_access_keys`] deletes the Secrets the translation wrote
//! that nothing needs any more (see [`plan::access_key_secrets_to_prune`]): only one still its
//! own ([`plan::secret_is_ours`]), by a delete conditioned on the uid and resourceVersion just
//! read, with a Normal Event on the ConfigMap (a Warning when the delete fails) and a log line.

use std::collections::BTreeSet;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::Value;

use super::plan::SecretRef;
use super::{FIELD_MANAGER, Translator, plan};
use crate::api::AcrCredentialPolicy;
use crate::cluster::error::is_status;
use crate::legacy::{ACCESS_KEY_SECRET_NAMESPACE, LegacyAccessKey, TRANSLATED_LABEL, Translation};
use crate::model::events;

impl Translator {
    /// Puts an inline AccessKey pair into the Secret its policy names, unless a Secret of that
    /// name exists that the translation did not create (or that already holds the pair).
    pub(super) async fn apply_access_key(&mut self, cm: Option<&ConfigMap>, key: &LegacyAccessKey) {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.namespace);
        let label = self.config.label_value();
        let secret = (key.namespace.clone(), key.name.clone());
        match api.get_opt(&key.name).await {
            Ok(Some(s)) if !access_key_to_write(&s, key, &label) => {
                if plan::secret_is_ours(s.meta(), &label, FIELD_MANAGER) {
                    self.access_key_secrets.insert(secret);
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let note = create_it(
                    key,
                    &format!("the controller cannot read ({})", e_reason(&e)),
                );
                self.report_opt(
                    cm,
                    EventType::Warning,
                    events::reasons::ACCESS_KEY_SECRET_MISSING,
                    note,
                )
                .await;
                return;
            }
        }
        let body = access_key_secret(key, label);
        match api
            .patch(
                &key.name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&body),
            )
            .await
        {
            Ok(_) => {
                self.access_key_secrets.insert(secret);
            }
            Err(e) => {
                let note = create_it(
                    key,
                    &format!("the controller could not write ({})", e_reason(&e)),
                );
                self.report_opt(
                    cm,
                    EventType::Warning,
                    events::reasons::ACCESS_KEY_SECRET_MISSING,
                    note,
                )
                .await;
            }
        }
    }

    /// Deletes the AccessKey Secrets the translation wrote that this pass left unneeded: named
    /// by no inline AccessKey of `translation` and read by no policy once the pass has applied
    /// and pruned (a policy someone took over keeps its Secret). `listed` are the policies as
    /// listed before the pass: those it labelled name candidates too, so a Secret written before
    /// a restart is not forgotten.
    pub(super) async fn prune_access_keys(
        &mut self,
        cm: Option<&ConfigMap>,
        translation: &Translation,
        policies: &Api<AcrCredentialPolicy>,
        listed: &[AcrCredentialPolicy],
    ) {
        let label = self.config.label_value();
        let wanted: BTreeSet<SecretRef> = translation
            .access_keys
            .iter()
            .map(|k| (k.namespace.clone(), k.name.clone()))
            .collect();
        let mut candidates = self.access_key_secrets.clone();
        candidates.extend(
            listed
                .iter()
                .filter(|p| p.labels().get(TRANSLATED_LABEL) == Some(&label))
                .filter_map(plan::access_key_ref),
        );
        let none = BTreeSet::new();
        let ns = ACCESS_KEY_SECRET_NAMESPACE;
        // While every candidate is still wanted, no policy needs to be read again.
        if plan::access_key_secrets_to_prune(&candidates, &wanted, &none, ns).is_empty() {
            return;
        }
        let read: BTreeSet<SecretRef> = match policies.list(&ListParams::default()).await {
            Ok(list) => list.items.iter().filter_map(plan::access_key_ref).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list policies; unused AccessKey Secrets are pruned later");
                return;
            }
        };
        for (namespace, name) in plan::access_key_secrets_to_prune(&candidates, &wanted, &read, ns)
        {
            self.prune_access_key(cm, &namespace, &name, &label).await;
        }
    }

    /// Deletes one AccessKey Secret nothing needs, if it is still the translation's own, with
    /// the uid and resourceVersion just read as preconditions: a Secret changed or replaced in
    /// between stays, and the next pass decides again.
    async fn prune_access_key(
        &mut self,
        cm: Option<&ConfigMap>,
        namespace: &str,
        name: &str,
        label: &str,
    ) {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let key = (namespace.to_owned(), name.to_owned());
        let secret = match api.get_opt(name).await {
            Ok(Some(s)) if plan::secret_is_ours(s.meta(), label, FIELD_MANAGER) => s,
            Ok(Some(_)) => {
                tracing::info!(
                    namespace,
                    secret = name,
                    "AccessKey Secret no longer used but not the translation's own: left alone"
                );
                self.access_key_secrets.remove(&key);
                return;
            }
            Ok(None) => {
                self.access_key_secrets.remove(&key);
                return;
            }
            Err(e) => {
                tracing::info!(namespace, secret = name, reason = %e_reason(&e), "AccessKey Secret no longer used and cannot be read: left alone");
                self.access_key_secrets.remove(&key);
                return;
            }
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: secret.metadata.uid.clone(),
                resource_version: secret.metadata.resource_version.clone(),
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {
                self.access_key_secrets.remove(&key);
                let note = format!(
                    "deleted the AccessKey Secret {namespace}/{name} the translation wrote: no inline AccessKey of the ConfigMap names it and no policy reads it"
                );
                match cm {
                    Some(cm) => {
                        self.report(
                            cm,
                            EventType::Normal,
                            events::reasons::ACCESS_KEY_SECRET_DELETED,
                            note,
                        )
                        .await;
                    }
                    None => tracing::info!(
                        configmap = %label,
                        reason = events::reasons::ACCESS_KEY_SECRET_DELETED,
                        "{note}"
                    ),
                }
            }
            Err(e) if is_status(&e, 404) => {
                self.access_key_secrets.remove(&key);
            }
            Err(e) if is_status(&e, 409) => {
                tracing::info!(
                    namespace,
                    secret = name,
                    "AccessKey Secret not deleted: it changed or was replaced since it was read"
                );
            }
            Err(e) => {
                self.report_opt(
                    cm,
                    EventType::Warning,
                    events::reasons::PRUNE_FAILED,
                    format!(
                        "could not delete the AccessKey Secret {namespace}/{name} the translation wrote, which nothing reads any more ({})",
                        e_reason(&e)
                    ),
                )
                .await;
            }
        }
    }
}

/// Whether the existing Secret `s` is one the translation wrote (labelled, not taken over)
/// and no longer holds `key`'s pair.
fn access_key_to_write(s: &Secret, key: &LegacyAccessKey, label: &str) -> bool {
    let ours = plan::secret_is_ours(s.meta(), label, FIELD_MANAGER);
    let wanted = [
        ("AccessKeyId", key.access_key_id.expose().as_bytes()),
        ("AccessKeySecret", key.access_key_secret.expose().as_bytes()),
    ];
    let current = s.data.clone().unwrap_or_default();
    let same = wanted
        .iter()
        .all(|(k, v)| current.get(*k).map(|b| b.0.as_slice()) == Some(*v));
    ours && !same
}

/// The server-side apply body of the Secret that holds `key`'s pair, labelled as translated.
fn access_key_secret(key: &LegacyAccessKey, label: String) -> Value {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(key.name.clone()),
            namespace: Some(key.namespace.clone()),
            labels: Some([(TRANSLATED_LABEL.to_owned(), label)].into()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            [
                (
                    "AccessKeyId".to_owned(),
                    ByteString(key.access_key_id.expose().as_bytes().to_vec()),
                ),
                (
                    "AccessKeySecret".to_owned(),
                    ByteString(key.access_key_secret.expose().as_bytes().to_vec()),
                ),
            ]
            .into(),
        ),
        ..Secret::default()
    };
    let mut body = serde_json::to_value(&secret).unwrap_or(Value::Null);
    if let Some(map) = body.as_object_mut() {
        map.insert("apiVersion".into(), "v1".into());
        map.insert("kind".into(), "Secret".into());
    }
    body
}

/// The Warning note when the AccessKey Secret is missing: which Secret and keys to create
/// (never the values).
fn create_it(key: &LegacyAccessKey, why: &str) -> String {
    format!(
        "the translated policy reads the AccessKey pair from Secret {}/{} (keys AccessKeyId and AccessKeySecret), which {why}; create it yourself, then remove customAccessKey and customAccessKeySecret from the ConfigMap",
        key.namespace, key.name
    )
}

/// The API server's reason for an error (`Forbidden`, ...), without the request details.
fn e_reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.reason),
        other => other.to_string(),
    }
}
