//! The explanation itself (pure): for one namespace (and optionally one ServiceAccount), every
//! binding's steps, each decided by the very function the reconciler or the webhook decides
//! with, over objects the plugin read:
//!
//! - `binding`: [`resolve`], as the reconciler and the webhook resolve a binding.
//! - `namespace`, `allowedNamespaces`: [`namespace_usable`] and [`namespace_verdict`], the two
//!   halves of the reconciler's `select_namespaces`.
//! - `serviceAccount`: [`service_account_selected`], as the ServiceAccount plan asks it.
//! - `injectOnCreate`: the webhook's own [`decide`] on a ServiceAccount created with this
//!   name and labels.
//! - `secret`: [`managed`] and [`binding_owners`], the ownership check of the binding pipeline,
//!   over the Secret's metadata only.
//! - `entry`: [`entry`], the ServiceAccount plan's reading of `imagePullSecrets` and of the
//!   recorded-entries annotation.
//! - `reconciled`, `lastError`: the binding's status as the controller wrote it.
//!
//! [`Explanation`] is the `-o json` document; its field names and values are stable.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;
use kube::core::Selector;
use kube::runtime::reflector::Store;
use serde::Serialize;

use crate::api::conditions::{find_condition, reasons, status as condition_status, types};
use crate::api::{
    AcrCredentialPolicy, AcrRegistryBinding, NamespaceSelection, ServiceAccountSelection,
};
use crate::model::resolve::{ResolveConfig, Resolved, resolve};
use crate::model::secret::{EXPIRES_ANNOTATION, binding_owners, managed};
use crate::model::selection::{
    NamespaceVerdict, namespace_usable, namespace_verdict, service_account_selected,
};
use crate::model::service_accounts::{ADDED_ANNOTATION, Entry, entry};
use crate::webhook::Settings;
use crate::webhook::decide::{Outcome, decide, decision};
use crate::webhook::review::ServiceAccountCreate;

/// Step names, in the order they are shown.
pub mod step {
    pub const BINDING: &str = "binding";
    pub const NAMESPACE: &str = "namespace";
    pub const ALLOWED_NAMESPACES: &str = "allowedNamespaces";
    pub const SERVICE_ACCOUNT: &str = "serviceAccount";
    pub const INJECT_ON_CREATE: &str = "injectOnCreate";
    pub const SECRET: &str = "secret";
    pub const ENTRY: &str = "entry";
    pub const RECONCILED: &str = "reconciled";
    pub const LAST_ERROR: &str = "lastError";
}

/// Verdicts and step reasons of the explanation's own (the others are the controller's
/// condition reasons and the webhook's decisions).
pub mod verdicts {
    /// The ServiceAccount lists the pull Secret, which holds this binding's auths.
    pub const BOUND: &str = "Bound";
    /// The namespace's pull Secret holds this binding's auths (no ServiceAccount asked).
    pub const SYNCED: &str = "Synced";
    /// The binding's namespace selection does not pick the namespace.
    pub const NAMESPACE_NOT_SELECTED: &str = "NamespaceNotSelected";
    /// The namespace does not exist.
    pub const NAMESPACE_NOT_FOUND: &str = "NamespaceNotFound";
    /// The namespace is being deleted: nothing is written there.
    pub const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";
    /// The binding's ServiceAccount selection does not pick the ServiceAccount.
    pub const SERVICE_ACCOUNT_NOT_SELECTED: &str = "ServiceAccountNotSelected";
    /// The ServiceAccount does not exist.
    pub const SERVICE_ACCOUNT_NOT_FOUND: &str = "ServiceAccountNotFound";
    /// The ServiceAccount is being deleted: the controller does not add entries to it.
    pub const SERVICE_ACCOUNT_TERMINATING: &str = "ServiceAccountTerminating";
    /// The binding is being deleted.
    pub const BINDING_DELETING: &str = "BindingDeleting";
    /// `injectOnCreate` is off.
    pub const OFF: &str = "Off";
    /// No pull Secret in the namespace.
    pub const SECRET_ABSENT: &str = "SecretAbsent";
    /// Our pull Secret, without this binding's auths.
    pub const NOT_IN_SECRET: &str = "NotInSecret";
    /// The ServiceAccount does not list the pull Secret.
    pub const ENTRY_ABSENT: &str = "EntryAbsent";
    /// Listed, and added by the controller.
    pub const ADDED_BY_CONTROLLER: &str = "AddedByController";
    /// Listed, but added by someone else.
    pub const ADDED_BY_OTHERS: &str = "AddedByOthers";
    /// The status describes the binding's current generation.
    pub const RECONCILED: &str = "Reconciled";
    /// No error in the binding's status.
    pub const NONE: &str = "None";
}

/// The outcome of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum StepResult {
    /// Decided in the binding's favour, or done.
    Pass,
    /// Decided against: the binding cannot put its Secret or entry there until this changes.
    Fail,
    /// Not done yet, with nothing deciding against it.
    Wait,
    /// Not decided: an input it needs is missing (e.g. the policy).
    Skip,
    /// Facts that do not decide the verdict.
    Info,
}

/// One step of one binding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// One of [`step`].
    pub step: &'static str,
    /// The outcome.
    pub result: StepResult,
    /// A CamelCase reason: a condition reason, a webhook decision or one of [`verdicts`].
    pub reason: String,
    /// What was decided and on what, for a human.
    pub message: String,
}

/// The explanation of one namespace (and ServiceAccount), as `-o json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The namespace explained.
    pub namespace: String,
    /// The ServiceAccount explained; `null` when only the namespace was asked.
    pub service_account: Option<String>,
    /// The namespace's pull Secret, from its metadata.
    pub secret: SecretFacts,
    /// Every binding considered, by name.
    pub bindings: Vec<BindingExplanation>,
}

/// The namespace's pull Secret, read as metadata (never its data).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretFacts {
    /// Its name (the controller's `--secret-name`).
    pub name: String,
    /// Whether it exists.
    pub present: bool,
    /// Whether it carries the controller's label; `null` when absent.
    pub managed: Option<bool>,
    /// The bindings whose auths it holds (its AcrRegistryBinding owner references).
    pub bindings: Vec<String>,
    /// The field managers that wrote it (from `managedFields`): whose it is when not ours.
    pub written_by: Vec<String>,
    /// When its earliest token expires (the controller's annotation).
    pub expires_at: Option<String>,
}

/// One binding's steps and verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingExplanation {
    /// The binding.
    pub name: String,
    /// The AcrCredentialPolicy it uses.
    pub policy: String,
    /// The reason of the first step that failed; otherwise `Bound`/`Synced` when done, the
    /// status' error when there is one, `Progressing` when the controller is not done yet.
    pub verdict: String,
    /// That step's (or the status') message.
    pub message: String,
    /// The steps, in [`step`] order.
    pub steps: Vec<Step>,
}

/// What the plugin read, the explanation's whole input.
pub struct Inputs<'a> {
    pub namespace: &'a str,
    /// The namespace; `None` when it does not exist.
    pub namespace_object: Option<&'a Namespace>,
    /// The ServiceAccount asked about (`Some(None)`: asked, but it does not exist); `None`
    /// when only the namespace was asked.
    pub service_account: Option<Option<&'a ServiceAccount>>,
    /// The ServiceAccount's name as asked.
    pub service_account_name: Option<&'a str>,
    /// Every ServiceAccount of the namespace (used when none was asked).
    pub service_accounts: &'a [ServiceAccount],
    /// The pull Secret's metadata; `None` when it does not exist.
    pub secret: Option<&'a ObjectMeta>,
    pub secret_name: &'a str,
    pub bindings: &'a [AcrRegistryBinding],
    pub policies: &'a Store<AcrCredentialPolicy>,
    pub resolve: &'a ResolveConfig,
    pub webhook: &'a Settings,
}

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

fn step(step: &'static str, result: StepResult, reason: &str, message: String) -> Step {
    Step {
        step,
        result,
        reason: reason.to_owned(),
        message,
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

/// The steps of one ServiceAccount asked by name (`None`: it does not exist).
fn asked_service_account(
    inputs: &Inputs<'_>,
    binding: &AcrRegistryBinding,
    resolved: &Result<Resolved, crate::model::status::Blocker>,
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
fn every_service_account(
    inputs: &Inputs<'_>,
    binding: &AcrRegistryBinding,
    resolved: &Result<Resolved, crate::model::status::Blocker>,
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

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
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
    resolved: &Result<Resolved, crate::model::status::Blocker>,
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

/// A namespace selection as the spec says it: `names: a, b`, `all`, `selector: k=v`, with
/// `exclude: x` when set.
pub fn describe_namespaces(selection: &NamespaceSelection) -> String {
    let mut text = describe_pick(
        selection.names.as_deref(),
        selection.all,
        selection.selector.as_ref(),
    );
    if let Some(exclude) = selection.exclude.as_ref().filter(|e| !e.is_empty()) {
        text.push_str(&format!(", exclude: {}", exclude.join(", ")));
    }
    text
}

/// A ServiceAccount selection as in force (`names: default` when unset).
pub fn describe_service_accounts(selection: &ServiceAccountSelection) -> String {
    describe_pick(
        selection.names.as_deref(),
        selection.all,
        selection.selector.as_ref(),
    )
}

fn describe_pick(
    names: Option<&[String]>,
    all: Option<bool>,
    selector: Option<&LabelSelector>,
) -> String {
    if let Some(names) = names {
        format!("names: {}", names.join(", "))
    } else if all == Some(true) {
        "all".to_owned()
    } else if let Some(selector) = selector {
        format!("selector: {}", describe_selector(selector))
    } else {
        "nothing".to_owned()
    }
}

/// A label selector the way `kubectl get -l` spells it; `everything` when empty.
pub fn describe_selector(selector: &LabelSelector) -> String {
    match Selector::try_from(selector.clone()) {
        Ok(s) if s.to_string().is_empty() => "everything".to_owned(),
        Ok(s) => s.to_string(),
        Err(_) => "an invalid selector".to_owned(),
    }
}
