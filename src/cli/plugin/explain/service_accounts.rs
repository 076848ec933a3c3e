//! The ServiceAccount steps (pure): `serviceAccount` by
//! [`service_account_selected`], as the ServiceAccount plan asks it; `injectOnCreate` by the
//! webhook's own [`decide`] on a ServiceAccount created with this name and labels; `entry` by
//! [`entry`], the plan's reading of `imagePullSecrets` and of the recorded-entries annotation.
//! For one ServiceAccount asked by name, or summed up over every ServiceAccount of the
//! namespace.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;

use super::document::{Inputs, Step, StepResult, list_or_none, step, verdicts};
use crate::api::{AcrRegistryBinding, ServiceAccountSelection};
use crate::model::resolve::Resolved;
use crate::model::selection::service_account_selected;
use crate::model::service_accounts::{ADDED_ANNOTATION, Entry, entry};
use crate::model::status::Blocker;
use crate::webhook::decide::{Outcome, decide, decision};
use crate::webhook::review::ServiceAccountCreate;

/// The steps of one ServiceAccount asked by name (`None`: it does not exist).
pub fn asked_service_account(
    inputs: &Inputs<'_>,
    binding: &AcrRegistryBinding,
    resolved: &Result<Resolved, Blocker>,
    selection: &ServiceAccountSelection,
    selection_text: &str,
    sa: Option<&ServiceAccount>,
) -> [Step; 3] {
    let name = inputs.service_account_name.unwrap_or_default();
    let labels = sa.map(|s| s.labels().clone()).unwrap_or_default();
    let selected = service_account_selected(selection, name, &labels);
    let selection_step = match sa {
        None => step(
            step::SERVICE_ACCOUNT,
            StepResult::Fail,
            verdicts::SERVICE_ACCOUNT_NOT_FOUND,
            format!(
                "ServiceAccount {name} does not exist (serviceAccounts {{{selection_text}}} would {}select it)",
                if selected { "" } else { "not " }
            ),
        ),
        Some(_) if !selected => step(
            step::SERVICE_ACCOUNT,
            StepResult::Fail,
            verdicts::SERVICE_ACCOUNT_NOT_SELECTED,
            format!("not selected by serviceAccounts {{{selection_text}}}"),
        ),
        Some(s) if s.metadata.deletion_timestamp.is_some() => step(
            step::SERVICE_ACCOUNT,
            StepResult::Fail,
            verdicts::SERVICE_ACCOUNT_TERMINATING,
            format!("ServiceAccount {name} is being deleted"),
        ),
        Some(_) => step(
            step::SERVICE_ACCOUNT,
            StepResult::Pass,
            "Selected",
            format!("selected by serviceAccounts {{{selection_text}}}"),
        ),
    };
    let inject = inject_step(inputs, binding, resolved, name, &labels);
    let entry_step = match sa {
        None => step(
            step::ENTRY,
            StepResult::Skip,
            verdicts::SERVICE_ACCOUNT_NOT_FOUND,
            "no ServiceAccount".into(),
        ),
        Some(s) => entry_step(s, inputs.secret_name, selected),
    };
    [selection_step, inject, entry_step]
}

/// The ServiceAccount steps when only the namespace was asked: which of its ServiceAccounts the
/// binding selects, and which list the Secret.
pub fn every_service_account(
    inputs: &Inputs<'_>,
    binding: &AcrRegistryBinding,
    resolved: &Result<Resolved, Blocker>,
    selection: &ServiceAccountSelection,
    selection_text: &str,
) -> [Step; 3] {
    let mut selected = Vec::new();
    let mut injected = Vec::new();
    let mut listing = Vec::new();
    for sa in inputs.service_accounts {
        let name = sa.name_any();
        if service_account_selected(selection, &name, sa.labels()) {
            selected.push(name.clone());
            if inject_step(inputs, binding, resolved, &name, sa.labels()).reason
                == decision::PATCHED
            {
                injected.push(name.clone());
            }
        }
        match entry(sa, inputs.secret_name) {
            Entry::Absent => {}
            Entry::Ours => listing.push(format!("{name} (added by the controller)")),
            Entry::Others => listing.push(format!("{name} (added by someone else)")),
        }
    }
    let total = inputs.service_accounts.len();
    let selection_step = step(
        step::SERVICE_ACCOUNT,
        StepResult::Info,
        if selected.is_empty() {
            verdicts::SERVICE_ACCOUNT_NOT_SELECTED
        } else {
            "Selected"
        },
        format!(
            "serviceAccounts {{{selection_text}}} selects {} of {total}: {}",
            selected.len(),
            list_or_none(&selected)
        ),
    );
    let inject = if binding.spec.inject_on_create() {
        step(
            step::INJECT_ON_CREATE,
            StepResult::Info,
            if injected.is_empty() {
                decision::NOT_SELECTED
            } else {
                decision::PATCHED
            },
            format!(
                "on: the webhook adds the entry at creation to ServiceAccounts named and labelled like: {}",
                list_or_none(&injected)
            ),
        )
    } else {
        off_step()
    };
    let entries = step(
        step::ENTRY,
        StepResult::Info,
        if listing.is_empty() {
            verdicts::ENTRY_ABSENT
        } else {
            "Listed"
        },
        format!(
            "ServiceAccounts listing {}: {}",
            inputs.secret_name,
            list_or_none(&listing)
        ),
    );
    [selection_step, inject, entries]
}

fn off_step() -> Step {
    step(
        step::INJECT_ON_CREATE,
        StepResult::Info,
        verdicts::OFF,
        "off: a new ServiceAccount gets the entry from the reconciler, moments after creation"
            .into(),
    )
}

/// The webhook's decision on a ServiceAccount created in the namespace with this name and
/// labels, with this binding as the only candidate.
fn inject_step(
    inputs: &Inputs<'_>,
    binding: &AcrRegistryBinding,
    resolved: &Result<Resolved, Blocker>,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Step {
    if !binding.spec.inject_on_create() {
        return off_step();
    }
    let mut object = serde_json::Map::new();
    object.insert(
        "metadata".into(),
        serde_json::json!({"name": name, "namespace": inputs.namespace, "labels": labels}),
    );
    let create = ServiceAccountCreate {
        uid: String::new(),
        namespace: inputs.namespace.to_owned(),
        name: name.to_owned(),
        object,
    };
    let ns_labels = inputs.namespace_object.map(|n| n.labels().clone());
    let candidates: Vec<Resolved> = resolved.iter().cloned().collect();
    let outcome = decide(&create, ns_labels.as_ref(), &candidates, inputs.webhook);
    let message = match &outcome {
        Outcome::Patch { .. } => {
            "on: the webhook adds the entry to a ServiceAccount created with this name and labels"
                .to_owned()
        }
        Outcome::Skip(d) if *d == decision::EXCLUDED_NAMESPACE => {
            "on, but the webhook never changes ServiceAccounts of this namespace".to_owned()
        }
        Outcome::Skip(d) if *d == decision::OPTED_OUT => format!(
            "on, but the ServiceAccount opts out ({}={})",
            crate::webhook::OPT_OUT_LABEL,
            crate::webhook::OPT_OUT_VALUE
        ),
        Outcome::Skip(d) => format!("on, but the webhook would not add the entry ({d})"),
    };
    step(
        step::INJECT_ON_CREATE,
        StepResult::Info,
        outcome.decision(),
        message,
    )
}

fn entry_step(sa: &ServiceAccount, secret: &str, selected: bool) -> Step {
    match entry(sa, secret) {
        Entry::Ours => step(
            step::ENTRY,
            StepResult::Pass,
            verdicts::ADDED_BY_CONTROLLER,
            format!(
                "lists {secret}, added by the controller (recorded in {ADDED_ANNOTATION}; removed when no binding wants it)"
            ),
        ),
        Entry::Others => step(
            step::ENTRY,
            StepResult::Pass,
            verdicts::ADDED_BY_OTHERS,
            format!(
                "lists {secret}, added by someone else (not recorded in {ADDED_ANNOTATION}; the controller never removes it)"
            ),
        ),
        Entry::Absent if selected => step(
            step::ENTRY,
            StepResult::Wait,
            verdicts::ENTRY_ABSENT,
            format!("does not list {secret}"),
        ),
        Entry::Absent => step(
            step::ENTRY,
            StepResult::Info,
            verdicts::ENTRY_ABSENT,
            format!("does not list {secret}"),
        ),
    }
}
