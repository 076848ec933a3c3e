//! Flag groups shared by every subcommand that talks to the cloud or the cluster, flattened
//! into each (`#[command(flatten)]`), so `run`, `doctor` and `migrate --from-cluster` spell
//! every flag, environment variable and default the same way, and turn them into
//! configuration in one place.
//!
//! - [`CloudArgs`]: region, network, STS scope, endpoint overrides, signature, managed-role
//!   token file → [`CloudArgs::cloud_config`].
//! - [`KubeArgs`]: the kubeconfig → [`KubeArgs::client`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::CliError;
use crate::cloud::credentials::{DEFAULT_MANAGED_TOKEN_FILE, DEFAULT_RRSA_TOKEN_FILE, TokenFiles};
use crate::cloud::endpoints::{DEFAULT_REGION, Endpoints, Network, StsScope, parse_base};
use crate::cloud::http::HttpConfig;
use crate::cloud::{CloudConfig, SignatureStyle};

/// Which network reaches the Alibaba Cloud APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// Internet endpoints.
    Public,
    /// VPC endpoints.
    Vpc,
}

/// The RPC signature to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SignatureArg {
    /// RPC signature V2 (HMAC-SHA1).
    V2,
    /// ACS3-HMAC-SHA256.
    V3,
}

/// How to reach Alibaba Cloud.
#[derive(Clone, Debug, Args)]
pub struct CloudArgs {
    /// Region of registries whose binding names none, and of regional endpoints.
    #[arg(long, env = "ACR_REGION", default_value = DEFAULT_REGION)]
    pub region: String,
    /// Network used to reach the Alibaba Cloud APIs.
    #[arg(long, env = "ACR_NETWORK", value_enum, default_value = "public")]
    pub network: NetworkArg,
    /// Use the regional STS endpoint (sts.<region>.aliyuncs.com) instead of sts.aliyuncs.com.
    #[arg(long, env = "ACR_STS_REGIONAL")]
    pub sts_regional: bool,
    /// One base URL for every cloud service (e.g. a fake cloud: http://127.0.0.1:PORT).
    #[arg(
        long,
        env = "ACR_CLOUD_ENDPOINT",
        value_name = "URL",
        alias = "endpoint-url"
    )]
    pub cloud_endpoint: Option<String>,
    /// Base URL of STS.
    #[arg(long, env = "ACR_STS_ENDPOINT", value_name = "URL", alias = "sts-url")]
    pub sts_endpoint: Option<String>,
    /// Base URL of the Container Registry API.
    #[arg(long, env = "ACR_CR_ENDPOINT", value_name = "URL", alias = "cr-url")]
    pub cr_endpoint: Option<String>,
    /// Base URL of the ECS metadata service.
    #[arg(
        long,
        env = "ACR_METADATA_ENDPOINT",
        value_name = "URL",
        alias = "metadata-url"
    )]
    pub metadata_endpoint: Option<String>,
    /// The RPC signature version.
    #[arg(long, env = "ACR_SIGNATURE", value_enum, default_value = "v2")]
    pub signature: SignatureArg,
    /// Where the ACK managed add-on token file is (managedRole source).
    #[arg(long, env = "ACR_MANAGED_TOKEN_FILE", value_name = "PATH", default_value = DEFAULT_MANAGED_TOKEN_FILE)]
    pub managed_token_file: PathBuf,
    /// Where the projected RRSA ServiceAccount token is (rrsa sources without their own
    /// `tokenFile`); ACK's pod identity webhook sets the variable.
    #[arg(long, env = "ALIBABA_CLOUD_OIDC_TOKEN_FILE", value_name = "PATH", default_value = DEFAULT_RRSA_TOKEN_FILE)]
    pub rrsa_token_file: PathBuf,
}

impl CloudArgs {
    /// Where the file-based credential sources read their tokens.
    pub fn token_files(&self) -> TokenFiles {
        TokenFiles {
            managed: self.managed_token_file.clone(),
            rrsa: self.rrsa_token_file.clone(),
        }
    }

    /// The cloud configuration the flags describe, for `region` (the flag's, or a binding's).
    pub fn cloud_config(&self, region: &str) -> Result<CloudConfig, String> {
        let network = match self.network {
            NetworkArg::Public => Network::Public,
            NetworkArg::Vpc => Network::Vpc,
        };
        let mut endpoints = Endpoints::new(region.to_owned(), network);
        if self.sts_regional {
            endpoints.sts_scope = StsScope::Regional;
        }
        let parse = |flag: &str, v: &str| parse_base(v).map_err(|e| format!("--{flag}: {e}"));
        if let Some(all) = &self.cloud_endpoint {
            endpoints = endpoints.with_all_overridden(&parse("cloud-endpoint", all)?);
        }
        if let Some(v) = &self.sts_endpoint {
            endpoints.overrides.sts = Some(parse("sts-endpoint", v)?);
        }
        if let Some(v) = &self.cr_endpoint {
            endpoints.overrides.cr = Some(parse("cr-endpoint", v)?);
        }
        if let Some(v) = &self.metadata_endpoint {
            endpoints.overrides.metadata = Some(parse("metadata-endpoint", v)?);
        }
        Ok(CloudConfig {
            endpoints,
            http: HttpConfig::default(),
            signature: match self.signature {
                SignatureArg::V2 => SignatureStyle::V2,
                SignatureArg::V3 => SignatureStyle::V3,
            },
        })
    }
}

/// How to reach the cluster.
#[derive(Clone, Debug, Args)]
pub struct KubeArgs {
    /// Kubeconfig file, or a list of them as KUBECONFIG spells it (merged the way kubectl
    /// merges them); without it: ~/.kube/config, then the in-cluster configuration.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use; without it: the kubeconfig's current context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl KubeArgs {
    /// A client for the cluster the flags name.
    pub async fn client(&self) -> Result<kube::Client, CliError> {
        kube::Client::try_from(self.config().await?).map_err(|source| CliError::Kube {
            context: "building the Kubernetes client".into(),
            source,
        })
    }

    /// The client configuration for the cluster the flags name.
    pub async fn config(&self) -> Result<kube::Config, CliError> {
        let manifest = |path: String| {
            move |e: kube::config::KubeconfigError| CliError::Manifest {
                path,
                message: e.to_string(),
            }
        };
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &self.kubeconfig {
            Some(list) => {
                let shown = list.display().to_string();
                let kubeconfig = std::env::split_paths(list.as_os_str())
                    .filter(|p| !p.as_os_str().is_empty())
                    .try_fold(Kubeconfig::default(), |merged, path| {
                        Kubeconfig::read_from(path).and_then(|next| merged.merge(next))
                    })
                    .map_err(manifest(shown.clone()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(manifest(shown))?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(manifest("~/.kube/config".into()))?,
            None => kube::Config::infer()
                .await
                .map_err(|e| CliError::Manifest {
                    path: "(~/.kube/config or in-cluster)".into(),
                    message: e.to_string(),
                })?,
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args, CommandFactory, Parser};

    use crate::cli::Cli;

    /// Every subcommand that talks to the cloud or the cluster takes the same flags, with the
    /// same environment variables and defaults.
    #[test]
    fn run_and_doctor_share_cloud_and_kube_flags() {
        let cli = Cli::command();
        let group = super::KubeArgs::augment_args(super::CloudArgs::augment_args(
            clap::Command::new("group"),
        ));
        let flags = |name: &str| -> Vec<(String, Option<String>, Vec<String>)> {
            let sub = cli.find_subcommand(name).unwrap();
            let mut v: Vec<_> = sub
                .get_arguments()
                .filter(|a| {
                    let id = a.get_id().as_str();
                    group.get_arguments().any(|c| c.get_id().as_str() == id)
                })
                .map(|a| {
                    (
                        a.get_long().unwrap_or_default().to_owned(),
                        a.get_env().map(|e| e.to_string_lossy().into_owned()),
                        a.get_default_values()
                            .iter()
                            .map(|d| d.to_string_lossy().into_owned())
                            .collect(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let run = flags("run");
        assert_eq!(run.len(), 12, "{run:?}");
        assert_eq!(run, flags("doctor"));
    }

    #[test]
    fn one_endpoint_flag_points_every_service_at_a_base_url() {
        let cli = Cli::try_parse_from([
            "acr-credential-controller",
            "run",
            "--cloud-endpoint",
            "http://127.0.0.1:9",
            "--sts-endpoint",
            "http://127.0.0.1:10",
            "--signature",
            "v3",
        ])
        .unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            panic!("not run")
        };
        let config = run.cloud.cloud_config("cn-beijing").unwrap();
        assert_eq!(config.endpoints.region, "cn-beijing");
        assert_eq!(
            config.endpoints.overrides.sts.as_ref().map(|u| u.as_str()),
            Some("http://127.0.0.1:10/")
        );
        assert_eq!(
            config.endpoints.overrides.cr.as_ref().map(|u| u.as_str()),
            Some("http://127.0.0.1:9/")
        );
        assert_eq!(config.signature, crate::cloud::SignatureStyle::V3);
        let e = super::CloudArgs {
            cloud_endpoint: Some("not a url".into()),
            ..run.cloud.clone()
        }
        .cloud_config("cn-beijing")
        .unwrap_err();
        assert!(e.starts_with("--cloud-endpoint"), "{e}");
    }
}
