//! Keeping the serving certificate (I/O around [`super::certs`]).
//!
//! Managed (the default): the leader takes the rotation step due ([`certs::next_step`]),
//! writes the one certificate Secret (created by server-side apply, so RBAC can pin `create`
//! to its name; updated in place, version-checked) and publishes the Secret's CA bundle as the
//! `caBundle` of every webhook of the one MutatingWebhookConfiguration it owns (a
//! version-checked update). When the configuration is first seen carrying the Secret's bundle
//! the time is recorded in the Secret, and the next step waits one overlap from it
//! ([`super::plan`]): a certificate is never switched before the API server can trust it.
//! Every replica loads the serving certificate from the Secret into its [`CertSlot`], and the
//! configuration's `caBundle` next to it, for readiness to check that one chains to the other.
//!
//! From files (cert-manager): `tls.crt` and `tls.key` of a mounted directory are loaded when
//! they change; nothing is written and `caBundle` is left to cert-manager's CA injector.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use super::WebhookError;
use super::certs::{self, CertState, CertTimings, Pair, ServingNames, Step};
use super::plan::{self, Publication};
use super::server::CertSlot;
use crate::cloud::clock::Clock;
use crate::cluster::Leadership;
use crate::cluster::error::is_status;
use crate::sensitive::Sensitive;

/// Where the serving certificate comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum CertSource {
    /// Minted, rotated and published by the controller.
    Managed(Managed),
    /// Read from `tls.crt` / `tls.key` in this directory (cert-manager).
    Files(PathBuf),
}

/// The objects and timings of managed certificates.
#[derive(Clone, Debug, PartialEq)]
pub struct Managed {
    /// Namespace and name of the certificate Secret.
    pub namespace: String,
    pub certificate_secret_name: String,
    /// The MutatingWebhookConfiguration whose `caBundle` the leader sets.
    pub configuration_name: String,
    pub serving_names: ServingNames,
    pub timings: CertTimings,
}

/// The label on the certificate Secret.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "acr-credential-controller");

/// How often the certificate is checked: often enough for `overlap` to hold.
pub fn check_interval(source: &CertSource) -> Duration {
    match source {
        CertSource::Managed(m) => {
            (m.timings.overlap / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
        }
        CertSource::Files(_) => Duration::from_secs(10),
    }
}

/// Keeps `slot` filled until `shutdown`.
pub async fn run(
    client: Client,
    source: CertSource,
    slot: Arc<CertSlot>,
    leadership: Leadership,
    clock: Arc<dyn Clock>,
    field_manager: String,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let interval = check_interval(&source);
    loop {
        let result = match &source {
            CertSource::Managed(m) => {
                let keeper = Keeper {
                    client: &client,
                    managed: m,
                    field_manager: &field_manager,
                };
                keeper.pass(&slot, &leadership, clock.as_ref()).await
            }
            CertSource::Files(dir) => load_files(dir, &slot).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "webhook certificate: will retry");
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut shutdown => break,
        }
    }
}

/// Loads `tls.crt` and `tls.key`; a pair that does not match (the kubelet swapped the files
/// between the two reads) is read once more, and if it still does not, the previous pair stays
/// served until the next check.
async fn load_files(dir: &std::path::Path, slot: &CertSlot) -> Result<(), WebhookError> {
    match load_files_once(dir, slot).await {
        Err(WebhookError::Tls(_)) => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            load_files_once(dir, slot).await
        }
        other => other,
    }
}

async fn load_files_once(dir: &std::path::Path, slot: &CertSlot) -> Result<(), WebhookError> {
    let read = |name: &str| {
        let path = dir.join(name);
        async move {
            tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| WebhookError::Files(format!("{}: {e}", path.display())))
        }
    };
    let pair = Pair {
        cert: read("tls.crt").await?,
        key: Sensitive::new(read("tls.key").await?),
    };
    if slot.load(&pair)? {
        tracing::info!(dir = %dir.display(), "webhook certificate loaded from files");
    }
    // cert-manager's Secret carries the issuing CA: readiness checks the certificate against it.
    let ca = tokio::fs::read_to_string(dir.join("ca.crt")).await.ok();
    slot.trust(
        ca.map(|pem| certs::split_pem(&pem))
            .filter(|cas| !cas.is_empty()),
    );
    Ok(())
}

struct Keeper<'a> {
    client: &'a Client,
    managed: &'a Managed,
    field_manager: &'a str,
}

impl Keeper<'_> {
    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.managed.namespace)
    }

    /// One pass: (leader) publish, plan, write, publish; (everyone) load the serving
    /// certificate and note the bundle the configuration carries (readiness checks the one
    /// against the other).
    async fn pass(
        &self,
        slot: &CertSlot,
        leadership: &Leadership,
        clock: &dyn Clock,
    ) -> Result<(), WebhookError> {
        let name = &self.managed.certificate_secret_name;
        let secret = self.secrets().get_opt(name).await?;
        let mut state = secret.as_ref().and_then(state_of);
        let read = self.configured().await;
        let leader = leadership.is_leader();
        let mut configured = match read {
            Ok(c) => c,
            // The leader needs it to publish; another replica loads its certificate anyway.
            Err(e) if leader => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "webhook certificate: could not read the webhook configuration");
                if let Some(s) = &state {
                    slot.load(&s.serving)?;
                }
                return Ok(());
            }
        };
        if leader {
            let publication = match &state {
                Some(s) => self.publish(s).await?,
                None => Publication::Missing,
            };
            if publication == Publication::Published {
                configured = state.as_ref().map(|s| s.bundle.clone());
            }
            let now = clock.now();
            let m = self.managed;
            let previous = configured.clone().unwrap_or_default();
            let plan = plan::plan(
                state.as_ref(),
                publication,
                &previous,
                now,
                &m.timings,
                &m.serving_names,
            )?;
            if let Some(next) = plan.write {
                self.write(secret.as_ref(), &next).await?;
                if plan.step == Step::Nothing {
                    tracing::info!(published_at = ?next.published_at, "webhook certificate: publication recorded");
                } else {
                    tracing::info!(step = ?plan.step, not_after = %next.not_after, cas = next.bundle.len(), "webhook certificate: rotation step taken");
                    if self.publish(&next).await? == Publication::Published {
                        configured = Some(next.bundle.clone());
                    }
                }
                state = Some(next);
            }
        }
        if let Some(s) = &state
            && slot.load(&s.serving)?
        {
            tracing::info!(not_after = %s.not_after, "webhook certificate loaded");
        }
        slot.trust(configured);
        Ok(())
    }

    /// The CAs the configuration's webhooks carry (`None` when it does not exist).
    async fn configured(&self) -> Result<Option<Vec<String>>, WebhookError> {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let Some(config) = api.get_opt(&self.managed.configuration_name).await? else {
            return Ok(None);
        };
        let mut cas: Vec<String> = Vec::new();
        for hook in config.webhooks.iter().flatten() {
            let pem = hook
                .client_config
                .ca_bundle
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .unwrap_or_default();
            for ca in certs::split_pem(&pem) {
                if !cas.contains(&ca) {
                    cas.push(ca);
                }
            }
        }
        Ok(Some(cas))
    }

    async fn write(
        &self,
        existing: Option<&Secret>,
        state: &CertState,
    ) -> Result<(), WebhookError> {
        let (data, annotations) = certs::to_secret(state);
        let api = self.secrets();
        let name = &self.managed.certificate_secret_name;
        match existing {
            None => {
                let desired = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.managed.namespace.clone()),
                        labels: Some(BTreeMap::from([(
                            MANAGED_BY.0.to_owned(),
                            MANAGED_BY.1.to_owned(),
                        )])),
                        annotations: Some(annotations),
                        ..Default::default()
                    },
                    type_: Some("Opaque".into()),
                    data: Some(data),
                    ..Default::default()
                };
                // Server-side apply, not forced: authorized as `create` of this very name, and a
                // Secret someone else created meanwhile conflicts instead of being taken over.
                let params = PatchParams::apply(self.field_manager);
                let body = serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": desired.metadata,
                    "type": desired.type_,
                    "data": desired.data,
                });
                api.patch(name, &params, &Patch::Apply(body)).await?;
                crate::metrics::write("Secret", "create");
            }
            Some(current) => {
                let mut next = current.clone();
                next.data = Some(data);
                let all = next.metadata.annotations.get_or_insert_with(BTreeMap::new);
                // An annotation of ours the state does not have (the publication time) goes.
                all.remove(certs::annotation::PUBLISHED_AT);
                all.extend(annotations);
                // Keys of a previous step (the next CA) must go: the data is replaced whole.
                let params = PostParams {
                    field_manager: Some(self.field_manager.to_owned()),
                    ..PostParams::default()
                };
                api.replace(name, &params, &next).await?;
                crate::metrics::write("Secret", "update");
            }
        }
        Ok(())
    }

    /// Sets `caBundle` on every webhook of the configuration; returns whether it carried the
    /// Secret's bundle already, does now, or does not (it does not exist, or changed meanwhile).
    async fn publish(&self, state: &CertState) -> Result<Publication, WebhookError> {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let name = &self.managed.configuration_name;
        let Some(mut config) = api.get_opt(name).await? else {
            tracing::warn!(configuration = %name, "webhook certificate: the MutatingWebhookConfiguration does not exist; caBundle not published");
            return Ok(Publication::Missing);
        };
        let want = ByteString(certs::bundle_pem(state).into_bytes());
        let mut changed = false;
        for hook in config.webhooks.iter_mut().flatten() {
            if hook.client_config.ca_bundle.as_ref() != Some(&want) {
                hook.client_config.ca_bundle = Some(want.clone());
                changed = true;
            }
        }
        if changed {
            let params = PostParams {
                field_manager: Some(self.field_manager.to_owned()),
                ..PostParams::default()
            };
            match api.replace(name, &params, &config).await {
                Ok(_) => {
                    crate::metrics::write("MutatingWebhookConfiguration", "update");
                    tracing::info!(configuration = %name, cas = state.bundle.len(), "webhook caBundle published");
                }
                // Changed meanwhile: the next pass reads it again.
                Err(e) if is_status(&e, 409) => return Ok(Publication::Missing),
                Err(e) => return Err(e.into()),
            }
            return Ok(Publication::Published);
        }
        Ok(Publication::Carried)
    }
}

fn state_of(secret: &Secret) -> Option<CertState> {
    let data = secret.data.as_ref()?;
    certs::from_secret(data, secret.annotations())
}

#[cfg(test)]
mod tests;
