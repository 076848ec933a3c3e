//! The watches the runtime starts: one reflector per kind ([`start_caches`]), our own Secret
//! writes in front of the Secret cache, the policy stream split between the two controllers,
//! and the [`Mappers`] from events of the secondary kinds to the bindings they concern.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::config::ControllerConfig;
use crate::api::{AcrCredentialPolicy, AcrRegistryBinding};
use crate::cluster::caches::{self, Readiness};
use crate::cluster::patched::Patched;
use crate::cluster::written::Written;
use crate::cluster::{Context, Stores};
use crate::model::cached_secret::CachedSecret;
use crate::model::cached_service_account::CachedServiceAccount;
use crate::model::selection;

/// Bindings that may care about namespace `ns`, whose labels are `labels` (taken from the
/// event's own object when there is one, so a namespace relabelled during a watch gap is judged
/// by its new labels): those whose selection matches it by name or labels (ignoring the
/// policy's allowedNamespaces) and those owning our Secret there.
fn bindings_for_namespace(
    bindings: &Store<AcrRegistryBinding>,
    secrets: &Store<CachedSecret>,
    secret_name: &str,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<ObjectRef<AcrRegistryBinding>> {
    let owners = secrets
        .get(&ObjectRef::new(secret_name).within(ns))
        .map(|s| s.owner_bindings())
        .unwrap_or_default();
    bindings
        .state()
        .iter()
        .filter(|b| {
            owners.contains(&b.name_any())
                || selection::namespace_verdict(&b.spec.namespaces, None, ns, labels)
                    != selection::NamespaceVerdict::NotSelected
        })
        .map(|b| ObjectRef::from_obj(&**b))
        .collect()
}

/// Maps watch events of the secondary kinds to the bindings they concern.
#[derive(Clone)]
pub struct Mappers {
    pub stores: Stores,
    pub secret_name: String,
}

impl Mappers {
    /// The labels of namespace `ns` as cached.
    fn labels_of(&self, ns: &str) -> BTreeMap<String, String> {
        self.stores
            .namespaces
            .get(&ObjectRef::new(ns))
            .map(|n| n.labels().clone())
            .unwrap_or_default()
    }

    pub fn namespace(&self, ns: &Namespace) -> Vec<ObjectRef<AcrRegistryBinding>> {
        let s = &self.stores;
        bindings_for_namespace(
            &s.bindings,
            &s.secrets,
            &self.secret_name,
            &ns.name_any(),
            ns.labels(),
        )
    }

    pub fn service_account(&self, sa: &CachedServiceAccount) -> Vec<ObjectRef<AcrRegistryBinding>> {
        let s = &self.stores;
        match sa.namespace() {
            Some(ns) => bindings_for_namespace(
                &s.bindings,
                &s.secrets,
                &self.secret_name,
                &ns,
                &self.labels_of(&ns),
            ),
            None => Vec::new(),
        }
    }

    pub fn secret(&self, secret: &CachedSecret) -> Vec<ObjectRef<AcrRegistryBinding>> {
        let s = &self.stores;
        let mut refs = match secret.namespace() {
            Some(ns) => bindings_for_namespace(
                &s.bindings,
                &s.secrets,
                &self.secret_name,
                &ns,
                &self.labels_of(&ns),
            ),
            None => Vec::new(),
        };
        refs.extend(
            secret
                .owner_bindings()
                .into_iter()
                .map(|o| ObjectRef::new(&o)),
        );
        refs
    }

    pub fn policy(&self, policy: &AcrCredentialPolicy) -> Vec<ObjectRef<AcrRegistryBinding>> {
        let name = policy.name_any();
        self.stores
            .bindings
            .state()
            .iter()
            .filter(|b| b.spec.policy_name() == name)
            .map(|b| ObjectRef::from_obj(&**b))
            .collect()
    }
}

/// Starts one reflector per kind, each reporting its lists to `readiness` and its re-lists to
/// `relisted`: the stores the reconcilers read, and the event streams (bindings, policies,
/// namespaces, ServiceAccounts, Secrets) the controllers must poll for the stores to fill.
#[allow(clippy::type_complexity)]
pub fn start_caches(
    client: &Client,
    config: &ControllerConfig,
    readiness: &Readiness,
    relisted: &futures::channel::mpsc::UnboundedSender<()>,
) -> (
    Stores,
    impl futures::Stream<Item = WatchResult<AcrRegistryBinding>> + Send + use<>,
    impl futures::Stream<Item = WatchResult<AcrCredentialPolicy>> + Send + use<>,
    impl futures::Stream<Item = WatchResult<Namespace>> + Send + use<>,
    impl futures::Stream<Item = WatchResult<CachedServiceAccount>> + Send + use<>,
    impl futures::Stream<Item = WatchResult<CachedSecret>> + Send + use<>,
) {
    let owned = || match &config.object_selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    let all = watcher::Config::default;
    let (bindings, binding_stream) = caches::cache::<AcrRegistryBinding>(
        Api::all(client.clone()),
        owned(),
        caches::kind::BINDINGS,
        readiness,
        relisted,
        caches::trim::nothing,
    );
    let (policies, policy_stream) = caches::cache::<AcrCredentialPolicy>(
        Api::all(client.clone()),
        owned(),
        caches::kind::POLICIES,
        readiness,
        relisted,
        caches::trim::nothing,
    );
    let (namespaces, ns_stream) = caches::cache::<Namespace>(
        Api::all(client.clone()),
        all(),
        caches::kind::NAMESPACES,
        readiness,
        relisted,
        caches::trim::namespace,
    );
    let (service_accounts, sa_stream) = caches::cache_as::<ServiceAccount, CachedServiceAccount>(
        Api::all(client.clone()),
        all(),
        caches::kind::SERVICE_ACCOUNTS,
        readiness,
        relisted,
        caches::trim::service_account,
        CachedServiceAccount::from,
    );
    let (secrets, secret_stream) = caches::cache_as::<Secret, CachedSecret>(
        Api::all(client.clone()),
        all().fields(&format!("metadata.name={}", config.secret_name)),
        caches::kind::SECRETS,
        readiness,
        relisted,
        caches::trim::secret,
        CachedSecret::from,
    );
    let (written, secret_stream) = in_front_of(&secrets, &config.secret_name, secret_stream);
    let patched = Arc::new(Patched::default());
    let observer = patched.clone();
    // The echo of our own patch triggers nothing (see `cluster::patched`).
    let sa_stream = sa_stream.filter(move |event| {
        let echo = event.as_ref().is_ok_and(|e| observer.follow(e));
        futures::future::ready(!echo)
    });
    let stores = Stores {
        bindings,
        policies,
        namespaces,
        service_accounts,
        secrets,
        written,
        patched,
    };
    (
        stores,
        binding_stream,
        policy_stream,
        ns_stream,
        sa_stream,
        secret_stream,
    )
}

/// What a watch stream yields.
pub type WatchResult<K> = Result<watcher::Event<K>, watcher::Error>;

/// Our own Secret writes, in front of the Secret cache until its stream shows them. The echo
/// of our own write (the version the write returned) triggers no reconcile: it tells the
/// controller nothing new, and a paced renewal wave would otherwise rerun the binding's whole
/// pass after each of its rewrites.
fn in_front_of<S>(
    secrets: &Store<CachedSecret>,
    secret_name: &str,
    stream: S,
) -> (
    Arc<Written>,
    impl futures::Stream<Item = WatchResult<CachedSecret>> + Send + use<S>,
)
where
    S: futures::Stream<Item = WatchResult<CachedSecret>> + Send,
{
    let written = Arc::new(Written::new(secrets.clone(), secret_name));
    let observer = written.clone();
    let stream = stream.filter(move |event| {
        let echo = event.as_ref().is_ok_and(|e| observer.follow(e));
        futures::future::ready(!echo)
    });
    (written, stream)
}

/// Policies feed two things: the binding controller (through the policy cache and mapper)
/// and the policy controller (its own trigger stream over the same cache). Returns the stream
/// for the first and the triggers of the second.
pub fn policy_triggers(
    policy_stream: impl futures::Stream<Item = WatchResult<AcrCredentialPolicy>> + Send,
) -> (
    impl futures::Stream<Item = WatchResult<AcrCredentialPolicy>> + Send,
    futures::channel::mpsc::UnboundedReceiver<Result<AcrCredentialPolicy, watcher::Error>>,
) {
    let (policy_trigger_tx, policy_trigger) = futures::channel::mpsc::unbounded();
    let policy_stream = policy_stream.inspect(move |event| {
        if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = event {
            let _ = policy_trigger_tx.unbounded_send(Ok(p.clone()));
        }
    });
    (policy_stream, policy_trigger)
}

/// Passes `stream` on, and puts in `touched` the namespace of each change after the initial
/// list that `namespace_of` says concerns one (see [`crate::cluster::touched`]). The initial
/// list and re-lists touch nothing: the binding passes that follow them cover every namespace.
pub fn touching<K, S>(
    stream: S,
    ctx: Arc<Context>,
    namespace_of: fn(&watcher::Event<K>) -> Option<String>,
) -> impl futures::Stream<Item = WatchResult<K>> + Send + use<K, S>
where
    K: Send,
    S: futures::Stream<Item = WatchResult<K>> + Send,
{
    stream.inspect(move |event| {
        if let Ok(event) = event
            && let Some(ns) = namespace_of(event)
        {
            ctx.touched.touch(&ns);
        }
    })
}

/// A namespace created or changed touches itself.
pub fn namespace_touched(event: &watcher::Event<Namespace>) -> Option<String> {
    match event {
        watcher::Event::Apply(ns) => Some(ns.name_any()),
        _ => None,
    }
}

/// A ServiceAccount created or changed touches its namespace (a deleted one needs nothing).
pub fn service_account_touched(event: &watcher::Event<CachedServiceAccount>) -> Option<String> {
    match event {
        watcher::Event::Apply(sa) => sa.namespace(),
        _ => None,
    }
}

/// Our pull Secret changed or deleted by someone else (the echo of our own write was filtered
/// out before) touches its namespace.
pub fn secret_touched(event: &watcher::Event<CachedSecret>) -> Option<String> {
    match event {
        watcher::Event::Apply(s) | watcher::Event::Delete(s) => s.namespace(),
        _ => None,
    }
}
