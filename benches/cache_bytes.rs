//! What one cached pull Secret and one cached ServiceAccount cost in the controller's heap: the
//! trimmed API types the caches used to hold against the compact forms they hold now
//! (`CachedSecret`, `CachedServiceAccount`).
//!
//! `cargo bench --bench cache_bytes` builds N Secrets of the benchmark's shape (what the
//! controller writes: our two labels, the expiry annotation, one binding owner reference, a
//! dockerconfigjson of the instance's two domains with a token of the fake's form; and what the
//! API server adds: UID, resourceVersion, creationTimestamp, managedFields), each read from JSON
//! bytes as the watch reads it, with `managedFields` dropped and [`trim::secret`] applied as the
//! cache does; then as many `default` ServiceAccounts bound to it (our annotation, one
//! `imagePullSecrets` entry), through [`trim::service_account`]. It holds them in each form:
//! alone, and in a reflector `Store`. A counting global allocator gives the heap bytes still
//! held per object and how many allocations they are in; the estimate "with malloc overhead"
//! adds 16 bytes per allocation (glibc's header and rounding, on average), closer to what the
//! process's resident size pays. It prints figures and asserts nothing.

use std::alloc::System;
use std::sync::Arc;

use acr_credential_controller::cluster::caches::trim;
use acr_credential_controller::model::cached_secret::CachedSecret;
use acr_credential_controller::model::cached_service_account::CachedServiceAccount;
use acr_credential_controller::model::{secret, service_accounts};
use acr_credential_controller::sensitive::Sensitive;
use base64::Engine;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Resource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::Event;
use serde_json::json;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

const SECRETS: usize = 10_000;
const SECRET_NAME: &str = "acr-credentials";
/// What glibc's malloc adds to an allocation on average, for the estimate: an 8-byte header
/// and rounding up to 16 bytes (32 at least).
const MALLOC_OVERHEAD: isize = 16;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap held since a region started: bytes and allocations.
#[derive(Clone, Copy)]
struct Held {
    bytes: isize,
    allocations: isize,
}

fn held(region: &Region<'_, System>) -> Held {
    let c = region.change();
    Held {
        bytes: c.bytes_allocated as isize - c.bytes_deallocated as isize,
        allocations: c.allocations as isize - c.deallocations as isize,
    }
}

impl Held {
    /// Per object, with the malloc estimate.
    fn per(self, n: isize) -> (isize, isize, isize) {
        (
            self.bytes / n,
            (self.bytes + MALLOC_OVERHEAD * self.allocations) / n,
            self.allocations / n,
        )
    }
}

/// The dockerconfigjson the benchmark's controller writes (as `benches/fanout/setup.rs`).
fn payload() -> Vec<u8> {
    let claims = json!({
        "instanceId": "cri-bench0000000000",
        "time": "1796126400000",
        "type": "sub",
        "userId": "1234567890123456",
    });
    let token = format!(
        "{}:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string()),
        "0".repeat(40)
    );
    secret::docker_config_json(&[secret::Contribution {
        binding: "bench".into(),
        binding_uid: String::new(),
        domains: vec![
            "bench-registry.cn-hangzhou.cr.aliyuncs.com".into(),
            "bench-registry-vpc.cn-hangzhou.cr.aliyuncs.com".into(),
        ],
        username: "cr_temp_user".into(),
        password: Sensitive::new(token),
        expires_at: jiff::Timestamp::UNIX_EPOCH,
    }])
}

/// The watch's bytes of the pull Secret in namespace number `i`.
fn watched(i: usize, payload: &[u8]) -> Vec<u8> {
    let data = base64::engine::general_purpose::STANDARD.encode(payload);
    let value = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": SECRET_NAME, "namespace": format!("bench-{i:05}"),
            "uid": format!("6f1c2d3e-4b5a-4c6d-8e9f-{i:012}"),
            "resourceVersion": format!("{}", 1_000_000 + i),
            "creationTimestamp": "2026-12-04T12:00:00Z",
            "labels": {(secret::MANAGED_LABEL): "true",
                (secret::MANAGED_BY_LABEL): secret::MANAGED_BY},
            "annotations": {(secret::EXPIRES_ANNOTATION): "2026-12-04T13:00:00.123456789Z"},
            "ownerReferences": [{"apiVersion": "acrcredentials.io/v1alpha1",
                "kind": "AcrRegistryBinding", "name": "bench",
                "uid": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "controller": false}],
            "managedFields": [{"manager": "acr-credential-controller", "operation": "Apply",
                "apiVersion": "v1", "time": "2026-12-04T12:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {"f:.dockerconfigjson": {}}}}],
        },
        "type": secret::DOCKER_CONFIG_JSON,
        "data": {(secret::DOCKER_CONFIG_KEY): data},
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The watch's bytes of the `default` ServiceAccount in namespace number `i`, bound to the
/// pull Secret (with the token Secret kube-controller-manager lists up to Kubernetes 1.23).
fn watched_account(i: usize) -> Vec<u8> {
    let value = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {
            "name": "default", "namespace": format!("bench-{i:05}"),
            "uid": format!("7a2b3c4d-5e6f-4a7b-8c9d-{i:012}"),
            "resourceVersion": format!("{}", 2_000_000 + i),
            "creationTimestamp": "2026-12-04T12:00:00Z",
            "annotations": {(service_accounts::ADDED_ANNOTATION): SECRET_NAME},
            "managedFields": [{"manager": "acr-credential-controller", "operation": "Update",
                "apiVersion": "v1", "time": "2026-12-04T12:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:imagePullSecrets": {}}}],
        },
        "secrets": [{"name": "default-token-abcde"}],
        "imagePullSecrets": [{"name": SECRET_NAME}],
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// A ServiceAccount as the cache trims it.
fn trimmed_account(bytes: &[u8]) -> Option<ServiceAccount> {
    let mut s: ServiceAccount = serde_json::from_slice(bytes).ok()?;
    s.meta_mut().managed_fields = None;
    trim::service_account(&mut s);
    Some(s)
}

/// A Secret as the cache trims it.
fn trimmed_secret(bytes: &[u8]) -> Option<Secret> {
    let mut s: Secret = serde_json::from_slice(bytes).ok()?;
    s.meta_mut().managed_fields = None;
    trim::secret(&mut s);
    Some(s)
}

/// The heap held for `inputs` as objects of form `K`: the objects alone (an `Arc` each), and
/// a reflector store of them (its index included).
fn measure<T, K>(
    name: &str,
    inputs: &[Vec<u8>],
    trimmed: fn(&[u8]) -> Option<T>,
    convert: fn(T) -> K,
) -> Held
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut objects: Vec<Arc<K>> = Vec::with_capacity(inputs.len());
    let region = Region::new(GLOBAL);
    for bytes in inputs {
        if let Some(s) = trimmed(bytes) {
            objects.push(Arc::new(convert(s)));
        }
    }
    let alone = held(&region);
    let (store, mut writer): (Store<K>, _) = reflector::store();
    let region = Region::new(GLOBAL);
    for o in &objects {
        writer.apply_watcher_event(&Event::Apply((**o).clone()));
    }
    let in_store = held(&region);
    let n = objects.len().max(1) as isize;
    let (bytes, malloc, allocations) = alone.per(n);
    let (store_bytes, store_malloc, _) = in_store.per(n);
    println!(
        "{name:<22} {bytes:>5} B/object (~{malloc:>5} B with malloc overhead, {allocations} allocations); \
         in a Store {store_bytes:>5} B (~{store_malloc:>5} B) [{} objects, size_of {} B]",
        store.state().len(),
        std::mem::size_of::<K>(),
    );
    in_store
}

fn main() {
    let payload = payload();
    let inputs: Vec<Vec<u8>> = (0..SECRETS).map(|i| watched(i, &payload)).collect();
    println!(
        "{SECRETS} pull Secrets, dockerconfigjson {} bytes, as the cache holds them:",
        payload.len()
    );
    let secret = measure("trimmed Secret", &inputs, trimmed_secret, |s| s);
    let cached = measure("CachedSecret", &inputs, trimmed_secret, CachedSecret::from);
    saved("Secret", secret, cached);

    let inputs: Vec<Vec<u8>> = (0..SECRETS).map(watched_account).collect();
    println!(
        "{SECRETS} default ServiceAccounts bound to the pull Secret, as the cache holds them:"
    );
    let account = measure("trimmed ServiceAccount", &inputs, trimmed_account, |s| s);
    let cached = measure(
        "CachedServiceAccount",
        &inputs,
        trimmed_account,
        CachedServiceAccount::from,
    );
    saved("ServiceAccount", account, cached);
}

/// Prints what the compact form saves per object, and at 20,000 objects.
fn saved(kind: &str, api: Held, compact: Held) {
    let n = SECRETS as isize;
    let saved = api.bytes - compact.bytes;
    let saved_malloc = saved + MALLOC_OVERHEAD * (api.allocations - compact.allocations);
    println!(
        "saved per cached {kind}: {} B (~{} B with malloc overhead); at 20,000 of them: {:.1} MiB (~{:.1} MiB)",
        saved / n,
        saved_malloc / n,
        (saved / n) as f64 * 20_000.0 / 1_048_576.0,
        (saved_malloc / n) as f64 * 20_000.0 / 1_048_576.0,
    );
}
