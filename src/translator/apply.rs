//! Applying what a translation pass yields and pruning what it no longer yields, as
//! [`super::plan`] decided. Talks to the cluster: yes (server-side apply and deletes under
//! [`FIELD_MANAGER`]; a failure becomes a Warning Event on the ConfigMap).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::plan::{self, Existing, Plan};
use super::{FIELD_MANAGER, Translator};
use crate::api::{AcrCredentialPolicy, AcrRegistryBinding};
use crate::cluster::error::is_status;
use crate::legacy::{TRANSLATED_LABEL, Translation};
use crate::model::events;

pub(super) fn spec_json<K: Serialize>(spec: &K) -> Value {
    serde_json::to_value(spec).unwrap_or(Value::Null)
}

/// The translated policies and bindings by name, labelled as translated from `label`.
pub(super) fn labelled_objects(
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
    /// Plans one kind against every object of it in the cluster; also returns those objects.
    pub(super) async fn plan_kind<K>(
        &self,
        kind: &'static str,
        api: &Api<K>,
        desired: &BTreeMap<String, K>,
        spec: impl Fn(&K) -> Value,
    ) -> Result<(Plan, Vec<K>), kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let listed = api.list(&ListParams::default()).await?.items;
        let existing: Vec<Existing> = listed
            .iter()
            .map(|o| Existing::new(o.meta(), spec(o), FIELD_MANAGER))
            .collect();
        let desired: BTreeMap<String, Value> =
            desired.iter().map(|(n, o)| (n.clone(), spec(o))).collect();
        let plan = plan::plan(kind, &desired, &existing, &self.config.label_value());
        Ok((plan, listed))
    }

    pub(super) async fn apply_all<K>(
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

    pub(super) async fn delete_all<K>(
        &mut self,
        cm: Option<&ConfigMap>,
        api: &Api<K>,
        plan: &Plan,
    ) -> usize
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
                Err(e) if is_status(&e, 404) => {}
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
}
