//! Shared setup for the `provider_*` tests: the kubelet's own types for the exec credential
//! provider protocol and its configuration (field names as in the kubelet's Go types, unknown
//! fields refused), a Go duration parser, and a runner that drives the built
//! `acr-credential-provider` binary as the kubelet does.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

/// `credentialprovider.kubelet.k8s.io/v1` `CredentialProviderResponse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletResponse {
    pub api_version: String,
    pub kind: String,
    pub cache_key_type: String,
    #[serde(default)]
    pub cache_duration: Option<String>,
    #[serde(default)]
    pub auth: Option<BTreeMap<String, KubeletAuth>>,
}

/// `credentialprovider.kubelet.k8s.io/v1` `AuthConfig`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletAuth {
    pub username: String,
    pub password: String,
}

/// `kubelet.config.k8s.io/v1` `CredentialProviderConfig`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletProviderConfig {
    pub api_version: String,
    pub kind: String,
    pub providers: Vec<KubeletProvider>,
}

/// `kubelet.config.k8s.io/v1` `CredentialProvider`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletProvider {
    pub name: String,
    pub match_images: Vec<String>,
    pub default_cache_duration: String,
    pub api_version: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<KubeletEnv>,
    #[serde(default)]
    pub token_attributes: Option<KubeletTokenAttributes>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletEnv {
    pub name: String,
    pub value: String,
}

/// `kubelet.config.k8s.io/v1` `ServiceAccountTokenAttributes`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletTokenAttributes {
    pub service_account_token_audience: String,
    pub cache_type: String,
    pub require_service_account: bool,
    #[serde(default)]
    pub required_service_account_annotation_keys: Vec<String>,
    #[serde(default)]
    pub optional_service_account_annotation_keys: Vec<String>,
}

/// Parses a Go duration string (`time.ParseDuration`: `1h2m3s`, `55m0s`, `1.5s`, `300ms`, `0`).
pub fn go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

/// The kubelet's `matchImages` rule: same number of host parts, each glob part matching one
/// part; a port in the pattern must match; the pattern's path must prefix the image's path.
pub fn kubelet_matches(pattern: &str, image: &str) -> bool {
    let split = |s: &str| {
        let (host, path) = s.split_once('/').unwrap_or((s, ""));
        let (host, port) = host.split_once(':').unwrap_or((host, ""));
        (host.to_string(), port.to_string(), path.to_string())
    };
    let (p_host, p_port, p_path) = split(pattern);
    let (i_host, i_port, i_path) = split(image);
    let glob = |p: &str, v: &str| match p.split_once('*') {
        None => p == v,
        Some((pre, post)) => {
            v.len() >= pre.len() + post.len() && v.starts_with(pre) && v.ends_with(post)
        }
    };
    let pp: Vec<&str> = p_host.split('.').collect();
    let ip: Vec<&str> = i_host.split('.').collect();
    pp.len() == ip.len()
        && pp.iter().zip(&ip).all(|(p, v)| glob(p, v))
        && (p_port.is_empty() || p_port == i_port)
        && i_path.starts_with(&p_path)
}

/// What the plugin did with one request.
#[derive(Debug)]
pub struct Outcome {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// The response, parsed as the kubelet's types define it.
    pub fn response(&self) -> KubeletResponse {
        assert!(self.status.success(), "plugin failed: {}", self.stderr);
        let r: KubeletResponse = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not a CredentialProviderResponse ({e}): {}", self.stdout));
        assert_eq!(r.api_version, "credentialprovider.kubelet.k8s.io/v1");
        assert_eq!(r.kind, "CredentialProviderResponse");
        assert!(
            ["Image", "Registry", "Global"].contains(&r.cache_key_type.as_str()),
            "{r:?}"
        );
        r
    }

    /// The one-line error of a failed call.
    pub fn error(&self) -> &str {
        assert!(!self.status.success(), "plugin succeeded: {}", self.stdout);
        assert!(
            self.stdout.trim().is_empty(),
            "stdout on failure: {}",
            self.stdout
        );
        assert!(
            self.stderr.contains("acr-credential-provider: "),
            "{}",
            self.stderr
        );
        &self.stderr
    }
}

/// Runs the plugin once: `config` is the configuration file's text, `request` goes to stdin.
pub async fn run_plugin(config: &str, request: &[u8]) -> Outcome {
    run_plugin_logging(config, request, None).await
}

/// Like [`run_plugin`], with `RUST_LOG` set to `log` (e.g. `debug`) when given.
pub async fn run_plugin_logging(config: &str, request: &[u8], log: Option<&str>) -> Outcome {
    let dir = std::env::temp_dir().join(format!(
        "acr-provider-test-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let started = Instant::now();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_acr-credential-provider"));
    command.args(["--config", path.to_str().unwrap()]);
    match log {
        Some(level) => command.env("RUST_LOG", level),
        None => command.env_remove("RUST_LOG"),
    };
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the plugin never finished")
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Outcome {
        status: out.status,
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        elapsed: started.elapsed(),
    }
}

/// A request as the kubelet writes it.
pub fn request(image: &str, token: Option<&str>, annotations: &[(&str, &str)]) -> Vec<u8> {
    let mut r = serde_json::json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": image,
    });
    if let Some(t) = token {
        r["serviceAccountToken"] = t.into();
    }
    if !annotations.is_empty() {
        let map: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        r["serviceAccountAnnotations"] = serde_json::to_value(map).unwrap();
    }
    r.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn go_durations_and_match_images() {
        use super::*;
        assert_eq!(go_duration("55m0s"), Some(Duration::from_secs(3300)));
        assert_eq!(go_duration("1h0m0s"), Some(Duration::from_secs(3600)));
        assert_eq!(go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("55"), None);
        assert!(kubelet_matches(
            "*.*.cr.aliyuncs.com",
            "a-registry.cn-hangzhou.cr.aliyuncs.com/x/y:1"
        ));
        assert!(!kubelet_matches(
            "*.cr.aliyuncs.com",
            "a-registry.cn-hangzhou.cr.aliyuncs.com/x"
        ));
        assert!(kubelet_matches(
            "registry*.*.aliyuncs.com",
            "registry-vpc.cn-hangzhou.aliyuncs.com/x"
        ));
        assert!(!kubelet_matches(
            "registry*.*.aliyuncs.com",
            "docker.io/library/nginx"
        ));
    }
}
