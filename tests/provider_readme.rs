//! The README's "Kubelet credential provider" examples are real: every YAML block parses with
//! the kubelet's `CredentialProviderConfig` field names (unknown fields refused) or passes the
//! plugin's own configuration validation, the two modes are configured consistently, and the
//! plugin's configurations work as written against the fake cloud.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cloud_common;
mod provider_common;

use acr_credential_controller::provider::config::{self, Source};
use acr_credential_controller::provider::exchange::{
    ROLE_ARN_ANNOTATION, RRSA_ROLE_NAME_ANNOTATION,
};
use provider_common::{KubeletProviderConfig, go_duration, kubelet_matches};

fn section() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("\n## Kubelet credential provider\n")
        .expect("README has a Kubelet credential provider section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

fn yaml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unterminated yaml block");
    blocks
}

#[test]
fn readme_examples_parse_as_kubelet_and_plugin_configurations() {
    let blocks = yaml_blocks(&section());
    let mut kubelet = Vec::new();
    let mut plugin = Vec::new();
    for block in &blocks {
        let value: serde_yaml::Value = serde_yaml::from_str(block).unwrap();
        match value.get("kind").and_then(|k| k.as_str()) {
            Some("CredentialProviderConfig") => {
                let c: KubeletProviderConfig = serde_yaml::from_str(block).unwrap_or_else(|e| {
                    panic!("not a kubelet CredentialProviderConfig: {e}\n{block}")
                });
                kubelet.push(c);
            }
            Some("AcrCredentialProviderConfig") => {
                let c = config::parse(block).unwrap_or_else(|e| panic!("{e:?}\n{block}"));
                plugin.push(c);
            }
            other => panic!("unexpected yaml block of kind {other:?}:\n{block}"),
        }
    }
    assert_eq!(
        (kubelet.len(), plugin.len()),
        (2, 2),
        "two modes, two files each"
    );

    for c in &kubelet {
        assert_eq!(c.api_version, "kubelet.config.k8s.io/v1");
        let [p] = c.providers.as_slice() else {
            panic!("one provider")
        };
        assert_eq!(
            p.name, "acr-credential-provider",
            "the kubelet runs the binary by this name"
        );
        assert_eq!(p.api_version, "credentialprovider.kubelet.k8s.io/v1");
        assert!(go_duration(&p.default_cache_duration).is_some());
        assert_eq!(p.args.first().map(String::as_str), Some("--config"));
        assert_eq!(p.args.len(), 2);
        for image in [
            "myreg-registry.cn-hangzhou.cr.aliyuncs.com/team/app:v1",
            "myreg-registry-vpc.cn-hangzhou.cr.aliyuncs.com/team/app:v1",
            "registry.cn-hangzhou.aliyuncs.com/team/app:v1",
            "registry-vpc.cn-beijing.aliyuncs.com/team/app:v1",
            "images.example.com/team/app:v1",
        ] {
            assert!(
                p.match_images.iter().any(|m| kubelet_matches(m, image)),
                "{image} not matched"
            );
        }
        for image in [
            "docker.io/library/nginx",
            "ghcr.io/org/app",
            "registry.k8s.io/pause:3.10",
        ] {
            assert!(
                !p.match_images.iter().any(|m| kubelet_matches(m, image)),
                "{image} matched"
            );
        }
    }
    let pod_kubelet: Vec<_> = kubelet
        .iter()
        .filter_map(|c| c.providers[0].token_attributes.as_ref())
        .collect();
    let [attrs] = pod_kubelet.as_slice() else {
        panic!("exactly one kubelet config with tokenAttributes")
    };
    assert_eq!(attrs.service_account_token_audience, "sts.aliyuncs.com");
    assert_eq!(
        attrs.cache_type, "ServiceAccount",
        "answers must be cached per ServiceAccount"
    );
    assert!(attrs.require_service_account);
    for key in [ROLE_ARN_ANNOTATION, RRSA_ROLE_NAME_ANNOTATION] {
        assert!(
            attrs
                .optional_service_account_annotation_keys
                .iter()
                .any(|k| k == key),
            "{key}"
        );
    }
    assert!(attrs.required_service_account_annotation_keys.is_empty());

    assert!(
        plugin
            .iter()
            .any(|c| matches!(c.source, Source::WorkerRole { .. }))
    );
    assert!(
        plugin
            .iter()
            .any(|c| matches!(c.source, Source::Rrsa { .. }))
    );
}

/// The README's plugin configurations work as written (endpoints pointed at the fake cloud):
/// the node's role (`workerRole`) and the Pod's own ServiceAccount (`rrsa`) each get a login for an Enterprise host and a custom domain.
#[tokio::test]
async fn readme_plugin_configurations_work_against_the_fake_cloud() {
    use acr_fake_cloud::{FakeCloud, Scenario};
    let yaml = format!(
        r#"
accounts:
  - id: "1234567890123456"
    roles:
      - {{name: node-role, permissions: ["cr:GetAuthorizationToken"]}}
      - name: app-puller
        permissions: ["cr:GetAuthorizationToken:cri-abc123xyz"]
        trust: {{oidc: [{{provider: ack-rrsa-c0123456789abcdef, subjects: ["system:serviceaccount:shop:app"]}}]}}
    oidcProviders:
      - {{name: ack-rrsa-c0123456789abcdef, issuer: "{issuer}", publicKeyFiles: ["{key}"]}}
    instances:
      - id: cri-abc123xyz
        name: myreg
        endpoints:
          - {{type: internet, domains: [{{domain: myreg-registry.cn-hangzhou.cr.aliyuncs.com}}, {{domain: images.example.com, type: USER}}]}}
metadata: {{account: "1234567890123456", roleName: node-role}}
"#,
        issuer = cloud_common::ISSUER,
        key = cloud_common::fixture("rrsa-test-key.pub.pem"),
    );
    let fake = FakeCloud::start(Scenario::from_str_resolved(&yaml).unwrap())
        .await
        .unwrap();
    let base = fake.base_url().as_str().trim_end_matches('/');
    let endpoints = format!("endpoints: {{sts: '{base}', cr: '{base}', metadata: '{base}'}}\n");
    let token = cloud_common::oidc_token(
        "system:serviceaccount:shop:app",
        "sts.aliyuncs.com",
        cloud_common::ISSUER,
        3600,
    );
    let plugin_blocks: Vec<String> = yaml_blocks(&section())
        .into_iter()
        .filter(|b| b.contains("kind: AcrCredentialProviderConfig"))
        .collect();
    assert_eq!(plugin_blocks.len(), 2);
    for block in plugin_blocks {
        let pod = block.contains("rrsa:");
        let config = format!("{block}{endpoints}");
        for host in [
            "myreg-registry.cn-hangzhou.cr.aliyuncs.com",
            "images.example.com",
        ] {
            let request = if pod {
                provider_common::request(
                    &format!("{host}/shop/app:v1"),
                    Some(&token),
                    &[(RRSA_ROLE_NAME_ANNOTATION, "app-puller")],
                )
            } else {
                provider_common::request(&format!("{host}/shop/app:v1"), None, &[])
            };
            let out = provider_common::run_plugin(&config, &request).await;
            let auth = out.response().auth.expect("credentials");
            assert!(
                fake.handle().registry_token_valid(&auth[host].password),
                "{host}"
            );
        }
    }
    assert_eq!(fake.handle().count_ok("sts:AssumeRoleWithOIDC"), 2);
}
