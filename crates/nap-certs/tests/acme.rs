//! Certificates from a real ACME server (pebble) through real HTTP-01: pebble
//! resolves the host through the test's resolver and fetches the challenge
//! from the test's responder on 127.0.0.1.

use std::os::unix::fs::PermissionsExt;
use std::time::SystemTime;

use nap_certs::{Acme, AcmeError, CertStore, RenewError, RenewalPolicy, Source, renew};

use crate::support::{HttpsServer, curl, handshake, host};
use crate::world::AcmeWorld;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn a_certificate_issued_through_http01_is_served_by_sni() {
    let world = AcmeWorld::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(&dir.path().join("certs")).unwrap();
    let acme = Acme::new(&store, world.pebble.options(), world.challenges.clone());
    let shop = host("shop.nap.test");

    let record = renew(&store, &acme, &shop, SystemTime::now())
        .await
        .unwrap_or_else(|error| panic!("{error}\npebble:\n{}", world.pebble.output()));

    // pebble really fetched the challenge from the responder, and the
    // challenge is withdrawn once the order is done.
    assert!(
        world.responder.answered() >= 1,
        "pebble never asked the responder"
    );
    assert!(world.challenges.is_empty(), "challenges left published");
    let certificate = record.certificate.expect("a certificate");
    assert_eq!(certificate.source, Source::Acme);
    assert_eq!(certificate.names, ["shop.nap.test"]);
    assert!(
        certificate.issuer.contains("Pebble Intermediate CA"),
        "{}",
        certificate.issuer
    );
    assert!(record.last_attempt.expect("an attempt").error.is_none());

    // Key and account key are the daemon's secrets.
    let entry = dir.path().join("certs/hosts/shop.nap.test");
    assert_eq!(mode(&entry.join("key.pem")), 0o600);
    assert_eq!(mode(&dir.path().join("certs/acme/account.json")), 0o600);
    let chain = std::fs::read_to_string(entry.join("chain.pem")).unwrap();
    assert_eq!(
        chain.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf and intermediate"
    );

    // A real handshake, trusting only pebble's root.
    let (root_pem, root) = world.pebble.issuing_root();
    let server = HttpsServer::start(&store).await;
    let presented = handshake(server.port, "shop.nap.test", std::slice::from_ref(&root))
        .await
        .expect("the handshake verifies against pebble's root");
    assert_eq!(presented.names, ["shop.nap.test"]);
    assert!(
        presented.issuer.contains("Pebble Intermediate CA"),
        "{}",
        presented.issuer
    );

    // And curl, over HTTP/1.1 and HTTP/2 (ALPN).
    let body = curl(
        dir.path(),
        "shop.nap.test",
        server.port,
        &root_pem,
        &["--http1.1"],
    )
    .await
    .expect("curl reaches the server over HTTPS");
    assert_eq!(body, "hello shop.nap.test over HTTP/1.1\n");
    let body = curl(
        dir.path(),
        "shop.nap.test",
        server.port,
        &root_pem,
        &["--http2"],
    )
    .await
    .expect("curl reaches the server over HTTP/2");
    assert_eq!(body, "hello shop.nap.test over HTTP/2.0\n");
    // A name without a certificate is refused at the handshake.
    let error = curl(dir.path(), "other.nap.test", server.port, &root_pem, &[])
        .await
        .expect_err("no certificate for other.nap.test");
    assert!(error.contains("alert"), "{error}");

    // A second client on the same store (the daemon after a restart) uses
    // the stored account instead of making a new one, and can order a
    // certificate for several hosts at once.
    let account = std::fs::read(dir.path().join("certs/acme/account.json")).unwrap();
    let acme = Acme::new(&store, world.pebble.options(), world.challenges.clone());
    let both = [host("a.nap.test"), host("b.nap.test")];
    let issued = acme.issue(&both).await.expect("an order for two hosts");
    assert_eq!(issued.info().names, ["a.nap.test", "b.nap.test"]);
    assert_eq!(
        std::fs::read(dir.path().join("certs/acme/account.json")).unwrap(),
        account,
        "the account file was rewritten"
    );
}

#[tokio::test]
async fn a_failed_validation_is_recorded_with_the_reason_and_retried_later() {
    // The responder answers from a registry the client does not publish to,
    // so pebble connects and gets 404.
    let world = AcmeWorld::start_answering_from(Default::default(), Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    let acme = Acme::new(&store, world.pebble.options(), world.challenges.clone());
    let blog = host("blog.nap.test");
    let now = SystemTime::now();

    let error = renew(&store, &acme, &blog, now)
        .await
        .expect_err("validation fails");
    let RenewError::Acme {
        source: AcmeError::Validation { failures },
        ..
    } = &error
    else {
        panic!("expected a validation failure, got {error}");
    };
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "blog.nap.test");
    assert!(
        failures[0].1.contains("404"),
        "pebble's reason: {failures:?}"
    );

    // The host has an entry with the failure and no certificate, is not
    // served, and is due again only after the retry delay.
    let record = store.record(&blog).unwrap().expect("an entry for the host");
    assert!(record.certificate.is_none());
    let attempt = record.last_attempt.expect("the attempt is recorded");
    let recorded = attempt.error.expect("with its error");
    assert!(
        recorded.contains("blog.nap.test") && recorded.contains("404"),
        "{recorded}"
    );
    assert!(!store.resolver().serves(&blog));
    let policy = RenewalPolicy::default();
    assert!(store.due(now, &policy).unwrap().is_empty());
    let later = now + policy.retry_failed_after + std::time::Duration::from_secs(1);
    let due = store.due(later, &policy).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].host, blog);
    assert!(due[0].current.is_none());
    assert!(due[0].last_error.as_deref().unwrap_or("").contains("404"));
}

/// The daemon runs renewals on spawned tasks, so the futures must be `Send`
/// and the client shareable between tasks.
#[test]
fn the_client_and_its_futures_can_move_between_tasks() {
    fn send<T: Send>(_: &T) {}
    fn share<T: Send + Sync>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    let acme = Acme::new(
        &store,
        nap_certs::AcmeOptions::default(),
        Default::default(),
    );
    share(&store);
    share(&acme);
    let shop = host("shop.nap.test");
    let renewing = renew(&store, &acme, &shop, SystemTime::now());
    send(&renewing);
    let issuing = acme.issue(std::slice::from_ref(&shop));
    send(&issuing);
}
