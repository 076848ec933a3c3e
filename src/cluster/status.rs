//! The one way the reconcilers write status: server-side apply on `/status` under the
//! controller's field manager (what each kind's status says is built in `model::status` and
//! `policy::status`).

use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Result;

/// Server-side applies `status` to the `/status` subresource of the cluster-scoped object
/// `name` of kind `K`, as field manager `manager`.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, manager: &str, status: &S) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    crate::metrics::write(&K::kind(&()), "status");
    Ok(())
}
