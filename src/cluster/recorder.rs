//! The Event recorder: one Event per distinct note, so every Event tells its own story, while
//! the same note repeated folds into one Event's series (a count), so a steady state creates
//! no new Events.
//!
//! kube-runtime's recorder keys its series by reason and object alone and keeps the first
//! note, so a second `TokenRenewed` would still show the first token's expiry. This one adds
//! the note to the key. Kubernetes < 1.22 refuses events.k8s.io/v1 Events about
//! cluster-scoped objects; those go to the core v1 API in `default` instead.
//!
//! It is the one Event writer of the process (reconcilers, their error policy and the legacy
//! translator): times come from the injected clock, and the reporting instance is the
//! replica's name (`run --replica-name`), the same name it holds the Lease under. Notes are cut
//! to the 1 kB events.k8s.io allows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};

use crate::cloud::clock::{Clock, SystemClock};

/// How long a published Event is remembered for folding repeats into it (as kube-runtime).
const REMEMBER: SignedDuration = SignedDuration::from_mins(6);

/// What makes two Events the same: repeats of it fold into one series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    type_: &'static str,
    reason: String,
    action: String,
    note: Option<String>,
    /// apiVersion, kind, namespace, name and uid of the object the Event is about.
    regarding: [Option<String>; 5],
}

impl Key {
    pub fn new(event: &Event, regarding: &ObjectReference) -> Self {
        Self {
            type_: type_name(event.type_),
            reason: event.reason.clone(),
            action: event.action.clone(),
            note: event.note.clone(),
            regarding: [
                regarding.api_version.clone(),
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ],
        }
    }
}

/// Which API an Event was created through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    EventsV1,
    CoreV1,
}

/// A published Event, remembered to fold repeats into it.
#[derive(Clone, Debug)]
struct Published {
    name: String,
    namespace: String,
    flavour: Flavour,
    count: i32,
    last: Timestamp,
}

/// Publishes Events, folding identical repeats into a count.
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    clock: Arc<dyn Clock>,
    published: Mutex<HashMap<Key, Published>>,
}

/// The longest note events.k8s.io keeps (bytes).
pub const MAX_NOTE: usize = 1000;

impl Recorder {
    /// A recorder reporting as `reporter`, on the system clock.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            clock: Arc::new(SystemClock),
            published: Mutex::default(),
        }
    }

    /// The same recorder, taking its times from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Publishes `event` about `regarding`: a new Event for a new note, a series count for a
    /// repeat of one published within the last minutes.
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = self.clock.now();
        let event = &cut(event);
        let key = Key::new(event, regarding);
        if let Some(mut seen) = self.remembered(&key, now) {
            seen.count = seen.count.saturating_add(1);
            seen.last = now;
            match self.count(&seen).await {
                Ok(()) => {
                    self.remember(key, seen);
                    return Ok(());
                }
                // Gone (expired or deleted), or not ours to patch: publish it afresh.
                Err(e) if super::error::is_status(&e, 404) || super::error::is_status(&e, 403) => {}
                Err(e) => return Err(e),
            }
        }
        let published = match self.create(event, regarding, now).await {
            Err(e) if super::error::is_status(&e, 422) && regarding.namespace.is_none() => {
                self.create_core(event, regarding, now).await?
            }
            other => other?,
        };
        self.remember(key, published);
        Ok(())
    }

    /// The Event published under `key` not long ago; forgets those older than [`REMEMBER`].
    fn remembered(&self, key: &Key, now: Timestamp) -> Option<Published> {
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        published.retain(|_, p| p.last + REMEMBER > now);
        published.get(key).cloned()
    }

    fn remember(&self, key: Key, published: Published) {
        let mut map = self.published.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(key, published);
    }

    fn instance(&self) -> String {
        self.reporter
            .instance
            .clone()
            .unwrap_or_else(|| self.reporter.controller.clone())
    }

    /// Records one more occurrence of a published Event.
    async fn count(&self, seen: &Published) -> Result<(), kube::Error> {
        let patch = match seen.flavour {
            Flavour::EventsV1 => serde_json::json!({
                "series": { "count": seen.count, "lastObservedTime": MicroTime(seen.last) }
            }),
            Flavour::CoreV1 => serde_json::json!({
                "count": seen.count, "lastTimestamp": Time(seen.last)
            }),
        };
        let params = PatchParams::default();
        match seen.flavour {
            Flavour::EventsV1 => {
                Api::<K8sEvent>::namespaced(self.client.clone(), &seen.namespace)
                    .patch(&seen.name, &params, &Patch::Merge(&patch))
                    .await?;
            }
            Flavour::CoreV1 => {
                Api::<CoreEvent>::namespaced(self.client.clone(), &seen.namespace)
                    .patch(&seen.name, &params, &Patch::Merge(&patch))
                    .await?;
            }
        }
        Ok(())
    }

    /// Creates an events.k8s.io/v1 Event (cluster-scoped objects' in `default`).
    async fn create(
        &self,
        event: &Event,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<Published, kube::Error> {
        let (name, namespace) = self.placement(regarding, now);
        let k8s = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(self.instance()),
            type_: Some(type_name(event.type_).into()),
            ..K8sEvent::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &k8s)
            .await?;
        Ok(Published {
            name,
            namespace,
            flavour: Flavour::EventsV1,
            count: 1,
            last: now,
        })
    }

    /// Creates a core v1 Event in `default` (for Kubernetes < 1.22 and cluster-scoped objects).
    async fn create_core(
        &self,
        event: &Event,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<Published, kube::Error> {
        let (name, namespace) = self.placement(regarding, now);
        let core = CoreEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: regarding.clone(),
            reason: Some(event.reason.clone()),
            message: event.note.clone(),
            type_: Some(type_name(event.type_).into()),
            action: Some(event.action.clone()),
            related: event.secondary.clone(),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            source: Some(EventSource {
                component: Some(self.reporter.controller.clone()),
                host: None,
            }),
            reporting_component: Some(self.reporter.controller.clone()),
            reporting_instance: Some(self.instance()),
            ..CoreEvent::default()
        };
        Api::<CoreEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &core)
            .await?;
        Ok(Published {
            name,
            namespace,
            flavour: Flavour::CoreV1,
            count: 1,
            last: now,
        })
    }

    /// A fresh Event's name and namespace (`default` for cluster-scoped objects).
    fn placement(&self, regarding: &ObjectReference, now: Timestamp) -> (String, String) {
        let object = regarding
            .name
            .clone()
            .unwrap_or_else(|| self.reporter.controller.clone());
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        (format!("{object}.{:x}", now.as_nanosecond()), namespace)
    }

    /// Publishes `event` about `regarding` as a new Event, never folded into an earlier one
    /// (for a writer that publishes each note once by itself, where only `create` is granted).
    pub async fn publish_new(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        self.create(&cut(event), regarding, self.clock.now())
            .await
            .map(|_| ())
    }
}

/// `event` with its note cut to [`MAX_NOTE`] bytes, on a character boundary.
fn cut(event: &Event) -> Event {
    let note = event.note.as_ref().map(|note| {
        if note.len() <= MAX_NOTE {
            return note.clone();
        }
        let mut end = MAX_NOTE;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &note[..end])
    });
    Event {
        type_: event.type_,
        reason: event.reason.clone(),
        note,
        action: event.action.clone(),
        secondary: event.secondary.clone(),
    }
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(note: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: "TokenRenewed".into(),
            note: Some(note.into()),
            action: "RenewToken".into(),
            secondary: None,
        }
    }

    fn binding(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("acrcredentials.io/v1alpha1".into()),
            kind: Some("AcrRegistryBinding".into()),
            name: Some(name.into()),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn repeats_of_one_note_share_a_key_and_other_notes_do_not() {
        let b = binding("b");
        let first = Key::new(&event("valid until 10:00"), &b);
        assert_eq!(first, Key::new(&event("valid until 10:00"), &b));
        assert_ne!(first, Key::new(&event("valid until 11:00"), &b));
        assert_ne!(first, Key::new(&event("valid until 10:00"), &binding("c")));
    }
}
