//! The explanation's vocabulary (pure, a leaf): step names, results and reasons, the `-o json`
//! document ([`Explanation`]; its field names and values are stable), what the plugin read
//! ([`Inputs`]), and the selections spelt the way the spec spells them.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::core::Selector;
use kube::runtime::reflector::Store;
use serde::Serialize;

use crate::api::{
    AcrCredentialPolicy, AcrRegistryBinding, NamespaceSelection, ServiceAccountSelection,
};
use crate::model::resolve::ResolveConfig;
use crate::webhook::Settings;

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

pub fn step(step: &'static str, result: StepResult, reason: &str, message: String) -> Step {
    Step {
        step,
        result,
        reason: reason.to_owned(),
        message,
    }
}

pub fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
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
