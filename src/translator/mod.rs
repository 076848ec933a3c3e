//! Live translation of the legacy `acr-configuration` ConfigMap (`run --legacy-configmap`).
//! Talks to the cluster: yes.
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
//!   which Secret to create (never the values). A Secret the translation wrote is deleted once
//!   no inline AccessKey names it and no policy reads it, if it is still its own (labelled, its
//!   data claimed by no one else): a delete on the uid and resourceVersion just read, with an
//!   Event on the ConfigMap.
//!
//! Files: this one watches and runs a pass and reports; [`plan`] decides (pure), [`apply`]
//! applies and prunes, [`access_key`] writes and prunes the AccessKey Secrets. Events go
//! through the one Event writer ([`crate::cluster::recorder`]).

pub mod access_key;
pub mod apply;
pub mod plan;

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::api::Api;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::api::{AcrCredentialPolicy, AcrRegistryBinding};
use crate::cluster::caches::WatchBackoff;
use crate::cluster::recorder::Recorder;
use crate::legacy::{self, TokenMode, TranslateOptions, Translation};
use crate::model::events;

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
    recorder: Arc<Recorder>,
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
        .backoff(WatchBackoff::new())
    );
    let mut translator = Translator {
        client,
        recorder,
        config,
        reported_version: None,
        reported: HashSet::new(),
        access_key_secrets: BTreeSet::new(),
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
    recorder: Arc<Recorder>,
    config: LegacyConfigMap,
    /// The ConfigMap version whose warnings were published, and what was published for it.
    reported_version: Option<String>,
    reported: HashSet<(String, String)>,
    /// The AccessKey Secrets this translator wrote or found its own, until they are deleted:
    /// the candidates for pruning besides those the labelled policies read.
    access_key_secrets: BTreeSet<plan::SecretRef>,
}

impl Translator {
    /// One pass: translate, then apply and prune. Nothing is changed when translation fails.
    async fn pass(&mut self, cm: Option<&ConfigMap>) {
        self.new_version(cm);
        let Some(translation) = self.translate(cm).await else {
            return;
        };
        let label = self.config.label_value();
        let (policies, bindings) = apply::labelled_objects(&translation, &label);
        let policy_api: Api<AcrCredentialPolicy> = Api::all(self.client.clone());
        let binding_api: Api<AcrRegistryBinding> = Api::all(self.client.clone());
        let ((policy_plan, listed_policies), (binding_plan, _)) = match (
            self.plan_kind("AcrCredentialPolicy", &policy_api, &policies, |p| {
                apply::spec_json(&p.spec)
            })
            .await,
            self.plan_kind("AcrRegistryBinding", &binding_api, &bindings, |b| {
                apply::spec_json(&b.spec)
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
        self.prune_access_keys(cm, &translation, &policy_api, &listed_policies)
            .await;
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

    /// Publishes an Event on the ConfigMap, once per ConfigMap version and message, through
    /// the one Event writer: a new Event per message (only `create` is granted in the
    /// ConfigMap's namespace; repeats are already suppressed here).
    async fn report(&mut self, cm: &ConfigMap, type_: EventType, reason: &str, note: String) {
        if !self.reported.insert((reason.to_owned(), note.clone())) {
            return;
        }
        tracing::info!(configmap = %self.config.label_value(), reason, "{note}");
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: events::actions::TRANSLATE.to_owned(),
            secondary: None,
        };
        let reference: ObjectReference = cm.object_ref(&());
        if let Err(e) = self.recorder.publish_new(&event, &reference).await {
            tracing::warn!(error = %e, reason, "could not publish Event");
        }
    }
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
}
