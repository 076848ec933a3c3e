//! Keeping the serving certificate (I/O around [`super::certs`]).
//!
//! Managed (the default): the leader takes the rotation step due ([`certs::next_step`]),
//! writes the one certificate Secret (created by server-side apply, so RBAC can pin `create`
//! to its name; updated in place, version-checked) and publishes the Secret's CA bundle as the
//! `caBundle` of every webhook of the one MutatingWebhookConfiguration it owns (a
//! version-checked update). No step is taken while the published bundle differs from the
//! Secret's: a certificate is never switched before the API server can trust it. Every replica
//! loads the serving certificate from the Secret into its [`CertSlot`].
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
use super::certs::{self, CertState, CertTimings, Identity, Pair, Step};
use super::server::CertSlot;
use crate::cloud::clock::Clock;
use crate::controller::Leadership;
use crate::controller::error::is_status;
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
    pub secret_name: String,
    /// The MutatingWebhookConfiguration whose `caBundle` the leader sets.
    pub configuration_name: String,
    pub identity: Identity,
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

async fn load_files(dir: &std::path::Path, slot: &CertSlot) -> Result<(), WebhookError> {
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

    /// One pass: (leader) publish, step, publish; (everyone) load.
    async fn pass(
        &self,
        slot: &CertSlot,
        leadership: &Leadership,
        clock: &dyn Clock,
    ) -> Result<(), WebhookError> {
        let name = &self.managed.secret_name;
        let secret = self.secrets().get_opt(name).await?;
        let mut state = secret.as_ref().and_then(state_of);
        if leadership.is_leader() {
            let published = match &state {
                Some(s) => self.publish(s).await?,
                None => true,
            };
            let now = clock.now();
            let m = self.managed;
            let step = certs::next_step(state.as_ref(), now, &m.timings, &m.identity);
            // Never switch or drop a CA the API server has not been shown yet.
            let held = !published && matches!(step, Step::Switch | Step::DropOldCa);
            let next = if held {
                None
            } else {
                certs::take_step(step, state.as_ref(), now, &m.timings, &m.identity)?
            };
            if let Some(next) = next {
                self.write(secret.as_ref(), &next).await?;
                tracing::info!(step = ?step, not_after = %next.not_after, cas = next.bundle.len(), "webhook certificate: rotation step taken");
                self.publish(&next).await?;
                state = Some(next);
            }
        }
        if let Some(s) = &state
            && slot.load(&s.serving)?
        {
            tracing::info!(not_after = %s.not_after, "webhook certificate loaded");
        }
        Ok(())
    }

    async fn write(
        &self,
        existing: Option<&Secret>,
        state: &CertState,
    ) -> Result<(), WebhookError> {
        let (data, annotations) = certs::to_secret(state);
        let api = self.secrets();
        let name = &self.managed.secret_name;
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

    /// Sets `caBundle` on every webhook of the configuration; returns whether the configuration
    /// now carries the Secret's bundle (`false` when it does not exist).
    async fn publish(&self, state: &CertState) -> Result<bool, WebhookError> {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let name = &self.managed.configuration_name;
        let Some(mut config) = api.get_opt(name).await? else {
            tracing::warn!(configuration = %name, "webhook certificate: the MutatingWebhookConfiguration does not exist; caBundle not published");
            return Ok(false);
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
                Err(e) if is_status(&e, 409) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }
}

fn state_of(secret: &Secret) -> Option<CertState> {
    let data = secret.data.as_ref()?;
    certs::from_secret(data, secret.annotations())
}
