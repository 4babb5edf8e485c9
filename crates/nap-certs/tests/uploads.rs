//! What `certs:add` is given on stdin: accepted key types, and each refusal
//! with its message.

use std::time::SystemTime;

use nap_certs::{CertStore, CheckError, CheckedCertificate, MAX_INPUT_BYTES};

use crate::support::{
    DAY, HttpsServer, Made, TestCa, client_only_params, handshake, host, openssl_self_signed, run,
    self_signed, upload, valid_for,
};

/// Checks `input` at the current time and expects `expected`, whose message
/// must contain `words`.
#[track_caller]
fn check_refused(input: &[u8], expected: CheckError, words: &str) {
    let error = CheckedCertificate::parse(input, SystemTime::now()).expect_err("refused");
    assert_eq!(error, expected);
    let message = error.to_string();
    assert!(
        message.contains(words),
        "message {message:?} lacks {words:?}"
    );
}

#[test]
fn a_key_that_does_not_match_is_refused() {
    let one = valid_for(&["a.nap.test"], 5);
    let other = valid_for(&["a.nap.test"], 5);
    let mismatched = Made {
        chain_pem: one.chain_pem,
        key_pem: other.key_pem,
    };
    check_refused(
        &mismatched.bundle(),
        CheckError::KeyMismatch,
        "does not match",
    );
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused_with_the_date() {
    let now = SystemTime::now();
    let expired = self_signed(&["old.nap.test"], now - DAY * 30, now - DAY);
    let error = CheckedCertificate::parse(&expired.bundle(), now).unwrap_err();
    let CheckError::Expired { not_after } = &error else {
        panic!("expected expired, got {error}");
    };
    assert_eq!(
        error.to_string(),
        format!("the certificate expired on {not_after}")
    );
    assert!(
        not_after.to_string().ends_with('Z'),
        "an RFC 3339 date: {not_after}"
    );

    let future = self_signed(&["new.nap.test"], now + DAY, now + DAY * 30);
    let error = CheckedCertificate::parse(&future.bundle(), now).unwrap_err();
    assert!(matches!(error, CheckError::NotYetValid { .. }), "{error}");
    assert!(error.to_string().contains("not valid yet"), "{error}");
    // The same certificate is fine once its time has come.
    CheckedCertificate::parse(&future.bundle(), now + DAY * 2).expect("valid then");
}

#[test]
fn garbage_and_broken_pem_are_refused() {
    check_refused(
        b"hello, this is not a certificate\n",
        CheckError::NoCertificate,
        "no certificate",
    );
    check_refused(b"", CheckError::NoCertificate, "BEGIN CERTIFICATE");
    check_refused(
        b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
        CheckError::Pem("a block is not valid base64".into()),
        "not valid PEM",
    );
    check_refused(
        b"-----BEGIN CERTIFICATE-----\nMIIB\n",
        CheckError::Pem("the block 'CERTIFICATE' has no END line".into()),
        "no END line",
    );
    let key = valid_for(&["x.nap.test"], 1).key_pem;
    let not_x509 =
        format!("-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n{key}");
    let error = CheckedCertificate::parse(not_x509.as_bytes(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(error, CheckError::BadCertificate { position: 1, .. }),
        "{error}"
    );
    let huge = vec![b'a'; MAX_INPUT_BYTES + 1];
    check_refused(
        &huge,
        CheckError::TooLarge {
            size: MAX_INPUT_BYTES + 1,
            limit: MAX_INPUT_BYTES,
        },
        "bytes",
    );
}

#[test]
fn a_missing_extra_or_encrypted_key_is_refused() {
    let made = valid_for(&["k.nap.test"], 1);
    check_refused(
        made.chain_pem.as_bytes(),
        CheckError::NoKey,
        "no private key",
    );
    let two_keys = format!(
        "{}{}{}",
        made.chain_pem,
        made.key_pem,
        valid_for(&["k.nap.test"], 1).key_pem
    );
    check_refused(
        two_keys.as_bytes(),
        CheckError::SeveralKeys { count: 2 },
        "2 private keys",
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain.pem"), &made.key_pem).unwrap();
    let encrypted = run(
        "openssl",
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "plain.pem",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:secret",
        ],
        dir.path(),
    );
    assert!(encrypted.contains("ENCRYPTED PRIVATE KEY"));
    let input = format!("{}{encrypted}", made.chain_pem);
    check_refused(input.as_bytes(), CheckError::EncryptedKey, "openssl pkey");
}

#[test]
fn a_chain_in_the_wrong_order_is_refused() {
    let ca = TestCa::new("order CA");
    let made = ca.leaf(&["order.nap.test"]);
    let root_first = format!(
        "{}{}{}",
        ca.root.pem(),
        made.chain_pem
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap(),
        made.key_pem
    );
    let error = CheckedCertificate::parse(root_first.as_bytes(), SystemTime::now()).unwrap_err();
    // With the root first, the key belongs to certificate 2 and certificate
    // 2 is not the root's issuer: the order is what is reported.
    assert_eq!(
        error,
        CheckError::ChainOutOfOrder {
            position: 1,
            next: 2
        }
    );
    assert!(
        error.to_string().contains("server's certificate first"),
        "{error}"
    );
}

#[test]
fn a_certificate_whose_names_do_not_cover_the_host_is_refused() {
    let checked = valid_for(&["www.nap.test", "*.api.nap.test"], 5).check();
    let hosts = [host("nap.test"), host("a.b.api.nap.test")];
    let error = checked.covered_hosts(&hosts).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the certificate is for www.nap.test, *.api.nap.test, which covers none of \
         nap.test, a.b.api.nap.test"
    );
    let some = checked
        .covered_hosts(&[
            host("v1.api.nap.test"),
            host("nap.test"),
            host("www.nap.test"),
        ])
        .unwrap();
    assert_eq!(some, [host("v1.api.nap.test"), host("www.nap.test")]);
}

#[test]
fn certificates_without_dns_names_or_for_clients_only_are_refused() {
    let now = SystemTime::now();
    let ca = TestCa::new("usage CA");
    let mut no_names = crate::support::leaf_params(&[], now - DAY, now + DAY);
    no_names
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cn-only.nap.test");
    check_refused(
        &ca.issue_with(no_names).bundle(),
        CheckError::NoDnsNames,
        "common name",
    );
    check_refused(
        &ca.issue_with(client_only_params("client.nap.test"))
            .bundle(),
        CheckError::NotForServers,
        "serverAuth",
    );
}

#[test]
fn a_p521_key_is_refused_as_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let made = openssl_self_signed(
        dir.path(),
        "p521.nap.test",
        &["ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
    );
    let error = CheckedCertificate::parse(&made.bundle(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(error, CheckError::UnsupportedKey { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("ECDSA P-256 or P-384"),
        "{error}"
    );
}

/// RSA (PKCS#8 and PKCS#1), ECDSA P-256 (SEC1) and P-384, and Ed25519 keys
/// made by openssl are accepted and really served.
#[tokio::test]
async fn rsa_ecdsa_and_ed25519_keys_are_accepted_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(&dir.path().join("certs")).unwrap();
    let kinds: [(&str, &[&str]); 4] = [
        ("rsa.nap.test", &["rsa:2048"]),
        (
            "p256.nap.test",
            &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        (
            "p384.nap.test",
            &["ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        ),
        ("ed25519.nap.test", &["ed25519"]),
    ];
    let mut roots = Vec::new();
    for (name, newkey) in kinds {
        let made = openssl_self_signed(dir.path(), name, newkey);
        upload(&store, &host(name), &made);
        roots.push((name, made));
    }
    // The same RSA and P-256 keys in their traditional encodings.
    let rsa = &roots[0].1;
    std::fs::write(dir.path().join("rsa.key"), &rsa.key_pem).unwrap();
    let pkcs1 = run(
        "openssl",
        &["rsa", "-in", "rsa.key", "-traditional"],
        dir.path(),
    );
    assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"));
    Made {
        chain_pem: rsa.chain_pem.clone(),
        key_pem: pkcs1,
    }
    .check();
    let p256 = &roots[1].1;
    std::fs::write(dir.path().join("p256.key"), &p256.key_pem).unwrap();
    let sec1 = run("openssl", &["ec", "-in", "p256.key"], dir.path());
    assert!(sec1.contains("BEGIN EC PRIVATE KEY"));
    Made {
        chain_pem: p256.chain_pem.clone(),
        key_pem: sec1,
    }
    .check();

    let server = HttpsServer::start(&store).await;
    for (name, made) in &roots {
        let root = rustls::pki_types::CertificateDer::from(
            rustls::pki_types::pem::PemObject::from_pem_slice(made.chain_pem.as_bytes())
                .map(|der: rustls::pki_types::CertificateDer<'_>| der.to_vec())
                .expect("PEM"),
        );
        let presented = handshake(server.port, name, &[root])
            .await
            .unwrap_or_else(|error| {
                panic!("{name}: {error}");
            });
        assert_eq!(presented.names, [*name]);
    }
}
