use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures::task::{ArcWake, waker};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};

use super::*;
use crate::api::AcrRegistryBinding;
use crate::cluster::error::Error;
use crate::cluster::guard::guarded;

/// A waker that counts how often it was woken.
#[derive(Default)]
struct Counting(AtomicUsize);

impl ArcWake for Counting {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counting {
    fn woken(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// kube-runtime 5.0.0: of two tasks waiting on one store's readiness, only the one that polled
/// last is woken when the store becomes ready. This is the lost wake-up that once wedged a
/// binding; the test pins the upstream behaviour, and fails (telling us to look again) when an
/// upgrade fixes it.
#[test]
fn kube_store_readiness_wakes_only_the_last_of_two_waiters() {
    let (store, mut writer) = reflector::store::<Namespace>();
    let mut first = pin!(store.wait_until_ready());
    let mut second = pin!(store.wait_until_ready());
    let (a, b) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
    let (wa, wb) = (waker(a.clone()), waker(b.clone()));
    assert!(
        first
            .poll_unpin(&mut TaskContext::from_waker(&wa))
            .is_pending()
    );
    assert!(
        second
            .poll_unpin(&mut TaskContext::from_waker(&wb))
            .is_pending()
    );

    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);

    assert_eq!(
        (a.woken(), b.woken()),
        (0, 1),
        "kube-runtime now wakes every store waiter: the workaround in cluster::caches may go"
    );
    // The first waiter would complete if polled, but nothing polls it again.
    assert!(matches!(
        first.poll_unpin(&mut TaskContext::from_waker(&wa)),
        Poll::Ready(Ok(()))
    ));
}

/// Our readiness wakes every waiter.
#[test]
fn readiness_wakes_every_waiter() {
    let readiness = Readiness::new([kind::NAMESPACES, kind::SECRETS]);
    let mut first = pin!(readiness.wait());
    let mut second = pin!(readiness.wait());
    let (a, b) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
    let (wa, wb) = (waker(a.clone()), waker(b.clone()));
    assert!(
        first
            .poll_unpin(&mut TaskContext::from_waker(&wa))
            .is_pending()
    );
    assert!(
        second
            .poll_unpin(&mut TaskContext::from_waker(&wb))
            .is_pending()
    );

    assert!(readiness.mark_listed(kind::NAMESPACES));
    assert!(!readiness.is_ready());
    assert_eq!(readiness.pending(), vec![kind::SECRETS]);
    assert!(readiness.mark_listed(kind::SECRETS));
    assert!(readiness.is_ready());
    assert!(
        !readiness.mark_listed(kind::SECRETS),
        "a second list is not a first"
    );

    assert!(a.woken() >= 1 && b.woken() >= 1, "both waiters woken");
    assert!(
        first
            .poll_unpin(&mut TaskContext::from_waker(&wa))
            .is_ready()
    );
    assert!(
        second
            .poll_unpin(&mut TaskContext::from_waker(&wb))
            .is_ready()
    );
}

/// Two tasks waiting on the project's readiness both complete.
#[tokio::test]
async fn two_waiters_on_readiness_both_complete() {
    let readiness = Readiness::new([kind::NAMESPACES]);
    let one = tokio::spawn({
        let r = readiness.clone();
        async move { r.wait().await }
    });
    let two = tokio::spawn({
        let r = readiness.clone();
        async move { r.wait().await }
    });
    tokio::task::yield_now().await;
    readiness.mark_listed(kind::NAMESPACES);
    tokio::time::timeout(Duration::from_secs(5), async {
        one.await.unwrap();
        two.await.unwrap();
    })
    .await
    .expect("both waiters complete");
    // A waiter arriving after readiness returns at once.
    readiness.wait().now_or_never().expect("ready already");
}

/// `track_lists` marks the first list and reports every later one as a re-list.
#[tokio::test]
async fn track_lists_reports_first_list_to_readiness_and_relists_as_triggers() {
    let readiness = Readiness::new([kind::NAMESPACES]);
    let (tx, mut rx) = futures::channel::mpsc::unbounded();
    let events = futures::stream::iter([
        Ok(watcher::Event::<Namespace>::Init),
        Ok(watcher::Event::InitDone),
        Err(watcher::Error::NoResourceVersion),
        Ok(watcher::Event::Init),
        Ok(watcher::Event::InitDone),
    ]);
    let seen: Vec<_> = track_lists(events, kind::NAMESPACES, readiness.clone(), tx)
        .collect()
        .await;
    assert_eq!(seen.len(), 4, "events pass through, the error does not");
    assert!(seen.iter().all(Result::is_ok));
    assert!(readiness.is_ready());
    assert_eq!(rx.next().await, Some(()), "the second list is a re-list");
    assert_eq!(rx.next().await, None, "and the only one");
}

fn binding(name: &str) -> AcrRegistryBinding {
    serde_yaml::from_str(&format!(
        "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrRegistryBinding\nmetadata: {{name: {name}}}\nspec: {{registry: {{instanceId: cri-test1}}, namespaces: {{names: [default]}}}}\n"
    ))
    .unwrap()
}

/// What the test reconciler sees: the readiness and a count of runs per binding.
type Runs = Arc<Mutex<BTreeMap<String, usize>>>;

type Events<K> = futures::channel::mpsc::UnboundedSender<Result<watcher::Event<K>, watcher::Error>>;

fn channel_stream<K: Send + 'static>() -> (
    Events<K>,
    impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
) {
    futures::channel::mpsc::unbounded()
}

/// A real kube-runtime `Controller` over in-memory binding and namespace watch streams, each
/// through a reflector and [`track_lists`] as the product's caches are, with a reconciler that waits
/// for `readiness` through the product's guard and counts its runs per binding. Every namespace
/// event maps to binding `a`; a re-list reconciles every binding.
struct TestController {
    bindings: Events<AcrRegistryBinding>,
    namespaces: Events<Namespace>,
    runs: Runs,
    driver: tokio::task::JoinHandle<()>,
}

fn test_controller(readiness: &Readiness) -> TestController {
    let (relist_tx, relist_rx) = futures::channel::mpsc::unbounded();

    let (bindings, binding_writer) = reflector::store::<AcrRegistryBinding>();
    let (binding_tx, binding_events) = channel_stream::<AcrRegistryBinding>();
    let binding_stream = track_lists(
        reflector::reflector(binding_writer, binding_events),
        kind::BINDINGS,
        readiness.clone(),
        relist_tx.clone(),
    )
    .applied_objects();

    let (_namespaces, ns_writer) = reflector::store::<Namespace>();
    let (ns_tx, ns_events) = channel_stream::<Namespace>();
    let ns_stream = track_lists(
        reflector::reflector(ns_writer, ns_events),
        kind::NAMESPACES,
        readiness.clone(),
        relist_tx,
    )
    .touched_objects();

    let runs: Runs = Arc::default();
    let ctx = Arc::new((readiness.clone(), runs.clone()));
    let controller = Controller::for_stream(binding_stream, bindings)
        .watches_stream(ns_stream, |_ns: Namespace| {
            vec![ObjectRef::<AcrRegistryBinding>::new("a")]
        })
        .reconcile_all_on(relist_rx)
        .run(
            |b: Arc<AcrRegistryBinding>, ctx: Arc<(Readiness, Runs)>| async move {
                guarded(&ctx.0, Duration::from_secs(120), async {
                    let name = b.metadata.name.clone().unwrap_or_default();
                    *ctx.1.lock().unwrap().entry(name).or_default() += 1;
                    Ok::<_, Error>(Action::await_change())
                })
                .await
            },
            |_, _, _| Action::await_change(),
            ctx,
        )
        .for_each(|_| async {});
    TestController {
        bindings: binding_tx,
        namespaces: ns_tx,
        runs,
        driver: tokio::spawn(controller),
    }
}

/// The scenario of the lost wake-up, on a real kube-runtime `Controller` with in-memory watch
/// streams and paused time: two bindings' first reconciles start before the secondary caches
/// have listed; both complete once they have, and later triggers for either still run.
#[tokio::test(start_paused = true)]
async fn reconciles_started_before_caches_sync_all_complete_and_later_triggers_run() {
    let readiness = Readiness::new(kind::ALL);
    let TestController {
        bindings: binding_tx,
        namespaces: ns_tx,
        runs,
        driver,
    } = test_controller(&readiness);

    // The bindings list completes: the runner starts both reconciles, which now wait.
    binding_tx.unbounded_send(Ok(watcher::Event::Init)).unwrap();
    for name in ["a", "b"] {
        binding_tx
            .unbounded_send(Ok(watcher::Event::InitApply(binding(name))))
            .unwrap();
    }
    binding_tx
        .unbounded_send(Ok(watcher::Event::InitDone))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        runs.lock().unwrap().is_empty(),
        "nothing runs before the caches sync"
    );

    // The secondary caches list (one of them through a stream, the rest marked directly).
    ns_tx.unbounded_send(Ok(watcher::Event::Init)).unwrap();
    ns_tx.unbounded_send(Ok(watcher::Event::InitDone)).unwrap();
    for cache in [kind::POLICIES, kind::SERVICE_ACCOUNTS, kind::SECRETS] {
        readiness.mark_listed(cache);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        *runs.lock().unwrap(),
        BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 1)]),
        "both bindings reconciled once"
    );

    // A later trigger for each still runs: an edit of b, a namespace event mapped to a.
    binding_tx
        .unbounded_send(Ok(watcher::Event::Apply(binding("b"))))
        .unwrap();
    let ns: Namespace = serde_yaml::from_str("metadata: {name: team}").unwrap();
    ns_tx.unbounded_send(Ok(watcher::Event::Apply(ns))).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        *runs.lock().unwrap(),
        BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 2)])
    );

    // A re-list of a secondary cache reconciles every binding.
    ns_tx.unbounded_send(Ok(watcher::Event::Init)).unwrap();
    ns_tx.unbounded_send(Ok(watcher::Event::InitDone)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        *runs.lock().unwrap(),
        BTreeMap::from([("a".to_owned(), 3), ("b".to_owned(), 3)])
    );
    driver.abort();
}

/// A reconcile that hangs is cut off at its deadline and becomes an error (and a requeue),
/// instead of holding its object's slot for ever.
#[tokio::test(start_paused = true)]
async fn a_hanging_reconcile_times_out() {
    let readiness = Readiness::new([]);
    let result = guarded(
        &readiness,
        Duration::from_secs(30),
        std::future::pending::<Result<Action, Error>>(),
    )
    .await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    // Caches that never sync time out the same way.
    let never = Readiness::new([kind::SECRETS]);
    let result = guarded(&never, Duration::from_secs(30), async {
        Ok::<_, Error>(Action::await_change())
    })
    .await;
    let Err(e) = result else {
        panic!("expected a timeout")
    };
    assert!(e.to_string().contains("secrets"), "{e}");
}

/// The watch backoff: half a second, doubling to the cap, each wait plus up to half again of
/// jitter, and back to the start on reset.
#[test]
fn watch_backoff_doubles_to_its_cap_with_bounded_jitter_and_resets() {
    use kube::runtime::utils::Backoff;
    let mut b = WatchBackoff::new();
    let bases: Vec<Duration> = (0..7).map(|_| b.next_with(0.0)).collect();
    let ms = |v: &[Duration]| v.iter().map(|d| d.as_millis()).collect::<Vec<_>>();
    assert_eq!(ms(&bases), [500, 1000, 2000, 4000, 5000, 5000, 5000]);
    b.reset();
    assert_eq!(
        b.next_with(0.999).as_millis(),
        749,
        "jitter adds under half"
    );
    assert_eq!(b.next_with(0.5).as_millis(), 1250);
    b.reset();
    // Random jitter stays within [base, 1.5 × base]; the cap bounds every wait.
    for d in b.by_ref().take(50) {
        assert!(
            d >= WatchBackoff::FIRST && d <= WatchBackoff::CAP.mul_f64(1.5),
            "{d:?}"
        );
    }
}

/// A watch that keeps failing does not pause the others. Its errors stop at `track_lists`, so the
/// controller's own backoff over all its trigger streams never engages: with it, each error
/// paused every watch for 0.8 s and more, doubling, and after an API server restart the whole
/// controller sat idle for minutes.
#[tokio::test(start_paused = true)]
async fn a_failing_watch_does_not_pause_the_others() {
    let TestController {
        bindings: binding_tx,
        namespaces: ns_tx,
        runs,
        driver,
    } = test_controller(&Readiness::new([]));
    let step = Duration::from_millis(10);

    binding_tx.unbounded_send(Ok(watcher::Event::Init)).unwrap();
    binding_tx
        .unbounded_send(Ok(watcher::Event::InitApply(binding("a"))))
        .unwrap();
    binding_tx
        .unbounded_send(Ok(watcher::Event::InitDone))
        .unwrap();
    tokio::time::sleep(step).await;
    assert_eq!(runs.lock().unwrap().get("a"), Some(&1));

    // The namespace watch fails again and again; the binding watch goes on delivering, and
    // each of its events runs within a few milliseconds of (paused) time.
    for round in 2..=6 {
        ns_tx
            .unbounded_send(Err(watcher::Error::NoResourceVersion))
            .unwrap();
        tokio::time::sleep(step).await;
        binding_tx
            .unbounded_send(Ok(watcher::Event::Apply(binding("a"))))
            .unwrap();
        tokio::time::sleep(step).await;
        assert_eq!(
            runs.lock().unwrap().get("a"),
            Some(&round),
            "round {round}: the binding's event waited behind the failing watch"
        );
    }
    driver.abort();
}
