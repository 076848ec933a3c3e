//! The AccessKey pairs written inline in the legacy ConfigMap (`customAccessKey`): put into
//! the Secret the translated policy names, under [`FIELD_MANAGER`], unless a Secret of that
//! name exists that the translation did not write. Talks to the cluster: yes. When reading or
//! writing is not allowed, a Warning Event says which Secret to create (never the values).

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::Value;

use super::{FIELD_MANAGER, Translator, plan};
use crate::legacy::{LegacyAccessKey, TRANSLATED_LABEL};
use crate::model::events;

impl Translator {
    /// Puts an inline AccessKey pair into the Secret its policy names, unless a Secret of that
    /// name exists that the translation did not create (or that already holds the pair).
    pub(super) async fn apply_access_key(&mut self, cm: Option<&ConfigMap>, key: &LegacyAccessKey) {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.namespace);
        let label = self.config.label_value();
        match api.get_opt(&key.name).await {
            Ok(Some(s)) if !access_key_to_write(&s, key, &label) => return,
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
        if let Err(e) = api
            .patch(
                &key.name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&body),
            )
            .await
        {
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

/// Whether the existing Secret `s` is one the translation wrote (labelled, not taken over)
/// and no longer holds `key`'s pair.
fn access_key_to_write(s: &Secret, key: &LegacyAccessKey, label: &str) -> bool {
    let ours = s.labels().get(TRANSLATED_LABEL).map(String::as_str) == Some(label)
        && plan::taken_over_by(s.meta(), FIELD_MANAGER).is_none();
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
