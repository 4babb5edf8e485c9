//! TLS versions, ALPN and the handshake timeout of the HTTPS listener.

use std::process::{Command, Stdio};
use std::time::Duration;

use nap_certs::{CertStore, HandshakeError, HttpsAcceptor};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::support::{HttpsServer, TestCa, client_config, handshake_with, host, upload};

/// `openssl s_client` with `args`, its output (stdout and stderr) and
/// whether the handshake succeeded.
fn s_client(port: u16, args: &[&str]) -> (bool, String) {
    let connect = format!("127.0.0.1:{port}");
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "tls.nap.test",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn server_for_tls_nap_test() -> (tempfile::TempDir, CertStore, TestCa, HttpsServer) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = CertStore::open(dir.path()).expect("open the store");
    let ca = TestCa::new("test CA");
    upload(&store, &host("tls.nap.test"), &ca.leaf(&["tls.nap.test"]));
    let server = HttpsServer::start(&store).await;
    (dir, store, ca, server)
}

#[tokio::test]
async fn tls_below_1_2_is_refused_and_1_2_and_1_3_are_served() {
    let (_dir, _store, _ca, server) = server_for_tls_nap_test().await;
    let port = server.port;
    let (tls12, tls13) = tokio::task::spawn_blocking(move || {
        (s_client(port, &["-tls1_2"]), s_client(port, &["-tls1_3"]))
    })
    .await
    .unwrap();
    assert!(
        tls12.0 && tls12.1.contains("Protocol  : TLSv1.2"),
        "{}",
        tls12.1
    );
    assert!(tls13.0 && tls13.1.contains("TLSv1.3"), "{}", tls13.1);

    // OpenSSL 3 itself no longer offers TLS 1.1 at its default security
    // level; level 0 makes it send a real TLS 1.1 (or 1.0) hello. The server
    // must answer it with an alert: rustls sends handshake_failure, as such
    // a hello lacks the signature_algorithms extension of TLS 1.2, or
    // protocol_version. "no protocols available" would be OpenSSL refusing
    // on its own side, which would prove nothing.
    for version in ["-tls1_1", "-tls1"] {
        let (succeeded, text) = tokio::task::spawn_blocking(move || {
            s_client(port, &[version, "-cipher", "DEFAULT@SECLEVEL=0"])
        })
        .await
        .unwrap();
        assert!(!succeeded, "{version} was accepted:\n{text}");
        assert!(
            text.contains("SSL alert number 40") || text.contains("SSL alert number 70"),
            "{version}: not refused by the server's alert:\n{text}"
        );
        assert!(!text.contains("no protocols available"), "{text}");
    }
}

#[tokio::test]
async fn alpn_offers_h2_then_http11_and_refuses_other_protocols() {
    let (_dir, _store, ca, server) = server_for_tls_nap_test().await;
    let roots = [ca.root_der()];
    let versions = rustls::DEFAULT_VERSIONS;
    let negotiated = |alpn: &'static [&'static [u8]]| {
        let config = client_config(&roots, versions, alpn);
        handshake_with(server.port, "tls.nap.test", config)
    };
    let both = negotiated(&[b"http/1.1", b"h2"]).await.unwrap();
    assert_eq!(
        both.alpn.as_deref(),
        Some(&b"h2"[..]),
        "the server prefers h2"
    );
    let http1 = negotiated(&[b"http/1.1"]).await.unwrap();
    assert_eq!(http1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let none = negotiated(&[]).await.unwrap();
    assert_eq!(none.alpn, None, "a client without ALPN speaks HTTP/1.1");
    let error = negotiated(&[b"spdy/3"])
        .await
        .expect_err("no common protocol");
    assert!(
        error.to_string().contains("NoApplicationProtocol"),
        "{error}"
    );

    let tls12_only = client_config(&roots, &[&rustls::version::TLS12], &[b"h2"]);
    let presented = handshake_with(server.port, "tls.nap.test", tls12_only)
        .await
        .unwrap();
    assert_eq!(presented.version, rustls::ProtocolVersion::TLSv1_2);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    let acceptor = HttpsAcceptor::new(store.server_config().unwrap(), Duration::from_millis(200));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    client.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // the start of a hello, no more
    let (accepted, _) = listener.accept().await.unwrap();
    let error = acceptor.accept(accepted).await.expect_err("times out");
    assert!(matches!(error, HandshakeError::TimedOut(_)), "{error}");
}
