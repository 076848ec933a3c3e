//! The binding finalizer ([`FINALIZER`]). Talks to the cluster: yes (patches of the binding's
//! `metadata.finalizers`).
//!
//! Added in the same reconcile that first converges a
//! binding (no extra round-trip), removed once its cleanup has converged every namespace.
//!
//! [`plan_add`] and [`plan_remove`] build JSON patches that `test` the current list first, so a
//! concurrent change to `metadata.finalizers` fails the patch instead of being overwritten;
//! [`add`] and [`remove`] send them.

use json_patch::jsonptr::PointerBuf;
use json_patch::{
    AddOperation, Patch as JsonPatch, PatchOperation, RemoveOperation, TestOperation,
};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use crate::api::AcrRegistryBinding;
use crate::cluster::budget::WriteBudget;
use crate::cluster::error::{Result, is_status};

/// Finalizer on bindings: their ServiceAccount entries are removed before they go.
pub const FINALIZER: &str = "acrcredentials.io/cleanup";

/// Whether the object carries our finalizer.
pub fn has<K: Resource>(object: &K) -> bool {
    object.finalizers().iter().any(|f| f == FINALIZER)
}

fn test_current(finalizers: &[String]) -> PatchOperation {
    PatchOperation::Test(TestOperation {
        path: PointerBuf::from_tokens(["metadata", "finalizers"]),
        value: if finalizers.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(finalizers)
        },
    })
}

/// The patch adding our finalizer, or `None` when it is there already.
pub fn plan_add<K: Resource>(object: &K) -> Option<JsonPatch> {
    if has(object) {
        return None;
    }
    let current = object.finalizers();
    let add = if current.is_empty() {
        AddOperation {
            path: PointerBuf::from_tokens(["metadata", "finalizers"]),
            value: serde_json::json!([FINALIZER]),
        }
    } else {
        AddOperation {
            path: PointerBuf::from_tokens(["metadata", "finalizers", "-"]),
            value: serde_json::json!(FINALIZER),
        }
    };
    Some(JsonPatch(vec![
        test_current(current),
        PatchOperation::Add(add),
    ]))
}

/// The patch removing our finalizer, or `None` when it is not there.
pub fn plan_remove<K: Resource>(object: &K) -> Option<JsonPatch> {
    let current = object.finalizers();
    let index = current.iter().position(|f| f == FINALIZER)?;
    Some(JsonPatch(vec![
        test_current(current),
        PatchOperation::Remove(RemoveOperation {
            path: PointerBuf::from_tokens([
                "metadata".to_owned(),
                "finalizers".to_owned(),
                index.to_string(),
            ]),
        }),
    ]))
}

async fn send(
    api: &Api<AcrRegistryBinding>,
    budget: &WriteBudget,
    name: &str,
    patch: JsonPatch,
) -> Result<()> {
    budget.urgent();
    match api
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => {
            crate::metrics::write("AcrRegistryBinding", "patch");
            Ok(())
        }
        // Gone already: nothing left to hold back.
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Adds our finalizer unless it is there (an urgent write of the budget).
pub async fn add(
    api: &Api<AcrRegistryBinding>,
    budget: &WriteBudget,
    binding: &AcrRegistryBinding,
) -> Result<()> {
    match plan_add(binding) {
        Some(patch) => send(api, budget, &binding.name_any(), patch).await,
        None => Ok(()),
    }
}

/// Removes our finalizer if it is there (an urgent write of the budget).
pub async fn remove(
    api: &Api<AcrRegistryBinding>,
    budget: &WriteBudget,
    binding: &AcrRegistryBinding,
) -> Result<()> {
    match plan_remove(binding) {
        Some(patch) => send(api, budget, &binding.name_any(), patch).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(finalizers: &[&str]) -> AcrRegistryBinding {
        let mut b: AcrRegistryBinding = serde_yaml::from_str(
            "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrRegistryBinding\nmetadata: {name: b}\nspec: {registry: {instanceId: cri-test1}, namespaces: {names: [default]}}\n",
        )
        .unwrap();
        if !finalizers.is_empty() {
            b.metadata.finalizers = Some(finalizers.iter().map(|f| (*f).to_owned()).collect());
        }
        b
    }

    fn applied(b: &AcrRegistryBinding, patch: &JsonPatch) -> Vec<String> {
        let mut doc = serde_json::to_value(b).unwrap();
        json_patch::patch(&mut doc, &patch.0).unwrap();
        serde_json::from_value::<AcrRegistryBinding>(doc)
            .unwrap()
            .finalizers()
            .to_vec()
    }

    #[test]
    fn adds_to_an_absent_or_existing_list_and_keeps_others() {
        // No list yet: the API server's JSON patch treats a missing path as `null` in a `test`
        // (the json-patch crate does not, so the shape is checked instead of applied).
        let b = binding(&[]);
        assert_eq!(
            serde_json::to_value(plan_add(&b).unwrap()).unwrap(),
            serde_json::json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
            ])
        );
        let b = binding(&["example.com/other"]);
        assert_eq!(
            applied(&b, &plan_add(&b).unwrap()),
            vec!["example.com/other", FINALIZER]
        );
        assert!(plan_add(&binding(&[FINALIZER])).is_none());
    }

    #[test]
    fn removes_only_ours() {
        let b = binding(&["example.com/other", FINALIZER, "example.com/third"]);
        assert_eq!(
            applied(&b, &plan_remove(&b).unwrap()),
            vec!["example.com/other", "example.com/third"]
        );
        assert!(plan_remove(&binding(&["example.com/other"])).is_none());
    }

    #[test]
    fn a_concurrently_changed_list_fails_the_patch() {
        let seen = binding(&["example.com/other"]);
        let patch = plan_add(&seen).unwrap();
        let mut now = serde_json::to_value(binding(&["example.com/changed"])).unwrap();
        assert!(json_patch::patch(&mut now, &patch.0).is_err());
    }
}
