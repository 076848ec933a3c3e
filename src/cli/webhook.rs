//! `run`'s `--webhook-*` flags: the ServiceAccount admission webhook (off unless
//! `--webhook-address` is given) and where its certificate comes from.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::webhook::certs::{CertTimings, ServingNames};
use crate::webhook::{CertSource, Managed, Settings, WebhookConfig};

/// Flags of the admission webhook.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Serve the ServiceAccount admission webhook (injectOnCreate) over HTTPS on this address.
    /// Off when not given.
    #[arg(long, env = "ACR_WEBHOOK_ADDRESS")]
    pub webhook_address: Option<SocketAddr>,
    /// The certificate Secret (in the controller's namespace) that holds the webhook's CA and
    /// serving certificate.
    // `--webhook-secret-name`: the old spelling, still accepted; the variable keeps its name.
    #[arg(
        long,
        env = "ACR_WEBHOOK_SECRET_NAME",
        default_value = "acr-credential-controller-webhook-tls",
        alias = "webhook-secret-name"
    )]
    pub webhook_certificate_secret_name: String,
    /// The MutatingWebhookConfiguration whose caBundle the controller keeps.
    #[arg(
        long,
        env = "ACR_WEBHOOK_CONFIGURATION_NAME",
        default_value = "acr-credential-controller"
    )]
    pub webhook_configuration_name: String,
    /// DNS names of the serving certificate (the webhook Service's), comma-separated.
    #[arg(long, env = "ACR_WEBHOOK_DNS_NAMES", value_delimiter = ',')]
    pub webhook_dns_names: Vec<String>,
    /// IP addresses of the serving certificate, comma-separated (for a webhook called by URL).
    #[arg(long, env = "ACR_WEBHOOK_IP_ADDRESSES", value_delimiter = ',')]
    pub webhook_ip_addresses: Vec<IpAddr>,
    /// Serve tls.crt and tls.key from this directory (reloaded when they change) instead of
    /// minting certificates; the caBundle is then someone else's (cert-manager's CA injector).
    #[arg(long, env = "ACR_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<PathBuf>,
    /// Lifetime of a minted serving certificate, in seconds.
    #[arg(long, env = "ACR_WEBHOOK_CERT_VALIDITY_SECONDS", default_value_t = 365 * 24 * 3600)]
    pub webhook_cert_validity_seconds: u64,
    /// Rotation starts this many seconds before the serving certificate expires.
    #[arg(long, env = "ACR_WEBHOOK_CERT_RENEW_BEFORE_SECONDS", default_value_t = 30 * 24 * 3600)]
    pub webhook_cert_renew_before_seconds: u64,
    /// Least number of seconds between two rotation steps (time for the API server and every
    /// replica to pick up the previous one).
    #[arg(long, env = "ACR_WEBHOOK_CERT_OVERLAP_SECONDS", default_value_t = 120)]
    pub webhook_cert_overlap_seconds: u64,
}

impl WebhookArgs {
    /// The webhook's configuration, `None` when it is off. `namespace` is the controller's (the
    /// certificate Secret's, and excluded from mutation); `secret_name` the pull Secret's.
    pub fn config(
        &self,
        namespace: &str,
        secret_name: &str,
    ) -> Result<Option<WebhookConfig>, String> {
        let Some(address) = self.webhook_address else {
            return Ok(None);
        };
        let certs = match &self.webhook_cert_dir {
            Some(dir) => CertSource::Files(dir.clone()),
            None => {
                let timings = CertTimings {
                    validity: Duration::from_secs(self.webhook_cert_validity_seconds),
                    renew_before: Duration::from_secs(self.webhook_cert_renew_before_seconds),
                    overlap: Duration::from_secs(self.webhook_cert_overlap_seconds),
                };
                timings
                    .validate()
                    .map_err(|e| format!("--webhook-cert-*: {e}"))?;
                if self.webhook_dns_names.is_empty() && self.webhook_ip_addresses.is_empty() {
                    return Err("--webhook-address needs --webhook-dns-names or --webhook-ip-addresses for its certificate (or --webhook-cert-dir)".into());
                }
                CertSource::Managed(Managed {
                    namespace: namespace.to_owned(),
                    certificate_secret_name: self.webhook_certificate_secret_name.clone(),
                    configuration_name: self.webhook_configuration_name.clone(),
                    serving_names: ServingNames {
                        dns_names: self.webhook_dns_names.clone(),
                        ip_addresses: self.webhook_ip_addresses.clone(),
                    },
                    timings,
                })
            }
        };
        Ok(Some(WebhookConfig {
            address,
            settings: Settings::new(secret_name, namespace),
            certs,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        webhook: WebhookArgs,
    }

    fn parse(args: &[&str]) -> Result<Option<WebhookConfig>, String> {
        let mut all = vec!["x"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .unwrap()
            .webhook
            .config("acr-system", "acr-credentials")
    }

    #[test]
    fn off_unless_an_address_is_given() {
        assert_eq!(parse(&[]).unwrap(), None);
    }

    #[test]
    fn managed_certificates_need_names_and_sane_timings() {
        let on = ["--webhook-address", "0.0.0.0:9443"];
        assert!(parse(&on).unwrap_err().contains("--webhook-dns-names"));
        let mut args = on.to_vec();
        args.extend([
            "--webhook-dns-names",
            "a.acr-system.svc,a.acr-system.svc.cluster.local",
        ]);
        let config = parse(&args).unwrap().unwrap();
        let CertSource::Managed(m) = &config.certs else {
            panic!("not managed")
        };
        assert_eq!(m.serving_names.dns_names.len(), 2);
        assert_eq!(m.namespace, "acr-system");
        assert!(config.settings.excluded_namespaces.contains("acr-system"));
        assert!(config.settings.excluded_namespaces.contains("kube-system"));
        args.extend(["--webhook-cert-overlap-seconds", "2000000"]);
        assert!(parse(&args).unwrap_err().contains("overlap"));
    }

    #[test]
    fn a_cert_dir_means_files() {
        let config = parse(&[
            "--webhook-address",
            "0.0.0.0:9443",
            "--webhook-cert-dir",
            "/tls",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(config.certs, CertSource::Files("/tls".into()));
    }
}
