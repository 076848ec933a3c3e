//! The explanation itself (pure): for one namespace (and optionally one ServiceAccount), every
//! binding's steps, each decided by the very function the reconciler or the webhook decides
//! with, over objects the plugin read:
//!
//! - `binding`: [`resolve`], as the reconciler and the webhook resolve a binding.
//! - `namespace`, `allowedNamespaces`: [`namespace_usable`] and [`namespace_verdict`], the two
//!   halves of the reconciler's `select_namespaces`.
//! - `serviceAccount`, `injectOnCreate`, `entry`: see [`super::service_accounts`].
//! - `secret`: [`managed`] and [`binding_owners`], the ownership check of the binding pipeline,
//!   over the Secret's metadata only.
//! - `reconciled`, `lastError`: the binding's status as the controller wrote it.
//!
//! Then the [`verdict`].

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::document::{
    BindingExplanation, Explanation, Inputs, SecretFacts, Step, StepResult, describe_namespaces,
    describe_selector, describe_service_accounts, list_or_none, step, verdicts,
};
use super::service_accounts::{asked_service_account, every_service_account};
use crate::api::conditions::{find_condition, reasons, status as condition_status, types};
use crate::api::{AcrRegistryBinding, NamespaceSelection};
use crate::model::resolve::{Resolved, resolve};
use crate::model::secret::{EXPIRES_ANNOTATION, binding_owners, managed};
use crate::model::selection::{NamespaceVerdict, namespace_usable, namespace_verdict};

/// The explanation of `inputs`.
pub fn explain(inputs: &Inputs<'_>) -> Explanation {
    let mut bindings: Vec<BindingExplanation> = inputs
        .bindings
        .iter()
        .map(|b| explain_binding(inputs, b))
        .collect();
    bindings.sort_by(|a, b| a.name.cmp(&b.name));
    Explanation {
        namespace: inputs.namespace.to_owned(),
        service_account: inputs.service_account_name.map(str::to_owned),
        secret: secret_facts(inputs.secret_name, inputs.secret),
        bindings,
    }
}

fn secret_facts(name: &str, meta: Option<&ObjectMeta>) -> SecretFacts {
    let mut written_by: Vec<String> = meta
        .and_then(|m| m.managed_fields.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| f.manager.clone())
        .collect();
    written_by.sort();
    written_by.dedup();
    SecretFacts {
        name: name.to_owned(),
        present: meta.is_some(),
        managed: meta.map(managed),
        bindings: meta
            .map(|m| binding_owners(m).into_iter().collect())
            .unwrap_or_default(),
        written_by,
        expires_at: meta
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(EXPIRES_ANNOTATION))
            .cloned(),
    }
}

fn explain_binding(inputs: &Inputs<'_>, binding: &AcrRegistryBinding) -> BindingExplanation {
    let name = binding.name_any();
    let policy = binding.spec.policy_name().to_owned();
    let resolved = resolve(binding, inputs.policies, inputs.resolve);
    let ns_labels = inputs.namespace_object.map(|n| n.labels().clone());
    let mut steps = Vec::new();

    // binding: resolves as the reconciler resolves it.
    steps.push(match (&resolved, &binding.metadata.deletion_timestamp) {
        (_, Some(_)) => step(
            step::BINDING,
            StepResult::Fail,
            verdicts::BINDING_DELETING,
            "being deleted: the controller removes its auths and entries".into(),
        ),
        (Ok(_), None) => step(
            step::BINDING,
            StepResult::Pass,
            "Resolved",
            format!("resolves against AcrCredentialPolicy {policy}"),
        ),
        (Err(blocker), None) => step(
            step::BINDING,
            StepResult::Fail,
            blocker.reason,
            blocker.message.clone(),
        ),
    });

    // namespace: the binding's own selection, on a namespace that can receive objects.
    let selection = describe_namespaces(&binding.spec.namespaces);
    steps.push(match inputs.namespace_object {
        None => step(
            step::NAMESPACE,
            StepResult::Fail,
            verdicts::NAMESPACE_NOT_FOUND,
            format!("namespace {} does not exist", inputs.namespace),
        ),
        Some(ns) if !namespace_usable(ns) => step(
            step::NAMESPACE,
            StepResult::Fail,
            verdicts::NAMESPACE_TERMINATING,
            format!("namespace {} is being deleted", inputs.namespace),
        ),
        Some(ns) => match namespace_verdict(
            &binding.spec.namespaces,
            None,
            inputs.namespace,
            ns.labels(),
        ) {
            NamespaceVerdict::NotSelected => step(
                step::NAMESPACE,
                StepResult::Fail,
                verdicts::NAMESPACE_NOT_SELECTED,
                format!("not selected by namespaces {{{selection}}}"),
            ),
            _ => step(
                step::NAMESPACE,
                StepResult::Pass,
                "Selected",
                format!("selected by namespaces {{{selection}}}"),
            ),
        },
    });

    // allowedNamespaces: the policy's say, with the very verdict the reconciler takes.
    steps.push(match (&resolved, &ns_labels) {
        (Err(_), _) => step(
            step::ALLOWED_NAMESPACES,
            StepResult::Skip,
            "PolicyUnknown",
            format!("AcrCredentialPolicy {policy} could not be used (see binding)"),
        ),
        (Ok(_), None) => step(
            step::ALLOWED_NAMESPACES,
            StepResult::Skip,
            verdicts::NAMESPACE_NOT_FOUND,
            "no namespace to check".into(),
        ),
        (Ok(r), Some(labels)) => allowed_step(r, &policy, inputs.namespace, labels),
    });

    // serviceAccount, injectOnCreate; then secret (its ownership decided as the binding
    // pipeline decides it) and entry.
    let sa_selection = resolved.as_ref().map_or_else(
        |_| binding.spec.effective_service_accounts(),
        |r| r.service_accounts.clone(),
    );
    let sa_text = describe_service_accounts(&sa_selection);
    let [sa_step, inject_step_, entry_step_] = match inputs.service_account {
        Some(asked) => {
            asked_service_account(inputs, binding, &resolved, &sa_selection, &sa_text, asked)
        }
        None => every_service_account(inputs, binding, &resolved, &sa_selection, &sa_text),
    };
    steps.extend([
        sa_step,
        inject_step_,
        secret_step(inputs.secret_name, inputs.secret, &name),
        entry_step_,
    ]);

    let (reconciled, last_error) = status_steps(binding, inputs.namespace);
    steps.push(reconciled);
    steps.push(last_error);
    let (verdict, message) = verdict(&steps, inputs.service_account.is_some());
    BindingExplanation {
        name,
        policy,
        verdict,
        message,
        steps,
    }
}

/// A selection of exactly `namespace`.
fn named(namespace: &str) -> NamespaceSelection {
    NamespaceSelection {
        names: Some(vec![namespace.to_owned()]),
        ..NamespaceSelection::default()
    }
}

fn allowed_step(
    r: &Resolved,
    policy: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Step {
    let Some(allowed) = &r.allowed else {
        return step(
            step::ALLOWED_NAMESPACES,
            StepResult::Pass,
            "Allowed",
            format!("AcrCredentialPolicy {policy} allows every namespace"),
        );
    };
    let text = describe_selector(allowed);
    match namespace_verdict(&r.namespaces, r.allowed.as_ref(), namespace, labels) {
        NamespaceVerdict::NotAllowed => step(
            step::ALLOWED_NAMESPACES,
            StepResult::Fail,
            reasons::NAMESPACE_NOT_ALLOWED,
            format!(
                "AcrCredentialPolicy {policy} allows only namespaces matching {text}; this namespace's labels do not"
            ),
        ),
        // Not selected by the binding: the policy is not asked yet; say what it will say once
        // the binding names the namespace.
        NamespaceVerdict::NotSelected
            if namespace_verdict(&named(namespace), r.allowed.as_ref(), namespace, labels)
                == NamespaceVerdict::NotAllowed =>
        {
            step(
                step::ALLOWED_NAMESPACES,
                StepResult::Fail,
                reasons::NAMESPACE_NOT_ALLOWED,
                format!(
                    "AcrCredentialPolicy {policy} allows only namespaces matching {text}; this namespace's labels do not"
                ),
            )
        }
        _ => step(
            step::ALLOWED_NAMESPACES,
            StepResult::Pass,
            "Allowed",
            format!("AcrCredentialPolicy {policy} allows namespaces matching {text}"),
        ),
    }
}

fn secret_step(name: &str, meta: Option<&ObjectMeta>, binding: &str) -> Step {
    let Some(meta) = meta else {
        return step(
            step::SECRET,
            StepResult::Wait,
            verdicts::SECRET_ABSENT,
            format!("no Secret {name} in the namespace"),
        );
    };
    if !managed(meta) {
        let facts = secret_facts(name, Some(meta));
        return step(
            step::SECRET,
            StepResult::Fail,
            reasons::SECRET_OWNED_BY_OTHERS,
            format!(
                "{name} exists and is not managed by this controller (written by {}); it is left untouched",
                list_or_none(&facts.written_by)
            ),
        );
    }
    let owners: Vec<String> = binding_owners(meta).into_iter().collect();
    if owners.iter().any(|o| o == binding) {
        step(
            step::SECRET,
            StepResult::Pass,
            "HoldsAuths",
            format!(
                "{name} is the controller's and holds this binding's auths (bindings: {})",
                owners.join(", ")
            ),
        )
    } else {
        step(
            step::SECRET,
            StepResult::Wait,
            verdicts::NOT_IN_SECRET,
            format!(
                "{name} is the controller's but holds no auths of this binding (bindings: {})",
                list_or_none(&owners)
            ),
        )
    }
}

/// `reconciled` and `lastError`, from the binding's status.
fn status_steps(binding: &AcrRegistryBinding, namespace: &str) -> (Step, Step) {
    let status = binding.status.as_ref();
    let generation = binding.metadata.generation;
    let observed = status.and_then(|s| s.observed_generation);
    let ready = status.and_then(|s| find_condition(&s.conditions, types::READY));
    let reconciled = match (status, ready) {
        (None, _) | (_, None) => step(
            step::RECONCILED,
            StepResult::Wait,
            reasons::PROGRESSING,
            "the controller has not written a status for this binding yet".into(),
        ),
        _ if observed < generation => step(
            step::RECONCILED,
            StepResult::Wait,
            reasons::PROGRESSING,
            format!(
                "the status describes generation {}, the binding is at {}",
                observed.unwrap_or(0),
                generation.unwrap_or(0)
            ),
        ),
        (Some(_), Some(c)) => step(
            step::RECONCILED,
            StepResult::Info,
            verdicts::RECONCILED,
            format!(
                "generation {} reconciled: Ready {} ({})",
                generation.unwrap_or(0),
                c.status,
                c.reason
            ),
        ),
    };
    let failed = status
        .and_then(|s| s.namespaces.as_ref())
        .and_then(|n| n.failed.iter().find(|f| f.name == namespace));
    let last_error = match (failed, ready, status.and_then(|s| s.last_failure.as_ref())) {
        (Some(f), _, _) => step(
            step::LAST_ERROR,
            StepResult::Fail,
            &f.reason,
            format!("this namespace: {}", f.message),
        ),
        (None, Some(c), _) if c.status == condition_status::FALSE => step(
            step::LAST_ERROR,
            StepResult::Fail,
            &c.reason,
            c.message.clone(),
        ),
        (None, _, Some(past)) => step(
            step::LAST_ERROR,
            StepResult::Info,
            &past.reason,
            format!("at {} (now recovered): {}", past.time.0, past.message),
        ),
        _ => step(
            step::LAST_ERROR,
            StepResult::Info,
            verdicts::NONE,
            "none".into(),
        ),
    };
    (reconciled, last_error)
}

/// The verdict: the first step decided against the binding; else done (`Bound`, `Synced`);
/// else the status' error; else `Progressing`.
pub fn verdict(steps: &[Step], asked_service_account: bool) -> (String, String) {
    let by = |name: &str| steps.iter().find(|s| s.step == name);
    let decided = [
        step::BINDING,
        step::NAMESPACE,
        step::ALLOWED_NAMESPACES,
        step::SERVICE_ACCOUNT,
        step::SECRET,
    ];
    if let Some(s) = decided
        .iter()
        .filter_map(|n| by(n))
        .find(|s| s.result == StepResult::Fail)
    {
        return (s.reason.clone(), s.message.clone());
    }
    let secret_done = by(step::SECRET).is_some_and(|s| s.result == StepResult::Pass);
    let entry_done = by(step::ENTRY).is_some_and(|s| s.result == StepResult::Pass);
    match (secret_done, asked_service_account) {
        (true, true) if entry_done => {
            return (
                verdicts::BOUND.into(),
                by(step::ENTRY)
                    .map(|s| s.message.clone())
                    .unwrap_or_default(),
            );
        }
        (true, false) => {
            return (
                verdicts::SYNCED.into(),
                by(step::SECRET)
                    .map(|s| s.message.clone())
                    .unwrap_or_default(),
            );
        }
        _ => {}
    }
    if let Some(s) = by(step::LAST_ERROR).filter(|s| s.result == StepResult::Fail) {
        return (s.reason.clone(), s.message.clone());
    }
    let waiting = by(step::RECONCILED)
        .filter(|s| s.result == StepResult::Wait)
        .map(|s| s.message.clone())
        .unwrap_or_else(|| "the controller has not acted on it yet".into());
    (reasons::PROGRESSING.into(), waiting)
}
