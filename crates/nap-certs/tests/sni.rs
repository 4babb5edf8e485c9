//! The certificate is chosen by the name the client asks for (SNI), from
//! what the store holds at the moment of the handshake.

use std::time::SystemTime;

use nap_certs::{CertStore, Source};

use crate::support::{HttpsServer, TestCa, handshake, host, upload};

#[tokio::test]
async fn each_host_is_served_its_own_certificate_and_unknown_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    let ca = TestCa::new("test CA");
    let roots = [ca.root_der()];
    upload(&store, &host("one.nap.test"), &ca.leaf(&["one.nap.test"]));
    upload(&store, &host("two.nap.test"), &ca.leaf(&["two.nap.test"]));
    let server = HttpsServer::start(&store).await;

    let one = handshake(server.port, "one.nap.test", &roots)
        .await
        .expect("one");
    assert_eq!(one.names, ["one.nap.test"]);
    let two = handshake(server.port, "TWO.nap.test", &roots)
        .await
        .expect("two");
    assert_eq!(two.names, ["two.nap.test"]);
    assert_eq!(
        store.resolver().hosts(),
        [host("one.nap.test"), host("two.nap.test")]
    );

    let unknown = handshake(server.port, "three.nap.test", &roots)
        .await
        .expect_err("no certificate for three.nap.test");
    assert!(unknown.to_string().contains("alert"), "{unknown}");
    // A client connecting by address sends no SNI.
    let no_sni = handshake(server.port, "127.0.0.1", &roots)
        .await
        .expect_err("no SNI, no certificate");
    assert!(no_sni.to_string().contains("alert"), "{no_sni}");

    // Removing a host stops serving it at the next handshake; the other
    // host is untouched.
    assert!(store.remove(&host("one.nap.test")).unwrap());
    assert!(
        !store.remove(&host("one.nap.test")).unwrap(),
        "already gone"
    );
    handshake(server.port, "one.nap.test", &roots)
        .await
        .expect_err("removed");
    handshake(server.port, "two.nap.test", &roots)
        .await
        .expect("still served");
    assert!(!dir.path().join("hosts/one.nap.test").exists());
}

#[tokio::test]
async fn an_uploaded_certificate_replaces_the_served_one_at_the_next_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    let first_ca = TestCa::new("first CA");
    let second_ca = TestCa::new("second CA");
    let web = host("web.nap.test");
    upload(&store, &web, &first_ca.leaf(&["web.nap.test"]));
    let server = HttpsServer::start(&store).await;
    handshake(server.port, "web.nap.test", &[first_ca.root_der()])
        .await
        .expect("the first certificate");

    upload(&store, &web, &second_ca.leaf(&["web.nap.test"]));
    let presented = handshake(server.port, "web.nap.test", &[second_ca.root_der()])
        .await
        .expect("the second certificate, without a restart");
    assert_eq!(presented.issuer, "CN=second CA");
}

#[tokio::test]
async fn a_wildcard_certificate_is_stored_for_each_host_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    let ca = TestCa::new("test CA");
    let checked = ca.leaf(&["*.shop.test"]).check();
    let app_hosts = [
        host("eu.shop.test"),
        host("shop.test"),
        host("us.shop.test"),
    ];
    let covered = checked.covered_hosts(&app_hosts).unwrap();
    assert_eq!(covered, [host("eu.shop.test"), host("us.shop.test")]);
    for covered_host in &covered {
        store
            .save(covered_host, &checked, Source::Uploaded, SystemTime::now())
            .unwrap();
    }
    let server = HttpsServer::start(&store).await;
    for name in ["eu.shop.test", "us.shop.test"] {
        let presented = handshake(server.port, name, &[ca.root_der()])
            .await
            .expect(name);
        assert_eq!(presented.names, ["*.shop.test"]);
    }
    handshake(server.port, "shop.test", &[ca.root_der()])
        .await
        .expect_err("the bare domain is not covered by the wildcard");
}
