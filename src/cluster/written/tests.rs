#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;

use super::*;
use crate::cluster::caches::map_event;

fn secret(ns: &str, rv: &str, data: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("acr-credentials".into()),
            namespace: Some(ns.into()),
            resource_version: Some(rv.into()),
            ..ObjectMeta::default()
        },
        string_data: Some([("k".to_owned(), data.to_owned())].into()),
        ..Secret::default()
    }
}

fn written() -> (Writer<CachedSecret>, Written) {
    let (store, writer) = reflector::store::<CachedSecret>();
    (writer, Written::new(store, "acr-credentials"))
}

fn data(s: Option<Arc<Secret>>) -> Option<String> {
    s.map(|s| s.string_data.as_ref().unwrap()["k"].clone())
}

/// The cache applies an event, then the stream hands it on (as `.inspect` after the reflector).
fn deliver(writer: &mut Writer<CachedSecret>, written: &Written, event: Event<Secret>) {
    let event = map_event(event, CachedSecret::from);
    writer.apply_watcher_event(&event);
    written.follow(&event);
}

#[test]
fn a_create_is_seen_before_the_cache_shows_it() {
    let (mut writer, written) = written();
    assert_eq!(written.current("a"), None);
    written.wrote(written.before_write("a"), secret("a", "10", "ours"));
    assert_eq!(data(written.current("a")).as_deref(), Some("ours"));
    assert_eq!(written.len(), 1);
    // An unrelated namespace is read from the cache as before.
    deliver(&mut writer, &written, Event::Apply(secret("b", "11", "b")));
    assert_eq!(data(written.current("b")).as_deref(), Some("b"));
    // Our own event: the cache has caught up, the entry is gone.
    deliver(
        &mut writer,
        &written,
        Event::Apply(secret("a", "10", "ours")),
    );
    assert!(written.is_empty());
    assert_eq!(data(written.current("a")).as_deref(), Some("ours"));
}

#[test]
fn an_update_hides_the_stale_cached_copy_until_its_event() {
    let (mut writer, written) = written();
    deliver(&mut writer, &written, Event::Apply(secret("a", "5", "old")));
    written.wrote(written.before_write("a"), secret("a", "9", "new"));
    assert_eq!(data(written.current("a")).as_deref(), Some("new"));
    // The old version again (a re-delivery) does not count as caught up.
    deliver(&mut writer, &written, Event::Apply(secret("a", "5", "old")));
    assert_eq!(data(written.current("a")).as_deref(), Some("new"));
    // Ours, then someone else's edit: from then on the cache is right again.
    deliver(&mut writer, &written, Event::Apply(secret("a", "9", "new")));
    deliver(
        &mut writer,
        &written,
        Event::Apply(secret("a", "12", "edited")),
    );
    assert_eq!(data(written.current("a")).as_deref(), Some("edited"));
}

#[test]
fn the_event_may_come_before_the_response() {
    let (mut writer, written) = written();
    let before = written.before_write("a");
    deliver(&mut writer, &written, Event::Apply(secret("a", "9", "new")));
    written.wrote(before, secret("a", "9", "new"));
    assert!(written.is_empty());
}

#[test]
fn a_deletion_reads_as_absent_until_the_cache_drops_it() {
    let (mut writer, written) = written();
    deliver(&mut writer, &written, Event::Apply(secret("a", "5", "old")));
    written.deleted(written.before_write("a"));
    assert_eq!(written.current("a"), None);
    deliver(
        &mut writer,
        &written,
        Event::Delete(secret("a", "5", "old")),
    );
    assert!(written.is_empty());
    assert_eq!(written.current("a"), None);
}

#[test]
fn a_relist_makes_the_cache_right_again() {
    let (mut writer, written) = written();
    written.wrote(written.before_write("a"), secret("a", "9", "new"));
    // A re-list that shows a later version only (ours was superseded during the gap).
    deliver(&mut writer, &written, Event::Init);
    deliver(
        &mut writer,
        &written,
        Event::InitApply(secret("a", "15", "later")),
    );
    assert_eq!(data(written.current("a")).as_deref(), Some("new"));
    deliver(&mut writer, &written, Event::InitDone);
    assert!(written.is_empty());
    assert_eq!(data(written.current("a")).as_deref(), Some("later"));
}

#[test]
fn writes_on_top_of_writes_wait_for_the_last_one() {
    let (mut writer, written) = written();
    deliver(&mut writer, &written, Event::Apply(secret("a", "5", "old")));
    written.wrote(written.before_write("a"), secret("a", "9", "first"));
    written.wrote(written.before_write("a"), secret("a", "12", "second"));
    // The first write reaching the cache is still behind the second.
    deliver(
        &mut writer,
        &written,
        Event::Apply(secret("a", "9", "first")),
    );
    assert_eq!(data(written.current("a")).as_deref(), Some("second"));
    deliver(
        &mut writer,
        &written,
        Event::Apply(secret("a", "12", "second")),
    );
    assert!(written.is_empty());
}

#[test]
fn a_later_edit_before_the_response_is_believed() {
    let (mut writer, written) = written();
    deliver(&mut writer, &written, Event::Apply(secret("a", "5", "old")));
    let before = written.before_write("a");
    // Our write and someone's edit on top of it both reach the cache before our response.
    deliver(
        &mut writer,
        &written,
        Event::Apply(secret("a", "9", "ours")),
    );
    deliver(
        &mut writer,
        &written,
        Event::Apply(secret("a", "11", "theirs")),
    );
    written.wrote(before, secret("a", "9", "ours"));
    assert!(written.is_empty());
    assert_eq!(data(written.current("a")).as_deref(), Some("theirs"));
}

#[test]
fn a_version_read_after_a_conflict_is_older_than_the_write() {
    let (mut writer, written) = written();
    deliver(&mut writer, &written, Event::Apply(secret("a", "5", "old")));
    let mut before = written.before_write("a");
    // A conflict: someone wrote 7 meanwhile; we read it and write 9 over it.
    before.read(Some(&secret("a", "7", "theirs")));
    written.wrote(before, secret("a", "9", "ours"));
    deliver(
        &mut writer,
        &written,
        Event::Apply(secret("a", "7", "theirs")),
    );
    assert_eq!(data(written.current("a")).as_deref(), Some("ours"));
    deliver(
        &mut writer,
        &written,
        Event::Apply(secret("a", "9", "ours")),
    );
    assert!(written.is_empty());
}

#[test]
fn only_the_echo_of_our_own_write_is_told_apart() {
    let (mut writer, written) = written();
    let mut deliver = |event: Event<Secret>| {
        let event = map_event(event, CachedSecret::from);
        writer.apply_watcher_event(&event);
        written.follow(&event)
    };
    assert!(!deliver(Event::Apply(secret("a", "9", "before"))));
    written.wrote(written.before_write("a"), secret("a", "10", "ours"));
    // Someone else's namespace, and then our write coming back: only the latter is an echo.
    assert!(!deliver(Event::Apply(secret("b", "11", "b"))));
    assert!(deliver(Event::Apply(secret("a", "10", "ours"))));
    // Once the cache has shown it, a later change (someone else's) is not.
    assert!(!deliver(Event::Apply(secret("a", "12", "theirs"))));
}

/// Our Secret as a watch event shows it: labelled as ours.
fn ours(ns: &str, rv: &str, data: &str) -> Secret {
    let mut s = secret(ns, rv, data);
    s.metadata.labels = Some(
        [(
            crate::model::secret::MANAGED_LABEL.to_owned(),
            "true".to_owned(),
        )]
        .into(),
    );
    s
}

#[test]
fn an_event_of_ours_that_comes_before_the_write_response_is_no_news() {
    let (mut writer, written) = written();
    let before = written.before_write("a");
    // The watch shows our write before its response is in: the echo, whatever its version.
    let event = map_event(Event::Apply(ours("a", "10", "ours")), CachedSecret::from);
    writer.apply_watcher_event(&event);
    assert!(written.follow(&event), "our own write's echo");
    // A same-named Secret someone else made theirs is news, write under way or not.
    let theirs = map_event(
        Event::Apply(secret("a", "11", "theirs")),
        CachedSecret::from,
    );
    assert!(!written.follow(&theirs));
    written.wrote(before, ours("a", "10", "ours"));
    // With the write done and its version shown, a later change of ours is news again.
    let later = map_event(Event::Apply(ours("a", "12", "edited")), CachedSecret::from);
    assert!(!written.follow(&later));
    // A write that failed (its `Before` dropped) is no longer under way either.
    drop(written.before_write("a"));
    let again = map_event(
        Event::Apply(ours("a", "13", "edited again")),
        CachedSecret::from,
    );
    assert!(!written.follow(&again));
}
