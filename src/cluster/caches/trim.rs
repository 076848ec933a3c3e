//! What the watch caches keep of each kind: the fields the controller reads, nothing else.
//!
//! The caches hold every namespace and every ServiceAccount of the cluster, and every Secret
//! with the pull Secret's name, so at a few thousand namespaces they are most of the
//! controller's memory. Each function here runs on every watched object before the store (and
//! the controllers' mappers) see it. What a function drops, nothing reads from a cache: the
//! tests next to this file check that every decision the controller makes from a cached object
//! comes out the same from its trimmed copy.
//!
//! The watcher has already taken each object's resourceVersion to resume its watch, so a cached
//! copy needs one only where the controller writes with it (ServiceAccount patches test it;
//! Secret updates are version-checked and [`super::super::written`] compares versions).
//!
//! What a trimmed object still costs is mostly the shape of the `k8s-openapi` types, not fields
//! left over: each object sits in its own `Arc`, a whole `ObjectMeta` and the kind's struct
//! (430 to 470 bytes, mostly empty fields), and every non-empty map (a namespace's labels, our
//! annotation on a ServiceAccount, a Secret's labels, annotations and data) is a `BTreeMap`
//! whose first node has room for eleven entries, about 540 bytes however few it holds. Heap
//! profiles of a fan-out over a few thousand namespaces put a namespace at about 1.2 KB, a
//! ServiceAccount at 1.35 KB and our Secret at 3.8 KB (1 KB of it the token), map nodes roughly
//! half of the rest. So the Secret and ServiceAccount caches do not keep the trimmed API objects
//! themselves but compact forms of them, [`crate::model::cached_secret::CachedSecret`] and
//! [`crate::model::cached_service_account::CachedServiceAccount`], which give these trimmed
//! copies back exactly (`benches/cache_bytes.rs` prints what each form costs). Namespaces, read
//! by every selection path, are still cached as their trimmed API type.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, NamespaceStatus, Secret, ServiceAccount};
use kube::api::ObjectMeta;

use crate::model::secret::is_ours;
use crate::model::service_accounts::ADDED_ANNOTATION;

/// Keeps everything (bindings and policies: few, and read whole).
pub fn nothing<K>(_: &mut K) {}

/// A namespace is read for its name, its labels (selection) and whether it is going away
/// (`deletionTimestamp`, `status.phase`): annotations (often a whole `kubectl apply`
/// configuration), UID, resourceVersion, spec and conditions go.
pub fn namespace(ns: &mut Namespace) {
    let meta = std::mem::take(&mut ns.metadata);
    ns.metadata = ObjectMeta {
        name: meta.name,
        labels: meta.labels,
        deletion_timestamp: meta.deletion_timestamp,
        ..ObjectMeta::default()
    };
    ns.spec = None;
    ns.status = ns.status.take().map(|s| NamespaceStatus {
        phase: s.phase,
        conditions: None,
    });
}

/// A ServiceAccount is read for its name, namespace, labels (selection), `imagePullSecrets`,
/// our bookkeeping annotation, its resourceVersion (each patch tests it), `deletionTimestamp`
/// and `creationTimestamp` (a ServiceAccount bound after it was created although its binding
/// asks for injection at creation is counted in a metric). Every write to it is a JSON patch
/// of `imagePullSecrets` and our annotation, never the whole object, so the rest goes: the
/// token Secrets kube-controller-manager lists under `secrets` up to Kubernetes 1.23, UID,
/// owners, and other annotations. An annotation map that held only others' keys stays, empty:
/// the patch adds our key to an existing map, or the whole map when there is none. The cache
/// then holds the result as a `CachedServiceAccount`.
pub fn service_account(sa: &mut ServiceAccount) {
    let meta = std::mem::take(&mut sa.metadata);
    let annotations = meta.annotations.map(|mut a| {
        let ours = a.remove(ADDED_ANNOTATION);
        ours.map(|v| BTreeMap::from([(ADDED_ANNOTATION.to_owned(), v)]))
            .unwrap_or_default()
    });
    sa.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        labels: meta.labels,
        annotations,
        resource_version: meta.resource_version,
        creation_timestamp: meta.creation_timestamp,
        deletion_timestamp: meta.deletion_timestamp,
        ..ObjectMeta::default()
    };
    sa.secrets = None;
    sa.automount_service_account_token = None;
}

/// Our pull Secrets are kept whole: an update replaces the object we read, keeping the labels,
/// annotations and owners others added, and after a restart the token is read back from them.
/// Of a same-named Secret that is not ours only the metadata is kept (the controller leaves it
/// alone, and never reads its data); if it becomes ours, its next watch event brings it whole.
/// The cache then holds the result as a `CachedSecret`.
pub fn secret(s: &mut Secret) {
    if !is_ours(s) {
        s.data = None;
        s.string_data = None;
    }
}

#[cfg(test)]
mod tests;
