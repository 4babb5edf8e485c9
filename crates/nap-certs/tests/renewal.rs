//! Renewal before expiry: replaced on success, kept (and the failure
//! recorded) otherwise, and served from the next handshake either way.

use std::time::{Duration, SystemTime};

use nap_certs::{
    Acme, AcmeError, AcmeOptions, CertStore, RenewError, RenewalPolicy, Source, renew,
};

use crate::pebble::free_port;
use crate::support::{DAY, HttpsServer, TestCa, handshake, host};
use crate::world::AcmeWorld;

/// Stores a certificate for `name` from `ca` that expires in three days, as
/// if it had come from ACME long ago.
fn store_expiring(store: &CertStore, ca: &TestCa, name: &str) {
    let now = SystemTime::now();
    let made = ca.issue(&[name], now - DAY * 60, now + DAY * 3);
    store
        .save(&host(name), &made.check(), Source::Acme, now - DAY * 60)
        .expect("store the expiring certificate");
}

#[tokio::test]
async fn a_certificate_close_to_expiry_is_replaced_and_served_without_restart() {
    let world = AcmeWorld::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    let old_ca = TestCa::new("old test CA");
    store_expiring(&store, &old_ca, "renew.nap.test");
    let renewing = host("renew.nap.test");
    let server = HttpsServer::start(&store).await;
    let (_, pebble_root) = world.pebble.issuing_root();
    handshake(server.port, "renew.nap.test", &[old_ca.root_der()])
        .await
        .expect("the old certificate is served");

    // Due: it expires within 30 days. A week-long window would not pick it.
    let now = SystemTime::now();
    let policy = RenewalPolicy::default();
    let due = store.due(now, &policy).unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].host, renewing);
    assert_eq!(due[0].current.map(|(source, _)| source), Some(Source::Acme));
    let short = RenewalPolicy {
        renew_before: DAY * 2,
        ..policy
    };
    assert!(store.due(now, &short).unwrap().is_empty());

    let acme = Acme::new(&store, world.pebble.options(), world.challenges.clone());
    let record = renew(&store, &acme, &renewing, now)
        .await
        .unwrap_or_else(|error| panic!("{error}\npebble:\n{}", world.pebble.output()));
    let certificate = record.certificate.expect("the renewed certificate");
    assert!(
        certificate.issuer.contains("Pebble"),
        "{}",
        certificate.issuer
    );
    assert!(certificate.not_after.system_time() > now + DAY * 365);
    assert!(
        store.due(now, &policy).unwrap().is_empty(),
        "renewed, so not due"
    );
    assert!(world.responder.answered() >= 1);

    // The running server presents pebble's certificate from the next
    // handshake on, and no longer the old one.
    let presented = handshake(server.port, "renew.nap.test", &[pebble_root])
        .await
        .expect("the renewed certificate is served");
    assert!(presented.issuer.contains("Pebble"), "{}", presented.issuer);
    handshake(server.port, "renew.nap.test", &[old_ca.root_der()])
        .await
        .expect_err("the old certificate is gone");
    // One version on disk: the old one was removed after the switch.
    let versions: Vec<_> = std::fs::read_dir(dir.path().join("versions"))
        .unwrap()
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
}

#[tokio::test]
async fn a_failed_renewal_keeps_the_working_certificate_and_records_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    let ca = TestCa::new("test CA");
    store_expiring(&store, &ca, "keep.nap.test");
    let keeping = host("keep.nap.test");
    let entry = dir.path().join("hosts/keep.nap.test");
    let chain_before = std::fs::read(entry.join("chain.pem")).unwrap();
    let key_before = std::fs::read(entry.join("key.pem")).unwrap();
    let server = HttpsServer::start(&store).await;

    // The ACME server is unreachable: nothing listens on its port.
    let port = free_port();
    let mut options = AcmeOptions::new(format!("https://127.0.0.1:{port}/dir"));
    options.timeout = Duration::from_secs(10);
    let acme = Acme::new(&store, options, Default::default());
    let now = SystemTime::now();
    let error = renew(&store, &acme, &keeping, now)
        .await
        .expect_err("pebble is unreachable");
    assert!(
        matches!(
            error,
            RenewError::Acme {
                source: AcmeError::Server { .. },
                ..
            }
        ),
        "{error:?}"
    );

    // The working certificate stays, byte for byte, and is still served.
    assert_eq!(
        std::fs::read(entry.join("chain.pem")).unwrap(),
        chain_before
    );
    assert_eq!(std::fs::read(entry.join("key.pem")).unwrap(), key_before);
    let presented = handshake(server.port, "keep.nap.test", &[ca.root_der()])
        .await
        .expect("the old certificate is still served");
    assert_eq!(presented.names, ["keep.nap.test"]);

    // The record says when and why, in words an operator can act on.
    let record = store.record(&keeping).unwrap().unwrap();
    assert_eq!(
        record.certificate.expect("still there").source,
        Source::Acme
    );
    let attempt = record.last_attempt.expect("the attempt is recorded");
    let message = attempt.error.expect("with its error");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("Connection refused"), "{message}");
    let json = std::fs::read_to_string(entry.join("cert.json")).unwrap();
    assert!(json.contains("Connection refused"), "{json}");

    // Retried after the delay, not before.
    let policy = RenewalPolicy::default();
    assert!(store.due(now, &policy).unwrap().is_empty());
    let due = store
        .due(now + Duration::from_secs(2 * 3600), &policy)
        .unwrap();
    assert_eq!(due.len(), 1);
    assert!(due[0].last_error.is_some());
}
