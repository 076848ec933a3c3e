//! Where each Alibaba Cloud service is reached.
//!
//! Endpoints are configuration: a region and a network (public or VPC) derive the real hosts
//! (`cr.<region>.aliyuncs.com`, `cr-vpc.<region>.aliyuncs.com`, `sts.aliyuncs.com`,
//! `sts.<region>.aliyuncs.com`, `sts-vpc.<region>.aliyuncs.com`, metadata
//! `http://100.100.100.200`), and an override base URL per service (scheme, host, port)
//! replaces the derived one, e.g. to point at the fake cloud. The client has no other way of
//! choosing a host, so tests exercise the production path.

use url::Url;

use super::error::CloudError;

/// The default region, of bindings that name none and of regional endpoints.
pub const DEFAULT_REGION: &str = "cn-hangzhou";

/// Which network the controller reaches Alibaba Cloud APIs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Internet endpoints (`cr.<region>.aliyuncs.com`).
    #[default]
    Public,
    /// VPC endpoints (`cr-vpc.<region>.aliyuncs.com`, `sts-vpc.<region>.aliyuncs.com`).
    Vpc,
}

/// Which STS endpoint to use on the public network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StsScope {
    /// `sts.aliyuncs.com`, the SDKs' default.
    #[default]
    Central,
    /// `sts.<region>.aliyuncs.com`.
    Regional,
}

/// Override base URLs, one per service. Each must be `scheme://host[:port]` with no path.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub sts: Option<Url>,
    pub cr: Option<Url>,
    pub metadata: Option<Url>,
}

/// Endpoint configuration.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The controller's own region (default region for registries and regional STS).
    pub region: String,
    pub network: Network,
    pub sts_scope: StsScope,
    pub overrides: Overrides,
}

/// The metadata service's fixed address.
pub const METADATA_BASE: &str = "http://100.100.100.200";

impl Endpoints {
    /// Real endpoints for `region` on `network`, no overrides.
    pub fn new(region: impl Into<String>, network: Network) -> Self {
        Self {
            region: region.into(),
            network,
            sts_scope: StsScope::Central,
            overrides: Overrides::default(),
        }
    }

    /// Points every service at one base URL (the fake cloud serves all of them on one port).
    pub fn with_all_overridden(mut self, base: &Url) -> Self {
        self.overrides = Overrides {
            sts: Some(base.clone()),
            cr: Some(base.clone()),
            metadata: Some(base.clone()),
        };
        self
    }

    /// Base URL of the Container Registry API for `region`.
    pub fn cr(&self, region: &str) -> Result<Url, CloudError> {
        if let Some(url) = &self.overrides.cr {
            return Ok(url.clone());
        }
        check_region(region)?;
        let host = match self.network {
            Network::Public => format!("cr.{region}.aliyuncs.com"),
            Network::Vpc => format!("cr-vpc.{region}.aliyuncs.com"),
        };
        parse_base(&format!("https://{host}"))
    }

    /// Base URL of STS.
    pub fn sts(&self) -> Result<Url, CloudError> {
        if let Some(url) = &self.overrides.sts {
            return Ok(url.clone());
        }
        let host = match (self.network, self.sts_scope) {
            (Network::Vpc, _) => {
                check_region(&self.region)?;
                format!("sts-vpc.{}.aliyuncs.com", self.region)
            }
            (Network::Public, StsScope::Regional) => {
                check_region(&self.region)?;
                format!("sts.{}.aliyuncs.com", self.region)
            }
            (Network::Public, StsScope::Central) => "sts.aliyuncs.com".to_string(),
        };
        parse_base(&format!("https://{host}"))
    }

    /// Base URL of the ECS metadata service.
    pub fn metadata(&self) -> Result<Url, CloudError> {
        match &self.overrides.metadata {
            Some(url) => Ok(url.clone()),
            None => parse_base(METADATA_BASE),
        }
    }
}

/// Parses and checks an override base URL: http(s), a host, no path, query or fragment.
pub fn parse_base(value: &str) -> Result<Url, CloudError> {
    let bad = |why: &str| CloudError::Config {
        message: format!("endpoint URL {value:?}: {why}"),
    };
    let url = Url::parse(value).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("a host is required"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("only scheme, host and port are allowed"));
    }
    Ok(url)
}

/// The `Host` header a request to `url` carries (`host[:port]`, port only when not default).
pub fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn check_region(region: &str) -> Result<(), CloudError> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CloudError::Config {
            message: format!("invalid region {region:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_hosts_from_region_and_network() {
        let public = Endpoints::new("cn-hangzhou", Network::Public);
        assert_eq!(
            public.cr("cn-shanghai").unwrap().as_str(),
            "https://cr.cn-shanghai.aliyuncs.com/"
        );
        assert_eq!(public.sts().unwrap().as_str(), "https://sts.aliyuncs.com/");
        assert_eq!(
            public.metadata().unwrap().as_str(),
            "http://100.100.100.200/"
        );
        let regional = Endpoints {
            sts_scope: StsScope::Regional,
            ..public.clone()
        };
        assert_eq!(
            regional.sts().unwrap().as_str(),
            "https://sts.cn-hangzhou.aliyuncs.com/"
        );
        let vpc = Endpoints::new("cn-hangzhou", Network::Vpc);
        assert_eq!(
            vpc.cr("cn-hangzhou").unwrap().as_str(),
            "https://cr-vpc.cn-hangzhou.aliyuncs.com/"
        );
        assert_eq!(
            vpc.sts().unwrap().as_str(),
            "https://sts-vpc.cn-hangzhou.aliyuncs.com/"
        );
    }

    #[test]
    fn overrides_win_and_are_checked() {
        let base = parse_base("http://127.0.0.1:8080").unwrap();
        let e = Endpoints::new("cn-hangzhou", Network::Vpc).with_all_overridden(&base);
        assert_eq!(e.cr("eu-central-1").unwrap(), base);
        assert_eq!(e.sts().unwrap(), base);
        assert_eq!(host_header(&base), "127.0.0.1:8080");
        assert!(parse_base("ftp://x").is_err());
        assert!(parse_base("http://x/path").is_err());
        assert!(parse_base("not a url").is_err());
        assert_eq!(
            host_header(&parse_base("https://cr.cn-hangzhou.aliyuncs.com").unwrap()),
            "cr.cn-hangzhou.aliyuncs.com"
        );
    }

    #[test]
    fn bad_region_is_a_config_error() {
        let e = Endpoints::new("cn-hangzhou", Network::Public);
        assert!(e.cr("cn hangzhou").is_err());
        assert!(e.cr("evil.com/").is_err());
    }
}
