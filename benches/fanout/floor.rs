//! The floor: the fewest API writes that produce the controller's end state, done by a minimal
//! client with the same client library and the same concurrency — one Secret create and one
//! version-checked ServiceAccount patch per namespace, no watches, no status, no logic. The
//! ServiceAccounts are read before the clock starts ([`default_service_accounts`], one list), as
//! the controller reads them from its cache: the timed part is the writes alone (a read again
//! only when a patch meets a concurrent change).
//!
//! [`Create::LikeController`] is the floor the fan-out goal is measured against: it writes
//! exactly what the controller writes (labels, expiry annotation and owner reference on the
//! Secret, created by server-side apply; the bookkeeping annotation on the ServiceAccount),
//! which is the controller's end state, with the rights the controller has. [`Create::Post`]
//! (bare objects, by a plain POST that needs a cluster-wide `create` right) and
//! [`Create::Apply`] (bare objects by server-side apply) are references that split the floor's
//! cost into the API server's parts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use acr_credential_controller::model::{secret, service_accounts};
use futures::{StreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// How the floor client creates each Secret.
#[derive(Clone, Debug, PartialEq)]
pub enum Create {
    /// A plain POST: the cheapest create, which RBAC cannot pin to a name.
    Post,
    /// Server-side apply of the whole Secret, as the controller creates it (RBAC authorizes it
    /// as `create` of that very name, so the controller's `create` right is pinned to it).
    Apply,
    /// Server-side apply of the Secret the controller writes, owned by `owner` (an object that
    /// exists, so the garbage collector keeps it), and the ServiceAccount patch with the
    /// controller's bookkeeping annotation.
    LikeController { owner: OwnerReference },
}

/// The `default` ServiceAccount of each of `namespaces`, by namespace: one list, read before a
/// floor run's clock starts.
pub async fn default_service_accounts(
    client: &Client,
    namespaces: &[String],
) -> Result<HashMap<String, ServiceAccount>, kube::Error> {
    let wanted: HashSet<&str> = namespaces.iter().map(String::as_str).collect();
    let all = Api::<ServiceAccount>::all(client.clone())
        .list(&ListParams::default().fields("metadata.name=default"))
        .await?;
    Ok(all
        .items
        .into_iter()
        .filter_map(|sa| {
            let ns = sa.namespace()?;
            wanted.contains(ns.as_str()).then_some((ns, sa))
        })
        .collect())
}

/// Requests one pull Secret and binds the `default` ServiceAccount in every namespace, starting
/// from `accounts` (read before); returns the wall-clock time and how many patches had to be
/// retried because another writer (the token controller) changed the ServiceAccount in between.
pub async fn run(
    client: &Client,
    namespaces: &[String],
    mut accounts: HashMap<String, ServiceAccount>,
    secret_name: &str,
    payload: &[u8],
    concurrency: usize,
    create: Create,
) -> Result<(Duration, usize), kube::Error> {
    let work: Vec<(String, Option<ServiceAccount>)> = namespaces
        .iter()
        .map(|ns| (ns.clone(), accounts.remove(ns)))
        .collect();
    let start = Instant::now();
    let results: Vec<Result<usize, kube::Error>> = stream::iter(work)
        .map(|(ns, sa)| {
            let client = client.clone();
            let create = create.clone();
            async move { one_namespace(&client, &ns, sa, secret_name, payload, &create).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut retries = 0;
    for r in results {
        retries += r?;
    }
    Ok((start.elapsed(), retries))
}

async fn one_namespace(
    client: &Client,
    ns: &str,
    mut known: Option<ServiceAccount>,
    secret_name: &str,
    payload: &[u8],
    create: &Create,
) -> Result<usize, kube::Error> {
    let like_controller = matches!(create, Create::LikeController { .. });
    let mut metadata = ObjectMeta {
        name: Some(secret_name.to_string()),
        ..Default::default()
    };
    if let Create::LikeController { owner } = create {
        metadata.labels = Some(BTreeMap::from([
            (secret::MANAGED_LABEL.into(), "true".into()),
            (secret::MANAGED_BY_LABEL.into(), secret::MANAGED_BY.into()),
        ]));
        metadata.annotations = Some(BTreeMap::from([(
            secret::EXPIRES_ANNOTATION.into(),
            "2026-01-01T00:00:00Z".into(),
        )]));
        metadata.owner_references = Some(vec![owner.clone()]);
    }
    let secret = Secret {
        metadata,
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(payload.to_vec()),
        )])),
        ..Default::default()
    };
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    match create {
        Create::Post => {
            secrets.create(&PostParams::default(), &secret).await?;
        }
        Create::Apply | Create::LikeController { .. } => {
            secrets
                .patch(
                    secret_name,
                    &PatchParams::apply("acr-bench-floor"),
                    &Patch::Apply(&secret),
                )
                .await?;
        }
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let mut retries = 0;
    loop {
        // Read before the clock started; again only after a concurrent change.
        let sa = match known.take() {
            Some(sa) => sa,
            None => sas.get("default").await?,
        };
        let patch = if like_controller {
            // The controller's own patch: imagePullSecrets and its bookkeeping annotation.
            service_accounts::plan(&sa, secret_name, true)
                .expect("a ServiceAccount without our entry needs a patch")
        } else {
            let rv = sa.resource_version().unwrap_or_default();
            let op = if sa.image_pull_secrets.is_some() {
                json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": secret_name}})
            } else {
                json!({"op": "add", "path": "/imagePullSecrets", "value": [{"name": secret_name}]})
            };
            serde_json::from_value(json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                op,
            ]))
            .map_err(kube::Error::SerdeError)?
        };
        match sas
            .patch(
                "default",
                &PatchParams::default(),
                &Patch::Json::<()>(patch),
            )
            .await
        {
            Ok(_) => return Ok(retries),
            Err(kube::Error::Api(e)) if (e.code == 422 || e.code == 409) && retries < 20 => {
                retries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
