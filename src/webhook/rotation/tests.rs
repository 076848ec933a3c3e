#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::Timestamp;

use super::*;

fn pair() -> Pair {
    let timings = CertTimings {
        validity: Duration::from_secs(3600),
        renew_before: Duration::from_secs(600),
        overlap: Duration::from_secs(10),
    };
    let serving_names = ServingNames {
        dns_names: vec!["acr-webhook.acr-system.svc".into()],
        ip_addresses: vec![],
    };
    let now = Timestamp::now();
    let ca = certs::mint_ca(now, &timings).unwrap();
    certs::mint_serving(&ca, now, &timings, &serving_names)
        .unwrap()
        .0
}

fn write(dir: &std::path::Path, cert: &str, key: &str) {
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
}

/// cert-manager's files caught mid-swap (the new certificate, the old key): refused, the
/// previous pair stays served; read once more, and a swap completed meanwhile is loaded.
#[tokio::test]
async fn files_that_do_not_match_keep_the_previous_pair_and_are_read_once_more() {
    let dir = std::env::temp_dir().join(format!(
        "acr-webhook-files-{}-{}",
        std::process::id(),
        Timestamp::now().as_nanosecond()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (pair(), pair());
    let slot = CertSlot::default();
    write(&dir, &a.cert, a.key.expose());
    load_files(&dir, &slot).await.unwrap();
    assert!(slot.serves(&a.cert));

    write(&dir, &b.cert, a.key.expose());
    let err = load_files(&dir, &slot).await.unwrap_err();
    assert_eq!(err.reason(), "TlsError", "{err}");
    assert!(slot.serves(&a.cert));

    // The key arrives while the first read is being retried.
    let (path, key) = (dir.join("tls.key"), b.key.expose().clone());
    let swap = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(path, key).unwrap();
    });
    std::fs::write(dir.join("tls.key"), a.key.expose()).unwrap();
    load_files(&dir, &slot).await.unwrap();
    swap.await.unwrap();
    assert!(slot.serves(&b.cert));
    std::fs::remove_dir_all(&dir).unwrap();
}
