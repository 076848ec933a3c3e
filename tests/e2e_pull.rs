//! End-to-end pulls: a real registry (Debian's docker-registry, distribution 2.8, `auth: token`
//! with the fake cloud as its token realm) and real clients (`skopeo`, containerd 1.6's CRI
//! `PullImage`) pull a private image with the pull Secrets the controller wrote, and are refused
//! with what it must not accept: a tampered password, an expired or revoked token, another
//! instance's Secret, the token a renewal replaced.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod e2e_common;
mod support;

use std::time::{Duration, Instant};

use acr_fake_cloud::FakeHandle;
use controller_common::{OTHER_INSTANCE, SECRET_NAME, wait_secret};
use e2e_common::{
    Creds, PullHarness, config_json, cri_pull, dockerconfigjson, kubelet_credentials, skopeo_pull,
};

/// Realm answers of `api` (`registry:Token`, `registry:OAuthToken`) as (status, code).
fn realm_answers(handle: &FakeHandle, api: &str) -> Vec<(u16, Option<String>)> {
    handle
        .log()
        .into_iter()
        .filter(|e| e.api == api)
        .map(|e| (e.status, e.code))
        .collect()
}

fn refused(result: Result<impl std::fmt::Debug, String>, what: &str) -> String {
    let err = result.expect_err(what);
    assert!(
        err.contains("401") || err.to_ascii_lowercase().contains("unauthorized"),
        "{what}: not refused as unauthorized: {err}"
    );
    err
}

#[tokio::test]
async fn skopeo_pulls_with_the_controllers_secret_and_not_with_a_tampered_expired_or_revoked_token()
{
    let started = Instant::now();
    let p = PullHarness::new("e2e-skopeo", 3600, "15m").await;
    let h = &p.h;
    let ns = h.env.namespace().to_owned();
    let image = p.chain.app_image.clone();
    h.with_controller(async |h| {
        let name = h.named("skopeo");
        h.bind(&name, &h.test_binding().names(&[&ns])).await;
        h.wait_ready(&name, "True", Duration::from_secs(60)).await;
        let secret = wait_secret(&h.secrets(&ns), "pull Secret", |_| true).await;
        let handle = h.handle();

        // The Secret as the controller wrote it, byte for byte, is skopeo's auth file.
        skopeo_pull(&dockerconfigjson(&secret), &image)
            .await
            .expect("pull with the Secret");
        assert!(
            realm_answers(&handle, "registry:Token").contains(&(200, None)),
            "skopeo did not get its token from the realm"
        );

        let creds = kubelet_credentials(&secret, &image).expect("an entry for the registry");
        let mut tampered = creds.clone();
        tampered.password.push('x');
        refused(
            skopeo_pull(&config_json(&p.chain.registry, &tampered), &image).await,
            "tampered password",
        );
        refused(
            skopeo_pull(br#"{"auths":{}}"#, &image).await,
            "no credentials",
        );
        let codes = realm_answers(&handle, "registry:Token");
        assert!(
            codes.contains(&(401, Some("UnknownCredentials".into()))),
            "{codes:?}"
        );
        assert!(
            codes.contains(&(401, Some("Anonymous".into()))),
            "{codes:?}"
        );

        // Revoked by a fault switch: the realm refuses every credential while it is set.
        handle.fail("registry:Token", 401, "Revoked", Some(1));
        refused(
            skopeo_pull(&dockerconfigjson(&secret), &image).await,
            "revoked",
        );
        skopeo_pull(&dockerconfigjson(&secret), &image)
            .await
            .expect("pull once the revocation ends");

        // Expired: the fake's clock past the token's expiry.
        handle.set_clock_offset(jiff::SignedDuration::from_secs(3601));
        let err = refused(
            skopeo_pull(&dockerconfigjson(&secret), &image).await,
            "expired",
        );
        handle.set_clock_offset(jiff::SignedDuration::ZERO);
        let codes = realm_answers(&handle, "registry:Token");
        assert!(codes.contains(&(401, Some("Expired".into()))), "{codes:?}");
        eprintln!("expired token refused: {}", err.trim());
    })
    .await;
    eprintln!("skopeo test took {:?}", started.elapsed());
}

#[tokio::test]
async fn containerd_pulls_with_what_a_kubelet_derives_and_not_with_another_instances_secret() {
    let started = Instant::now();
    let p = PullHarness::new("e2e-cri", 3600, "15m").await;
    let h = &p.h;
    let ns = h.env.namespace().to_owned();
    let other_ns = h.env.extra_namespace("e2e-cri-other").await;
    let image = p.chain.app_image.clone();
    let socket = p.chain.containerd_socket.clone();
    h.with_controller(async |h| {
        let name = h.named("cri");
        h.bind(&name, &h.test_binding().names(&[&ns])).await;
        let other = h.named("cri-other");
        h.bind(
            &other,
            &h.test_binding()
                .instance(OTHER_INSTANCE)
                .names(&[&other_ns]),
        )
        .await;
        h.wait_ready(&name, "True", Duration::from_secs(60)).await;
        h.wait_ready(&other, "True", Duration::from_secs(60)).await;
        let handle = h.handle();

        let secret = wait_secret(&h.secrets(&ns), "pull Secret", |_| true).await;
        let creds = kubelet_credentials(&secret, &image).expect("an entry for the registry");
        let image_ref = cri_pull(&socket, &image, Some(&creds))
            .await
            .expect("CRI pull with the Secret's credentials");
        assert!(image_ref.starts_with("sha256:"), "{image_ref}");
        // containerd asks with the OAuth2 password grant first.
        assert!(
            realm_answers(&handle, "registry:OAuthToken").contains(&(200, None)),
            "{:?}",
            handle.log()
        );

        // A realm without the OAuth2 grant: containerd falls back to GET with Basic.
        handle.fail(
            "registry:OAuthToken",
            400,
            "unsupported_grant_type",
            Some(1),
        );
        handle.clear_log();
        cri_pull(&socket, &image, Some(&creds))
            .await
            .expect("CRI pull through the GET fallback");
        assert_eq!(
            realm_answers(&handle, "registry:OAuthToken"),
            vec![(400, Some("unsupported_grant_type".into()))]
        );
        assert!(realm_answers(&handle, "registry:Token").contains(&(200, None)));

        // The other namespace's Secret is for another instance: nothing in it names this
        // registry, so a kubelet pulls without credentials, and is refused.
        let other_secret = wait_secret(&h.secrets(&other_ns), "other Secret", |_| true).await;
        assert_eq!(kubelet_credentials(&other_secret, &image), None);
        refused(cri_pull(&socket, &image, None).await, "no credentials");
        // Even sent to this registry, the other instance's token is refused by the realm.
        let (_, (user, password, _)) = controller_common::auths(&other_secret)
            .into_iter()
            .next()
            .unwrap();
        let foreign = Creds {
            username: user,
            password,
        };
        let err = refused(
            cri_pull(&socket, &image, Some(&foreign)).await,
            "another instance's token",
        );
        let codes: Vec<_> = handle.log().into_iter().filter_map(|e| e.code).collect();
        assert!(codes.iter().any(|c| c == "OtherRegistry"), "{codes:?}");
        eprintln!("another instance's token refused: {err}");
    })
    .await;
    eprintln!("CRI test took {:?}", started.elapsed());
}

#[tokio::test]
async fn after_a_renewal_the_next_pull_uses_the_new_token_and_the_old_is_refused_once_expired() {
    let started = Instant::now();
    // 30 s tokens renewed 20 s before expiry: a renewal about 10 s after issue.
    let p = PullHarness::new("e2e-renew", 30, "20s").await;
    let h = &p.h;
    let ns = h.env.namespace().to_owned();
    let image = p.chain.app_image.clone();
    let socket = p.chain.containerd_socket.clone();
    h.with_controller(async |h| {
        let name = h.named("renew");
        h.bind(&name, &h.test_binding().names(&[&ns])).await;
        h.wait_ready(&name, "True", Duration::from_secs(60)).await;
        let secrets = h.secrets(&ns);
        let first = wait_secret(&secrets, "pull Secret", |_| true).await;
        let uid = first.metadata.uid.clone().unwrap();
        let old = kubelet_credentials(&first, &image).unwrap();
        cri_pull(&socket, &image, Some(&old))
            .await
            .expect("pull with the first token");

        let renewed = wait_secret(&secrets, "renewed Secret", |s| {
            kubelet_credentials(s, &image).is_some_and(|c| c.password != old.password)
        })
        .await;
        assert_eq!(
            renewed.metadata.uid.as_deref(),
            Some(uid.as_str()),
            "Secret recreated"
        );
        let new = kubelet_credentials(&renewed, &image).unwrap();
        cri_pull(&socket, &image, Some(&new))
            .await
            .expect("pull with the renewed token");

        // Once the old token expired the realm refuses it; the Secret's current one works.
        let handle = h.handle();
        support::wait_until(Duration::from_secs(40), "old token expired", || {
            let valid = handle.registry_token_valid(&old.password);
            async move { if valid { Err("still valid") } else { Ok(()) } }
        })
        .await;
        handle.clear_log();
        refused(
            cri_pull(&socket, &image, Some(&old)).await,
            "expired old token",
        );
        assert!(
            handle
                .log()
                .iter()
                .any(|e| e.code.as_deref() == Some("Expired")),
            "{:?}",
            handle.log()
        );
        let current = secrets.get(SECRET_NAME).await.unwrap();
        assert_eq!(
            current.metadata.uid.as_deref(),
            Some(uid.as_str()),
            "Secret recreated"
        );
        let creds = kubelet_credentials(&current, &image).unwrap();
        cri_pull(&socket, &image, Some(&creds))
            .await
            .expect("pull with the Secret's current token");
    })
    .await;
    eprintln!("renewal test took {:?}", started.elapsed());
}
