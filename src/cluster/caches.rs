//! The watch caches and their readiness.
//!
//! One reflector per watched kind (bindings, policies, namespaces, ServiceAccounts, our named
//! Secrets; the last two held in compact forms: [`cache_as`]). Each stream passes through
//! [`track_lists`], which reports its first complete list to the one shared [`Readiness`] and
//! every later re-list on a trigger channel, so the binding controller can reconcile everything
//! after a watch gap (an object deleted during the gap leaves no event of its own). Each stream
//! is polled in its own `watch{cache=..}` span ([`in_span`]), so its lines say which watch they
//! are about.
//!
//! Errors stop here. Each watch retries on its own [`WatchBackoff`]; an error passed on to a
//! kube-runtime `Controller` would engage the controller's one backoff over *all* its trigger
//! streams, which stops polling every watch, healthy ones included, and grows with each error
//! from any of them (seen after an API server restart: five watches failing in turn paused the
//! whole controller for minutes, long after the server was back).
//!
//! Why not `Store::wait_until_ready()`: in kube-runtime 5.0.0 a store's readiness is a
//! `DelayedInit` over a `futures` oneshot receiver, which keeps one waker, so of several tasks
//! waiting on the same store only the last one to poll is woken. The controller's own runner
//! already waits on the bindings store; a reconcile that waited on a store as well could stay
//! parked forever, holding its object's slot. [`Readiness`] is a `tokio::sync::watch` channel,
//! which wakes every waiter, and nothing in this crate calls `wait_until_ready`.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

pub mod trim;

/// The names of the caches the binding reconciler reads.
pub mod kind {
    pub const BINDINGS: &str = "acrregistrybindings";
    pub const POLICIES: &str = "acrcredentialpolicies";
    pub const NAMESPACES: &str = "namespaces";
    pub const SERVICE_ACCOUNTS: &str = "serviceaccounts";
    pub const SECRETS: &str = "secrets";
    /// Every cache, in the order they are reported.
    pub const ALL: [&str; 5] = [BINDINGS, POLICIES, NAMESPACES, SERVICE_ACCOUNTS, SECRETS];
}

/// Whether every cache holds its initial list. Cheap to clone; every clone sees the same state.
#[derive(Clone, Debug)]
pub struct Readiness {
    tx: Arc<watch::Sender<BTreeSet<&'static str>>>,
}

impl Readiness {
    /// Waits for the caches named in `pending`.
    pub fn new(pending: impl IntoIterator<Item = &'static str>) -> Self {
        let (tx, _) = watch::channel(pending.into_iter().collect());
        Self { tx: Arc::new(tx) }
    }

    /// Records that `cache` has listed once. Returns whether this was its first list.
    pub fn mark_listed(&self, cache: &'static str) -> bool {
        let mut first = false;
        self.tx.send_if_modified(|pending| {
            first = pending.remove(cache);
            first
        });
        if first && self.is_ready() {
            tracing::info!("watch caches synced");
        }
        first
    }

    /// Whether every cache has listed.
    pub fn is_ready(&self) -> bool {
        self.tx.borrow().is_empty()
    }

    /// The caches that have not listed yet.
    pub fn pending(&self) -> Vec<&'static str> {
        self.tx.borrow().iter().copied().collect()
    }

    /// Completes once every cache has listed; any number of tasks may wait at once, and all of
    /// them are woken.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(BTreeSet::is_empty).await;
    }
}

/// Passes a reflector's events through, reporting the end of each complete list (`InitDone`):
/// the first to `readiness`, every later one (a re-list after a watch gap or a desync) as a
/// `()` on `relisted`. Watch errors are logged at warn level here, where the cache's name is
/// known, and go no further (see the module header): the watch has already retried on its own
/// backoff, and the store is upstream of this, so it misses nothing.
pub fn track_lists<K, S>(
    stream: S,
    cache: &'static str,
    readiness: Readiness,
    relisted: mpsc::UnboundedSender<()>,
) -> impl Stream<Item = S::Item> + Send
where
    K: Send,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    stream.filter(move |event| {
        match event {
            Ok(watcher::Event::InitDone) => {
                if !readiness.mark_listed(cache) {
                    tracing::info!(cache, "watch cache re-listed; reconciling every binding");
                    let _ = relisted.unbounded_send(());
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(cache, error = %e, "watch stream error; retrying with backoff");
            }
        }
        futures::future::ready(event.is_ok())
    })
}

/// How long a failed watch waits before its next attempt: [`WatchBackoff::FIRST`], doubling up
/// to [`WatchBackoff::CAP`], each wait plus up to half as much again at random (so watches and
/// replicas do not retry in step); reset by the next event.
///
/// kube-runtime's default caps at 30 s plus up to 30 s more of jitter, so after an API server
/// outage of a minute a watch could stay down for another minute, and every reconcile that
/// reads its cache with it. An attempt against a server that is down costs one refused
/// connection, so a few seconds between attempts costs nothing; once the server answers, the
/// watch resumes (or re-lists) and the next event resets the backoff.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    pub const FIRST: Duration = Duration::from_millis(500);
    pub const CAP: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The wait before the next attempt, for a random `jitter` in `[0, 1)`; advances the
    /// backoff.
    pub fn next_with(&mut self, jitter: f64) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        base + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_with(rand::random()))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// A watch cache of one kind: the store the reconcilers read, and the event stream that fills
/// it (which must be polled, by a controller, for the store to fill), passed through
/// [`track_lists`]. Cached objects carry no `managedFields`: nothing reads them from a cache (the
/// legacy translator reads its objects from the API), and with server-side apply they are often
/// the larger part of a small object. `trim` drops what else of a kind nothing reads (see
/// [`trim`]).
pub fn cache<K>(
    api: Api<K>,
    config: watcher::Config,
    name: &'static str,
    readiness: &Readiness,
    relisted: &mpsc::UnboundedSender<()>,
    trim: fn(&mut K),
) -> (
    Store<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + use<K>,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    cache_as(
        api,
        config,
        name,
        readiness,
        relisted,
        trim,
        std::convert::identity,
    )
}

/// [`cache`], holding each trimmed object as `compact` turns it (the pull Secrets as
/// [`crate::model::cached_secret::CachedSecret`], ServiceAccounts as
/// [`crate::model::cached_service_account::CachedServiceAccount`]): the store and the stream
/// carry the compact form, and the API type lives only while one event is mapped.
pub fn cache_as<K, C>(
    api: Api<K>,
    config: watcher::Config,
    name: &'static str,
    readiness: &Readiness,
    relisted: &mpsc::UnboundedSender<()>,
    trim: fn(&mut K),
    compact: fn(K) -> C,
) -> (
    Store<C>,
    impl Stream<Item = Result<watcher::Event<C>, watcher::Error>> + Send + use<K, C>,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    C: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<C>();
    let stream = track_lists(
        reflector::reflector(
            writer,
            watcher::watcher(api, config)
                .backoff(WatchBackoff::new())
                .modify(move |o| {
                    o.meta_mut().managed_fields = None;
                    trim(o);
                })
                .map(move |event| event.map(|e| map_event(e, compact))),
        ),
        name,
        readiness.clone(),
        relisted.clone(),
    );
    (store, in_span(stream, watch_span(name)))
}

/// `event` with its object, if any, turned by `f`.
pub fn map_event<K, C>(event: watcher::Event<K>, f: impl FnOnce(K) -> C) -> watcher::Event<C> {
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(f(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(f(o)),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(f(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// The span every line a watch logs is in: `watch` with the cache's name. A root span: the
/// watch is polled by a controller, but what it logs is about the watch, not about whatever that
/// controller was doing.
pub fn watch_span(cache: &'static str) -> tracing::Span {
    tracing::info_span!(parent: None, "watch", cache)
}

/// Polls `stream` inside `span`, so what happens while it is polled (its requests, retries,
/// re-lists) is logged in that span, whoever polls it.
pub fn in_span<S>(stream: S, span: tracing::Span) -> impl Stream<Item = S::Item> + Send + use<S>
where
    S: Stream + Send,
{
    let mut stream = Box::pin(stream);
    futures::stream::poll_fn(move |cx| {
        let _entered = span.enter();
        stream.as_mut().poll_next(cx)
    })
}

#[cfg(test)]
mod tests;
