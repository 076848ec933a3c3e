//! Shared setup for the `e2e_pull` tier: a real registry and container runtime pulling with
//! what the controller wrote.
//!
//! [`PullHarness::new`] starts a fake cloud whose Enterprise instance [`INSTANCE`] has one
//! endpoint domain, `127.0.0.1:<port>`: the local registry `scripts/pull-chain.sh up` starts on
//! that port (Debian's docker-registry, `auth: token` with the fake as its realm and service
//! [`INSTANCE`]), next to a containerd of the test's own. The controller runs in-process as in
//! the `controller_*` tests. Dropping the harness runs `pull-chain.sh down`; if the test binary
//! dies without unwinding, the chain's watchdog tears it down.
//!
//! Pulls go through real clients: `skopeo copy` with a Secret's `.dockerconfigjson` as its
//! auth file, and containerd's CRI `PullImage` (CRI v1alpha2, as kubelet 1.20 speaks it) over
//! gRPC on the runtime's socket, with the `AuthConfig` a kubelet derives from a pull Secret.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use acr_fake_cloud::{FakeCloud, Scenario};
use k8s_openapi::api::core::v1::Secret;

use crate::controller_common::{ACCOUNT, Harness, OTHER_DOMAIN, OTHER_INSTANCE, ROLE, auths};
use crate::support::{self, TestEnv, install_crds};

pub use crate::controller_common::INSTANCE;

/// The RAM role of the node's ECS instance, served by the fake's metadata service: what
/// `acr-credential-provider` with `identity: {node: {}}` pulls as.
pub const NODE_ROLE: &str = "e2e-node";

/// The fake's world: [`INSTANCE`] served by the local registry at `registry`, and another
/// instance [`OTHER_INSTANCE`] at [`OTHER_DOMAIN`]; ECS metadata hands out [`NODE_ROLE`].
pub fn scenario(registry: &str, registry_seconds: u64) -> Scenario {
    let yaml = format!(
        r#"
region: cn-hangzhou
lifetimes: {{registrySeconds: {registry_seconds}}}
accounts:
  - id: "{ACCOUNT}"
    accessKeys:
      - {{id: LTAIctrl, secret: ctrlsecret, user: ci}}
    users:
      - {{name: ci, permissions: ["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint", "sts:AssumeRole"]}}
    roles:
      - name: {ROLE}
        maxSessionDuration: 3600
        permissions: ["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint"]
        trust: {{principals: ["acs:ram::{ACCOUNT}:root"]}}
      - name: {NODE_ROLE}
        permissions: ["cr:GetAuthorizationToken:{INSTANCE}"]
    instances:
      - id: {INSTANCE}
        name: pulls
        region: cn-hangzhou
        endpoints:
          - type: internet
            enabled: true
            domains: [{{domain: "{registry}", type: SYSTEM}}]
      - id: {OTHER_INSTANCE}
        name: other
        region: cn-hangzhou
        endpoints:
          - type: internet
            enabled: true
            domains: [{{domain: {OTHER_DOMAIN}, type: SYSTEM}}]
metadata: {{account: "{ACCOUNT}", roleName: {NODE_ROLE}}}
"#
    );
    Scenario::from_str_resolved(&yaml).unwrap()
}

/// A registry and a containerd started by `scripts/pull-chain.sh`; stopped on drop.
pub struct Chain {
    pub dir: PathBuf,
    /// `127.0.0.1:<port>`.
    pub registry: String,
    /// The private image, `127.0.0.1:<port>/acr-e2e/app:v1`.
    pub app_image: String,
    pub containerd_socket: PathBuf,
}

fn pull_chain_script() -> PathBuf {
    support::repo_root().join("scripts/pull-chain.sh")
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Chain {
    /// Starts the chain on `port` with `fake` as the registry's token realm for `service`.
    pub fn start(fake: &FakeCloud, service: &str, port: u16) -> Chain {
        let dir = std::env::temp_dir().join(format!("acr-pulls.{}", support::random_suffix(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.with_extension("realm.pem");
        std::fs::write(&cert, acr_fake_cloud::realm::certificate_pem().unwrap()).unwrap();
        let out = Command::new("bash")
            .arg(pull_chain_script())
            .arg("up")
            .arg(&dir)
            .args(["--realm", &fake.realm_url(), "--service", service])
            .arg("--cert")
            .arg(&cert)
            .args(["--port", &port.to_string()])
            .args(["--owner", &std::process::id().to_string()])
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&cert);
        let chain = Chain {
            registry: format!("127.0.0.1:{port}"),
            app_image: format!("127.0.0.1:{port}/acr-e2e/app:v1"),
            containerd_socket: dir.join("containerd.sock"),
            dir,
        };
        assert!(
            out.status.success(),
            "pull-chain.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        chain
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(pull_chain_script())
            .arg("down")
            .arg(&self.dir)
            .status();
    }
}

/// A controller test harness whose fake cloud is the realm of a local registry.
pub struct PullHarness {
    pub h: Harness,
    pub chain: Chain,
}

impl PullHarness {
    /// As `controller_common::Harness::new`, plus the registry and containerd.
    pub async fn new(name: &str, registry_seconds: u64, renew_before: &str) -> PullHarness {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let port = free_port();
        let env = TestEnv::new(name).await;
        install_crds(&env.client()).await;
        let fake = FakeCloud::start(scenario(&format!("127.0.0.1:{port}"), registry_seconds))
            .await
            .unwrap();
        let chain = Chain::start(&fake, INSTANCE, port);
        let id = env.namespace().to_owned();
        let h = Harness {
            env,
            fake,
            policy: id.clone(),
            id,
        };
        h.env
            .apply(
                "apiVersion: v1\nkind: Secret\nmetadata: {name: alibaba-ak}\nstringData: {AccessKeyId: LTAIctrl, AccessKeySecret: ctrlsecret}\n",
            )
            .await;
        h.add_policy(&h.policy, &format!("renewBefore: {renew_before}"))
            .await;
        PullHarness { h, chain }
    }
}

/// Docker credentials for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub username: String,
    pub password: String,
}

/// The credentials a kubelet takes from a pull Secret for `image`: the `auths` entry whose
/// key (scheme and trailing `/` ignored) is the image's registry host, or a prefix of its
/// registry host and repository path; `None` when no entry matches.
pub fn kubelet_credentials(secret: &Secret, image: &str) -> Option<Creds> {
    let image_path = image.split(['@']).next().unwrap_or(image);
    auths(secret)
        .into_iter()
        .find_map(|(key, (user, pass, _))| {
            let key = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            let host_matches = image_path.split('/').next() == Some(key);
            let prefix_matches = key.contains('/') && image_path.starts_with(&format!("{key}/"));
            (host_matches || prefix_matches).then_some(Creds {
                username: user,
                password: pass,
            })
        })
}

/// `skopeo copy` of `image` into a scratch folder with `authfile` (a `.dockerconfigjson`);
/// `Err` carries skopeo's error text. Async: the fake's realm answers on this runtime.
pub async fn skopeo_pull(authfile_json: &[u8], image: &str) -> Result<(), String> {
    let scratch = std::env::temp_dir().join(format!("acr-skopeo.{}", support::random_suffix(8)));
    std::fs::create_dir_all(&scratch).unwrap();
    let authfile = scratch.join("auth.json");
    std::fs::write(&authfile, authfile_json).unwrap();
    let out = tokio::process::Command::new("skopeo")
        .args(["--tmpdir"])
        .arg(&scratch)
        .args(["copy", "--quiet", "--src-tls-verify=false", "--authfile"])
        .arg(&authfile)
        .arg(format!("docker://{image}"))
        .arg(format!("dir:{}", scratch.join("image").display()))
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The `.dockerconfigjson` of a Secret.
pub fn dockerconfigjson(secret: &Secret) -> Vec<u8> {
    secret.data.as_ref().unwrap()[".dockerconfigjson"].0.clone()
}

/// A `.dockerconfigjson` with one entry, written as the controller writes them (skopeo reads
/// only `auth`).
pub fn config_json(registry: &str, creds: &Creds) -> Vec<u8> {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.username, creds.password));
    serde_json::to_vec(&serde_json::json!({"auths": {registry: {
        "username": creds.username, "password": creds.password, "auth": auth}}}))
    .unwrap()
}

// --- CRI over gRPC -----------------------------------------------------------------------------

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A length-delimited protobuf field.
fn field(buf: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(buf, (number << 3) | 2);
    varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// `runtime.v1alpha2.PullImageRequest{image: {image}, auth: {username, password}}`.
fn pull_request(image: &str, creds: Option<&Creds>) -> Vec<u8> {
    let mut spec = Vec::new();
    field(&mut spec, 1, image.as_bytes());
    let mut msg = Vec::new();
    field(&mut msg, 1, &spec);
    if let Some(c) = creds {
        let mut auth = Vec::new();
        field(&mut auth, 1, c.username.as_bytes());
        field(&mut auth, 2, c.password.as_bytes());
        field(&mut msg, 2, &auth);
    }
    msg
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// CRI `ImageService/PullImage` on `socket`: the image reference on success, the gRPC status
/// message otherwise.
pub async fn cri_pull(socket: &Path, image: &str, creds: Option<&Creds>) -> Result<String, String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    let (client, connection) = h2::client::handshake(stream)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.map_err(|e| e.to_string())?;
    let request = http::Request::post("http://localhost/runtime.v1alpha2.ImageService/PullImage")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client
        .send_request(request, false)
        .map_err(|e| e.to_string())?;
    let msg = pull_request(image, creds);
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&msg);
    send.send_data(framed.into(), true)
        .map_err(|e| e.to_string())?;
    let response = response.await.map_err(|e| e.to_string())?;
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.map_err(|e| e.to_string())?;
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .chain(trailers.iter().flat_map(|t| t.iter()))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    match headers.get("grpc-status").map(String::as_str) {
        Some("0") => {
            // One frame: flag, length, then PullImageResponse{image_ref = 1}.
            let msg = data.get(5..).unwrap_or_default();
            let len = usize::from(*msg.get(1).unwrap_or(&0));
            Ok(String::from_utf8_lossy(msg.get(2..2 + len).unwrap_or_default()).into_owned())
        }
        status => Err(format!(
            "grpc-status {}: {}",
            status.unwrap_or("missing"),
            percent_decode(headers.get("grpc-message").map_or("", String::as_str))
        )),
    }
}
