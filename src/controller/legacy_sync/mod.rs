//! Live translation of the legacy `acr-configuration` ConfigMap (`run --legacy-configmap`).
//!
//! [`run_translator`] watches that one ConfigMap (a field selector on its name, so RBAC can grant
//! it by name), translates it with the same function as `migrate`, server-side applies the
//! policies and bindings under its own field manager ([`FIELD_MANAGER`]) with the label
//! `acrcredentials.io/translated-from=<namespace>.<name>`, and prunes labelled objects the
//! ConfigMap no longer yields (all of them when it is deleted). It also runs every `resync`, so
//! a translated object deleted or edited by hand is put back.
//!
//! - A ConfigMap that does not translate changes nothing: the objects applied last stay, and a
//!   Warning Event per problem names the key and line.
//! - Objects taken over by someone else (see [`plan`] for the rule) and name clashes are left
//!   alone and reported.
//! - Warnings and notices are published once per ConfigMap version (resourceVersion).
//! - AccessKey pairs written inline (`customAccessKey`) go into the Secret the translated policy
//!   names, applied under the same field manager; when that is not allowed, a Warning Event says
//!   which Secret to create (never the values).

pub mod plan;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::events;
use crate::api::{AcrCredentialPolicy, AcrRegistryBinding};
use crate::legacy::{
    self, LegacyAccessKey, TRANSLATED_LABEL, TokenMode, TranslateOptions, Translation,
};
use plan::{Existing, Plan};

/// Field manager of everything the translation applies. Distinct from the controller's status
/// manager, so `managedFields` tell translated specs from status writes.
pub const FIELD_MANAGER: &str = "acr-credential-controller-legacy";

/// Which ConfigMap to translate, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyConfigMap {
    pub namespace: String,
    pub name: String,
    /// The legacy add-on's `tokenMode` (not in the ConfigMap); `None` assumes auto and warns.
    pub token_mode: Option<TokenMode>,
    /// How often to translate again even without a change.
    pub resync: Duration,
}

impl LegacyConfigMap {
    /// Parses `NAMESPACE/NAME`.
    pub fn parse(reference: &str) -> Result<Self, String> {
        let (namespace, name) = reference
            .split_once('/')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| format!("expected NAMESPACE/NAME, got {reference:?}"))?;
        let this = LegacyConfigMap {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            token_mode: None,
            resync: Duration::from_secs(300),
        };
        if this.label_value().len() > 63 {
            return Err(format!(
                "{reference}: NAMESPACE.NAME must fit a label value (63 characters)"
            ));
        }
        Ok(this)
    }

    /// The value of the translation label on what this ConfigMap yields.
    pub fn label_value(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

/// Watches and translates the ConfigMap until `shutdown` completes.
pub async fn run_translator(
    client: Client,
    config: LegacyConfigMap,
    shutdown: impl Future<Output = ()> + Send,
) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &config.namespace);
    let (store, writer) = reflector::store::<ConfigMap>();
    let mut events = std::pin::pin!(
        reflector::reflector(
            writer,
            watcher(
                api,
                watcher::Config::default().fields(&format!("metadata.name={}", config.name)),
            ),
        )
        .backoff(super::caches::WatchBackoff::new())
    );
    let mut translator = Translator {
        client,
        config,
        reported_version: None,
        reported: HashSet::new(),
    };
    let mut resync = tokio::time::interval(translator.config.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    let key = ObjectRef::new(&translator.config.name).within(&translator.config.namespace);
    let mut ready = false;
    tracing::info!(configmap = %translator.config.label_value(), "live translation of the legacy ConfigMap started");
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            event = events.next() => match event {
                None => break,
                Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)) => {
                    ready = true;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching the legacy ConfigMap failed; retrying");
                    continue;
                }
            },
            _ = resync.tick() => {}
        }
        if ready {
            let cm = store.get(&key);
            translator.pass(cm.as_deref()).await;
        }
    }
    tracing::info!("live translation stopped");
}

struct Translator {
    client: Client,
    config: LegacyConfigMap,
    /// The ConfigMap version whose warnings were published, and what was published for it.
    reported_version: Option<String>,
    reported: HashSet<(String, String)>,
}

fn spec_json<K: Serialize>(spec: &K) -> Value {
    serde_json::to_value(spec).unwrap_or(Value::Null)
}

/// The translated policies and bindings by name, labelled as translated from `label`.
fn labelled_objects(
    translation: &Translation,
    label: &str,
) -> (
    BTreeMap<String, AcrCredentialPolicy>,
    BTreeMap<String, AcrRegistryBinding>,
) {
    let labelled = |mut meta: ObjectMeta| {
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(TRANSLATED_LABEL.to_owned(), label.to_owned());
        meta
    };
    let policies = translation
        .policies
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p.metadata = labelled(p.metadata);
            (p.name_any(), p)
        })
        .collect();
    let bindings = translation
        .bindings
        .iter()
        .map(|b| {
            let mut b = b.clone();
            b.metadata = labelled(b.metadata);
            (b.name_any(), b)
        })
        .collect();
    (policies, bindings)
}

impl Translator {
    /// One pass: translate, then apply and prune. Nothing is changed when translation fails.
    async fn pass(&mut self, cm: Option<&ConfigMap>) {
        self.new_version(cm);
        let Some(translation) = self.translate(cm).await else {
            return;
        };
        let label = self.config.label_value();
        let (policies, bindings) = labelled_objects(&translation, &label);
        let policy_api: Api<AcrCredentialPolicy> = Api::all(self.client.clone());
        let binding_api: Api<AcrRegistryBinding> = Api::all(self.client.clone());
        let (policy_plan, binding_plan) = match (
            self.plan_kind("AcrCredentialPolicy", &policy_api, &policies, |p| {
                spec_json(&p.spec)
            })
            .await,
            self.plan_kind("AcrRegistryBinding", &binding_api, &bindings, |b| {
                spec_json(&b.spec)
            })
            .await,
        ) {
            (Ok(p), Ok(b)) => (p, b),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot list policies and bindings; translation postponed");
                return;
            }
        };
        for notice in policy_plan.notices.iter().chain(&binding_plan.notices) {
            self.report_opt(cm, notice.event_type(), notice.reason(), notice.message())
                .await;
        }

        for key in &translation.access_keys {
            self.apply_access_key(cm, key).await;
        }
        let mut changes = 0usize;
        changes += self
            .apply_all(cm, &policy_api, &policy_plan, &policies)
            .await;
        changes += self
            .apply_all(cm, &binding_api, &binding_plan, &bindings)
            .await;
        changes += self.delete_all(cm, &binding_api, &binding_plan).await;
        changes += self.delete_all(cm, &policy_api, &policy_plan).await;
        if changes > 0 {
            tracing::info!(
                configmap = %label,
                policies = policies.len(),
                bindings = bindings.len(),
                changes,
                "legacy ConfigMap translated and applied"
            );
        }
    }

    /// A new ConfigMap version: its warnings are published again.
    fn new_version(&mut self, cm: Option<&ConfigMap>) {
        let version = cm.and_then(|c| c.resource_version());
        if version != self.reported_version {
            self.reported.clear();
            self.reported_version = version;
        }
    }

    /// Translates the ConfigMap (none: nothing to keep) and reports its warnings; `None` when it
    /// does not translate, after reporting every problem.
    async fn translate(&mut self, cm: Option<&ConfigMap>) -> Option<Translation> {
        let Some(cm) = cm else {
            return Some(Translation::default());
        };
        let options = TranslateOptions {
            token_mode: self.config.token_mode,
            label_as_translated: false,
        };
        match legacy::translate_configmap(cm, &options) {
            Ok(t) => {
                for w in &t.warnings {
                    // The advice written for `migrate` users, adapted: here the controller
                    // writes the AccessKey Secret itself.
                    let note = w.to_string().replace(
                        "Create that Secret (the values are not printed here), then remove",
                        "The live translation writes that Secret unless one of that name exists; before moving to Git, create it yourself and remove",
                    );
                    self.report(
                        cm,
                        EventType::Warning,
                        events::reasons::TRANSLATION_WARNING,
                        note,
                    )
                    .await;
                }
                Some(t)
            }
            Err(errors) => {
                for e in &errors.0 {
                    self.report(
                        cm,
                        EventType::Warning,
                        e.reason(),
                        format!("{e}; nothing was changed: the objects translated before stay as they are"),
                    )
                    .await;
                }
                None
            }
        }
    }

    async fn plan_kind<K>(
        &self,
        kind: &'static str,
        api: &Api<K>,
        desired: &BTreeMap<String, K>,
        spec: impl Fn(&K) -> Value,
    ) -> Result<Plan, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let existing: Vec<Existing> = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|o| Existing::new(o.meta(), spec(o), FIELD_MANAGER))
            .collect();
        let desired: BTreeMap<String, Value> =
            desired.iter().map(|(n, o)| (n.clone(), spec(o))).collect();
        Ok(plan::plan(
            kind,
            &desired,
            &existing,
            &self.config.label_value(),
        ))
    }

    async fn apply_all<K>(
        &mut self,
        cm: Option<&ConfigMap>,
        api: &Api<K>,
        plan: &Plan,
        desired: &BTreeMap<String, K>,
    ) -> usize
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let mut n = 0;
        for name in &plan.apply {
            let Some(object) = desired.get(name) else {
                continue;
            };
            let mut body = serde_json::to_value(object).unwrap_or(Value::Null);
            if let Some(map) = body.as_object_mut() {
                map.remove("status");
            }
            // Not forced: if someone took the fields over since the plan, the apply conflicts
            // and their values stay.
            match api
                .patch(
                    name,
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Apply(&body),
                )
                .await
            {
                Ok(_) => n += 1,
                Err(e) => {
                    let kind = K::kind(&());
                    self.report_opt(
                        cm,
                        EventType::Warning,
                        events::reasons::APPLY_FAILED,
                        format!("could not apply the translated {kind} {name}: {e}"),
                    )
                    .await;
                }
            }
        }
        n
    }

    async fn delete_all<K>(&mut self, cm: Option<&ConfigMap>, api: &Api<K>, plan: &Plan) -> usize
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let mut n = 0;
        for (name, uid) in &plan.delete {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => n += 1,
                Err(e) if super::error::is_status(&e, 404) => {}
                Err(e) => {
                    let kind = K::kind(&());
                    self.report_opt(
                        cm,
                        EventType::Warning,
                        events::reasons::PRUNE_FAILED,
                        format!("could not delete the translated {kind} {name}, which the ConfigMap no longer yields: {e}"),
                    )
                    .await;
                }
            }
        }
        n
    }

    /// Puts an inline AccessKey pair into the Secret its policy names, unless a Secret of that
    /// name exists that the translation did not create (or that already holds the pair).
    async fn apply_access_key(&mut self, cm: Option<&ConfigMap>, key: &LegacyAccessKey) {
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

    async fn report_opt(
        &mut self,
        cm: Option<&ConfigMap>,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        match cm {
            Some(cm) => self.report(cm, type_, reason, note).await,
            None => tracing::warn!(reason, "{note}"),
        }
    }

    /// Publishes an Event on the ConfigMap, once per ConfigMap version and message.
    async fn report(&mut self, cm: &ConfigMap, type_: EventType, reason: &str, note: String) {
        if !self.reported.insert((reason.to_owned(), note.clone())) {
            return;
        }
        tracing::info!(configmap = %self.config.label_value(), reason, "{note}");
        // One Event object per message: kube-runtime's Recorder folds Events with the same
        // reason into one series and keeps the first note, which would hide every problem but
        // the first. Repeats are already suppressed above.
        let reference: ObjectReference = cm.object_ref(&());
        let now = jiff::Timestamp::now();
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", self.config.name, now.as_nanosecond())),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some("Translate".into()),
            reason: Some(reason.to_owned()),
            // events.k8s.io notes hold at most 1 kB.
            note: Some(truncate(&note, 1000)),
            event_time: Some(MicroTime(now)),
            regarding: Some(reference),
            reporting_controller: Some(super::context::CONTROLLER_NAME.into()),
            reporting_instance: Some(
                std::env::var("POD_NAME")
                    .unwrap_or_else(|_| super::context::CONTROLLER_NAME.into()),
            ),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            ..K8sEvent::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &self.config.namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        if let Err(e) = api.create(&params, &event).await {
            tracing::warn!(error = %e, reason, "could not publish Event");
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

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn configmap_reference_is_namespace_slash_name() {
        let c = LegacyConfigMap::parse("kube-system/acr-configuration").unwrap();
        assert_eq!(
            (c.namespace.as_str(), c.name.as_str()),
            ("kube-system", "acr-configuration")
        );
        assert_eq!(c.label_value(), legacy::TRANSLATED_LABEL_VALUE);
        for bad in ["acr-configuration", "/x", "x/", "a/b/c"] {
            assert!(LegacyConfigMap::parse(bad).is_err(), "{bad}");
        }
        let long = format!("kube-system/{}", "x".repeat(60));
        assert!(LegacyConfigMap::parse(&long).unwrap_err().contains("63"));
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, 1000);
        assert!(t.len() <= 1000 + '…'.len_utf8());
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short", 1000), "short");
    }
}
