//! Watches what the controller produces and notes when it happened: when each namespace's pull
//! Secret first appeared and changed (with the token each version held, to look up its expiry),
//! and when its `default` ServiceAccount got bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};

#[derive(Clone, Debug)]
pub struct SecretSeen {
    pub first: Instant,
    pub changed: Instant,
    pub data: Vec<u8>,
    pub uid: String,
    /// Every version of the content seen, oldest first: when, and the registry password it held.
    pub versions: Vec<Version>,
}

/// One version of a pull Secret's content, as the watch saw it arrive.
#[derive(Clone, Debug)]
pub struct Version {
    pub at: Instant,
    pub wall: jiff::Timestamp,
    /// When the API server wrote it: the latest `time` of its managedFields (whole seconds).
    pub written: Option<jiff::Timestamp>,
    /// The password of the first registry in the dockerconfigjson (every registry of one
    /// binding holds the same token); empty when it does not parse.
    pub password: String,
}

/// The password of the first registry in a dockerconfigjson.
fn password(data: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|doc| {
            doc["auths"]
                .as_object()?
                .values()
                .next()?
                .get("password")?
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

#[derive(Default)]
pub struct Seen {
    pub secrets: HashMap<String, SecretSeen>,
    /// When the namespace's `default` ServiceAccount was first seen (kube-controller-manager
    /// creates it).
    pub sa_created: HashMap<String, Instant>,
    pub bound: HashMap<String, Instant>,
}

/// Shared record of what the watches saw.
#[derive(Clone, Default)]
pub struct Observer {
    seen: Arc<Mutex<Seen>>,
}

impl Observer {
    /// Starts the two watches (our Secrets by name, `default` ServiceAccounts) in the background,
    /// and one more per name of `floor_secrets`, which records the same way into a record of its
    /// own: the floor runs pay what watching their Secrets costs (the API server's encoding,
    /// this process's decoding) as the fan-out does.
    pub fn start(client: &Client, secret_name: &str, floor_secrets: &[&str]) -> Observer {
        let observer = Observer::default();
        watch_secrets(client, secret_name, observer.seen.clone());
        for name in floor_secrets {
            watch_secrets(client, name, Arc::default());
        }
        let sas: Api<ServiceAccount> = Api::all(client.clone());
        let config = watcher::Config::default().fields("metadata.name=default");
        let seen = observer.seen.clone();
        let name = secret_name.to_string();
        tokio::spawn(async move {
            let mut stream = watcher::watcher(sas, config).boxed();
            while let Some(event) = stream.next().await {
                if let Ok(Event::Apply(sa) | Event::InitApply(sa)) = event {
                    let now = Instant::now();
                    let bound = sa
                        .image_pull_secrets
                        .iter()
                        .flatten()
                        .any(|r| r.name == name);
                    let ns = sa.namespace().unwrap_or_default();
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    seen.sa_created.entry(ns.clone()).or_insert(now);
                    if bound {
                        seen.bound.entry(ns).or_insert(now);
                    }
                }
            }
        });
        observer
    }

    /// Runs `f` on what has been seen so far.
    pub fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The instant by which every namespace in `namespaces` had its Secret and bound
    /// ServiceAccount, if all have.
    pub fn all_done(&self, namespaces: &[String]) -> Option<Instant> {
        self.with(|seen| {
            let mut last: Option<Instant> = None;
            for ns in namespaces {
                let secret = seen.secrets.get(ns)?.first;
                let bound = *seen.bound.get(ns)?;
                let done = secret.max(bound);
                last = Some(last.map_or(done, |l| l.max(done)));
            }
            last
        })
    }

    /// When the first of `namespaces` got its Secret, if any has.
    pub fn first_secret(&self, namespaces: &[String]) -> Option<Instant> {
        self.with(|seen| {
            namespaces
                .iter()
                .filter_map(|ns| seen.secrets.get(ns).map(|s| s.first))
                .min()
        })
    }

    /// How many of `namespaces` have a Secret whose content changed after `since`.
    pub fn changed_since(&self, namespaces: &[String], since: Instant) -> usize {
        self.with(|seen| {
            namespaces
                .iter()
                .filter(|ns| seen.secrets.get(*ns).is_some_and(|s| s.changed > since))
                .count()
        })
    }
}

/// Records, in `seen`, every version of each Secret named `name` as its watch brings it.
fn watch_secrets(client: &Client, name: &str, seen: Arc<Mutex<Seen>>) {
    let secrets: Api<Secret> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut stream = watcher::watcher(secrets, config).boxed();
        while let Some(event) = stream.next().await {
            if let Ok(Event::Apply(s) | Event::InitApply(s)) = event {
                let now = Instant::now();
                let wall = jiff::Timestamp::now();
                let data = s
                    .data
                    .as_ref()
                    .and_then(|d| d.get(".dockerconfigjson"))
                    .map(|b| b.0.clone())
                    .unwrap_or_default();
                let ns = s.namespace().unwrap_or_default();
                let uid = s.uid().unwrap_or_default();
                let written = s
                    .metadata
                    .managed_fields
                    .iter()
                    .flatten()
                    .filter_map(|f| f.time.as_ref().map(|t| t.0))
                    .max();
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                let version = || Version {
                    at: now,
                    wall,
                    written,
                    password: password(&data),
                };
                let entry = seen.secrets.entry(ns).or_insert_with(|| SecretSeen {
                    first: now,
                    changed: now,
                    data: data.clone(),
                    uid: uid.clone(),
                    versions: vec![version()],
                });
                if entry.data != data {
                    entry.versions.push(version());
                    entry.data = data;
                    entry.changed = now;
                }
                entry.uid = uid;
            }
        }
    });
}
