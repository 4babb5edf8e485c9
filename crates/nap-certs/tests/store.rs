//! The files of the store: where they are, their modes, what an
//! interrupted write leaves and what the next start makes of it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::SystemTime;

use nap_certs::{CertStore, CertStoreError, Source};

use crate::support::{HttpsServer, TestCa, handshake, host, upload};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn an_entry_is_plain_files_an_operator_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let store = CertStore::open(&certs).unwrap();
    assert_eq!(mode(&certs), 0o700);
    let ca = TestCa::new("test CA");
    let made = ca.leaf(&["files.nap.test"]);
    upload(&store, &host("files.nap.test"), &made);

    let entry = certs.join("hosts/files.nap.test");
    assert_eq!(
        std::fs::read_link(&entry).unwrap(),
        Path::new("../versions/files.nap.test@1")
    );
    assert_eq!(
        std::fs::read_to_string(entry.join("chain.pem")).unwrap(),
        made.chain_pem
    );
    assert_eq!(mode(&entry.join("chain.pem")), 0o644);
    assert_eq!(mode(&entry.join("key.pem")), 0o600);
    assert_eq!(mode(&entry.join("cert.json")), 0o600);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(entry.join("cert.json")).unwrap()).unwrap();
    assert_eq!(record["host"], "files.nap.test");
    assert_eq!(record["certificate"]["source"], "uploaded");
    assert_eq!(
        record["certificate"]["names"],
        serde_json::json!(["files.nap.test"])
    );
    assert_eq!(record["certificate"]["issuer"], "CN=test CA");
    let not_after = record["certificate"]["not_after"].as_str().unwrap();
    assert!(
        not_after.len() == 20 && not_after.ends_with('Z'),
        "{not_after}"
    );
    assert!(
        record.get("last_attempt").is_none(),
        "an upload is no ACME attempt"
    );

    // Replacing makes version 2 and removes version 1.
    upload(
        &store,
        &host("files.nap.test"),
        &ca.leaf(&["files.nap.test"]),
    );
    assert_eq!(
        std::fs::read_link(&entry).unwrap(),
        Path::new("../versions/files.nap.test@2")
    );
    assert!(!certs.join("versions/files.nap.test@1").exists());
}

#[tokio::test]
async fn a_restart_serves_what_was_stored_and_clears_interrupted_writes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    {
        let store = CertStore::open(dir.path()).unwrap();
        upload(&store, &host("kept.nap.test"), &ca.leaf(&["kept.nap.test"]));
        upload(
            &store,
            &host("broken.nap.test"),
            &ca.leaf(&["broken.nap.test"]),
        );
    }
    // What a write stopped half-way leaves: a version no link points to, a
    // temporary link, a temporary file; and an entry whose key was replaced
    // by hand with one that does not match.
    std::fs::create_dir(dir.path().join("versions/kept.nap.test@7")).unwrap();
    std::os::unix::fs::symlink(
        "../versions/kept.nap.test@7",
        dir.path().join("hosts/.kept.nap.test.link"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("hosts/kept.nap.test/.key.pem.tmp-1"),
        "half",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("hosts/broken.nap.test/key.pem"),
        ca.leaf(&["broken.nap.test"]).key_pem,
    )
    .unwrap();

    let store = CertStore::open(dir.path()).unwrap();
    assert!(!dir.path().join("versions/kept.nap.test@7").exists());
    assert!(!dir.path().join("hosts/.kept.nap.test.link").exists());
    assert!(
        !dir.path()
            .join("hosts/kept.nap.test/.key.pem.tmp-1")
            .exists()
    );
    assert_eq!(
        store.resolver().hosts(),
        [host("kept.nap.test")],
        "the broken entry is not served"
    );
    assert_eq!(
        store.hosts().unwrap(),
        [host("broken.nap.test"), host("kept.nap.test")]
    );

    let server = HttpsServer::start(&store).await;
    handshake(server.port, "kept.nap.test", &[ca.root_der()])
        .await
        .expect("served after the restart");

    // The next save of the broken host repairs it.
    upload(
        &store,
        &host("broken.nap.test"),
        &ca.leaf(&["broken.nap.test"]),
    );
    handshake(server.port, "broken.nap.test", &[ca.root_der()])
        .await
        .expect("served once replaced");
}

#[test]
fn a_failure_without_certificate_makes_an_entry_that_a_later_save_completes() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    let new = host("new.nap.test");
    let now = SystemTime::now();
    let record = store.record_failure(&new, now, "ACME server down").unwrap();
    assert!(record.certificate.is_none());
    assert_eq!(store.record(&new).unwrap(), Some(record));
    assert!(!store.resolver().serves(&new));

    let checked = TestCa::new("test CA").leaf(&["new.nap.test"]).check();
    let record = store.save(&new, &checked, Source::Acme, now).unwrap();
    let attempt = record.last_attempt.expect("a successful attempt");
    assert!(attempt.error.is_none());
    assert!(store.resolver().serves(&new));
}

#[test]
fn files_nap_did_not_make_are_not_taken_for_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    std::fs::create_dir(dir.path().join("hosts/odd.nap.test")).unwrap();
    std::fs::write(dir.path().join("hosts/README"), "notes").unwrap();
    let error = store.record(&host("odd.nap.test")).unwrap_err();
    assert!(matches!(error, CertStoreError::Foreign { .. }), "{error}");
    assert!(
        error.to_string().contains("not an entry made by nap"),
        "{error}"
    );
    // Renewal still looks at the other entries.
    let now = SystemTime::now();
    upload(
        &store,
        &host("fine.nap.test"),
        &TestCa::new("test CA").leaf(&["fine.nap.test"]),
    );
    let policy = nap_certs::RenewalPolicy {
        renew_before: crate::support::DAY * 365,
        ..Default::default()
    };
    let due = store.due(now, &policy).expect("due despite the odd entry");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].host, host("fine.nap.test"));
    // A restart still works, and an upload for that host is refused rather
    // than written over the operator's directory.
    let store = CertStore::open(dir.path()).unwrap();
    let checked = TestCa::new("test CA").leaf(&["odd.nap.test"]).check();
    store
        .save(
            &host("odd.nap.test"),
            &checked,
            Source::Uploaded,
            SystemTime::now(),
        )
        .expect_err("not written over a foreign directory");
    assert!(dir.path().join("hosts/odd.nap.test").is_dir());
}
