//! The HTTPS listener (HTTP/1.1 and HTTP/2 by ALPN, the certificate by SNI),
//! custom hosts, redirects to HTTPS and ACME's challenge path, with curl as
//! the client.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nap_certs::{CertStore, CheckedCertificate, HostName, Source};
use nap_router::{Challenges, Options};

use crate::support::{Backend, Router, client, fetch, raw};

/// A self-signed certificate for `names`: chain and key as one PEM text.
fn self_signed(names: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().expect("a key");
    let params = rcgen::CertificateParams::new(
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )
    .expect("names");
    let certificate = params.self_signed(&key).expect("self-signed");
    format!("{}{}", certificate.pem(), key.serialize_pem())
}

/// A store in `dir` serving a certificate for each of `hosts` (each its own
/// root, written to `dir/HOST.pem` for curl to trust).
fn store_with(dir: &Path, hosts: &[&str]) -> CertStore {
    let store = CertStore::open(&dir.join("certs")).expect("open the store");
    for host in hosts {
        let pem = self_signed(&[host]);
        let checked = CheckedCertificate::parse(pem.as_bytes(), SystemTime::now())
            .expect("a valid certificate");
        let name = HostName::parse(host).expect("a host name");
        store
            .save(&name, &checked, Source::Uploaded, SystemTime::now())
            .expect("save");
        std::fs::write(dir.join(format!("{host}.pem")), checked.chain_pem()).expect("root");
    }
    store
}

async fn https_router(store: &CertStore, options: Options) -> Router {
    let acceptor = store
        .https_acceptor(Duration::from_secs(5))
        .expect("an acceptor");
    Router::start_https(options, acceptor).await
}

/// `curl https://HOST:PORT/PATH` against 127.0.0.1 trusting `dir/HOST.pem`;
/// `Ok((body, HTTP version))` or `Err(curl's message)`.
async fn curl(
    dir: &Path,
    host: &str,
    port: u16,
    path: &str,
    extra: &[&str],
) -> Result<(String, String), String> {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(dir.join(format!("{host}.pem")))
        .args(["--write-out", "\n%{http_version}"])
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .await
        .expect("run curl");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, version) = text.rsplit_once('\n').expect("curl's --write-out");
    Ok((body.to_owned(), version.to_owned()))
}

/// A plain-HTTP GET with `Host: host`; status, Location and body.
async fn plain(router: &Router, host: &str, path: &str) -> (StatusCode, Option<String>, String) {
    let request = Request::get(format!("http://{}{path}", router.addr))
        .header("host", host)
        .body(Default::default())
        .expect("request");
    let response = client().request(request).await.expect("through the router");
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|value| value.to_str().expect("text").to_owned());
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        location,
        String::from_utf8(body.to_vec()).expect("UTF-8"),
    )
}

#[tokio::test]
async fn https_serves_http1_and_http2_and_says_so_to_the_instance() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with(dir.path(), &["www.example.test"]);
    let router = https_router(&store, Options::default()).await;
    let backend = Backend::start("web-1").await;
    router.apps.set("web", &[backend.addr]);
    router.apps.set_host("www.example.test", "web", false);
    let port = router.https.expect("an HTTPS listener").port();

    for (extra, version) in [(&["--http1.1"][..], "1.1"), (&["--http2"][..], "2")] {
        let (headers, used) = curl(dir.path(), "www.example.test", port, "/headers", extra)
            .await
            .expect("curl over HTTPS");
        assert_eq!(used, version, "{headers}");
        assert!(headers.contains("x-forwarded-proto: https\n"), "{headers}");
        assert!(
            headers.contains(&format!("host: www.example.test:{port}\n")),
            "{headers}"
        );
        assert!(
            headers.contains("x-forwarded-host: www.example.test"),
            "{headers}"
        );
        let (name, _) = curl(dir.path(), "www.example.test", port, "/", extra)
            .await
            .expect("curl over HTTPS");
        assert_eq!(name, "web-1");
    }
    // A request body over HTTP/2 reaches the instance whole.
    let (length, _) = curl(
        dir.path(),
        "www.example.test",
        port,
        "/length",
        &["--http2", "--data-binary", "twelve bytes"],
    )
    .await
    .expect("a POST over HTTP/2");
    assert_eq!(length, "12");

    // Plain HTTP says http.
    let (_, _, headers) = plain(&router, "www.example.test", "/headers").await;
    assert!(headers.contains("x-forwarded-proto: http\n"), "{headers}");
    router.stopped().await.expect("stops cleanly");
}

#[tokio::test]
async fn the_certificate_is_chosen_by_sni_and_a_host_without_one_gets_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with(dir.path(), &["one.example.test", "two.example.test"]);
    let router = https_router(&store, Options::default()).await;
    let (one, two) = (Backend::start("one").await, Backend::start("two").await);
    router.apps.set("one", &[one.addr]);
    router.apps.set("two", &[two.addr]);
    router.apps.set_host("one.example.test", "one", false);
    router.apps.set_host("two.example.test", "two", false);
    router.apps.set_host("bare.example.test", "two", false);
    let port = router.https.expect("HTTPS").port();
    // Each is verified against its own self-signed root: the other's would fail.
    for host in ["one", "two"] {
        let (body, _) = curl(dir.path(), &format!("{host}.example.test"), port, "/", &[])
            .await
            .expect("the host's own certificate");
        assert_eq!(body, host);
    }
    std::fs::copy(
        dir.path().join("one.example.test.pem"),
        dir.path().join("bare.example.test.pem"),
    )
    .expect("copy");
    let refused = curl(dir.path(), "bare.example.test", port, "/", &[]).await;
    assert!(refused.is_err(), "{refused:?}");
    // The plain listener still routes it.
    let (status, _, body) = plain(&router, "bare.example.test", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "two"));
    router.stopped().await.expect("stops cleanly");
}

#[tokio::test]
async fn custom_hosts_are_routed_like_the_app_name() {
    let router = Router::start().await;
    let backend = Backend::start("web-1").await;
    router.apps.set("web", &[backend.addr]);
    router.apps.set_host("www.example.test", "web", false);
    router.apps.set_host("orphan.example.test", "gone", false);
    let port = router.addr.port();
    for host in [
        "www.example.test".to_owned(),
        format!("WWW.Example.TEST:{port}"),
        "www.example.test.".to_owned(),
        format!("web.localhost:{port}"),
    ] {
        let (status, _, body) = plain(&router, &host, "/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "web-1"), "{host}");
    }
    for host in ["orphan.example.test", "example.test", "w.www.example.test"] {
        let (status, _, body) = plain(&router, host, "/").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{host}: {body}");
    }
    // An absolute-form request names its host in the target.
    let response = raw(
        &router,
        b"GET http://www.example.test/ HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.ends_with("web-1"), "{response}");
    router.stopped().await.expect("stops cleanly");
}

#[tokio::test]
async fn plain_http_for_a_redirected_host_gets_a_308_to_https() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with(dir.path(), &["www.example.test"]);
    let router = https_router(&store, Options::default()).await;
    let backend = Backend::start("web-1").await;
    router.apps.set("web", &[backend.addr]);
    router.apps.set_host("www.example.test", "web", true);
    let https = router.https.expect("HTTPS").port();

    let (status, location, body) = plain(&router, "www.example.test:80", "/a/b?c=d&e").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT, "{body}");
    let expected = format!("https://www.example.test:{https}/a/b?c=d&e");
    assert_eq!(location.as_deref(), Some(expected.as_str()));
    // A POST is redirected too, without reaching the app (308 keeps the method).
    let request = Request::post(format!("http://{}/length", router.addr))
        .header("host", "WWW.example.test")
        .body(http_body_util::Full::from("data"))
        .expect("request");
    let (status, _) = fetch(&client(), request).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // The app's own name is not redirected (nap has no certificate for it).
    let (status, _, body) = plain(&router, "web.localhost", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "web-1"));
    // Over HTTPS the host is served.
    let (body, _) = curl(dir.path(), "www.example.test", https, "/", &[])
        .await
        .expect("HTTPS");
    assert_eq!(body, "web-1");

    // Off: plain HTTP answers again.
    router.apps.set_host("www.example.test", "web", false);
    let (status, location, body) = plain(&router, "www.example.test", "/").await;
    assert_eq!(
        (status, location, body.as_str()),
        (StatusCode::OK, None, "web-1")
    );
    router.stopped().await.expect("stops cleanly");
}

#[tokio::test]
async fn a_redirect_without_an_https_listener_has_nowhere_to_go() {
    let router = Router::start().await;
    let backend = Backend::start("web-1").await;
    router.apps.set("web", &[backend.addr]);
    router.apps.set_host("www.example.test", "web", true);
    let (status, location, _) = plain(&router, "www.example.test", "/").await;
    assert_eq!((status, location), (StatusCode::SERVICE_UNAVAILABLE, None));
    router.stopped().await.expect("stops cleanly");
}

#[tokio::test]
async fn the_acme_challenge_path_is_nap_s_before_routing_and_redirects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with(dir.path(), &["www.example.test"]);
    let options = Options {
        challenges: Some(Challenges::new()),
        ..Options::default()
    };
    let router = https_router(&store, options).await;
    let backend = Backend::start("web-1").await;
    router.apps.set("web", &[backend.addr]);
    router.apps.set_host("www.example.test", "web", true);
    router.apps.set_host("plain.example.test", "web", false);
    for host in [
        "www.example.test",
        "plain.example.test",
        "web.localhost",
        "nobody.test",
    ] {
        let (status, location, body) =
            plain(&router, host, "/.well-known/acme-challenge/unknown-token").await;
        assert_eq!(
            (status, location, body.as_str()),
            (
                StatusCode::NOT_FOUND,
                None,
                "404 Not Found: no such ACME challenge\n"
            ),
            "{host}"
        );
    }
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the app never saw them"
    );
    // Other paths under .well-known are the app's.
    let (status, _, body) = plain(&router, "plain.example.test", "/.well-known/other").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "web-1"));
    // Over HTTPS the path is the app's, as ACME never asks there.
    let port = router.https.expect("HTTPS").port();
    let (body, _) = curl(
        dir.path(),
        "www.example.test",
        port,
        "/.well-known/acme-challenge/unknown-token",
        &[],
    )
    .await
    .expect("HTTPS");
    assert_eq!(body, "web-1");
    router.stopped().await.expect("stops cleanly");
}

/// A request body that sends `first` and then nothing, never ending.
struct Stalling {
    first: Option<Bytes>,
}

impl hyper::body::Body for Stalling {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        match self.first.take() {
            Some(bytes) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(bytes)))),
            // Nothing will wake it: the client just stops sending.
            None => std::task::Poll::Pending,
        }
    }
}

/// An HTTP/2 connection over TLS to the router's HTTPS port, trusting `dir/HOST.pem`.
async fn http2_connection(
    dir: &Path,
    host: &str,
    port: u16,
) -> hyper::client::conn::http2::SendRequest<BoxBody<Bytes, std::convert::Infallible>> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(dir.join(format!("{host}.pem"))).expect("the root");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(&pem).expect("PEM"))
        .expect("a usable root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring's versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).expect("a name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("the TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("the HTTP/2 handshake");
    tokio::spawn(connection);
    send
}

#[tokio::test]
async fn an_http2_stream_that_stalls_its_body_is_ended_and_the_others_go_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with(dir.path(), &["www.example.test"]);
    let options = Options {
        body_timeout: Duration::from_millis(300),
        ..Options::default()
    };
    let router = https_router(&store, options).await;
    let backend = Backend::start("web-1").await;
    router.apps.set("web", &[backend.addr]);
    router.apps.set_host("www.example.test", "web", false);
    let port = router.https.expect("HTTPS").port();
    let mut send = http2_connection(dir.path(), "www.example.test", port).await;
    let base = format!("https://www.example.test:{port}");
    let get = |send: &mut hyper::client::conn::http2::SendRequest<_>| {
        let request = Request::get(format!("{base}/"))
            .body(Full::default().boxed())
            .expect("request");
        let response = send.send_request(request);
        async move {
            let response = response.await.expect("a GET over HTTP/2");
            let status = response.status();
            let body = response.into_body().collect().await.expect("its body");
            (status, body.to_bytes())
        }
    };
    // Two requests that say 1,000 bytes, send 10 and then nothing: a POST, whose
    // body streams to the instance (its /length reads until the end), and a PUT,
    // whose body the router reads first (small and idempotent: kept for a retry).
    let mut stalled = Vec::new();
    for method in ["POST", "PUT"] {
        let request = Request::builder()
            .method(method)
            .uri(format!("{base}/length"))
            .header("content-length", "1000")
            .body(
                Stalling {
                    first: Some(Bytes::from_static(b"0123456789")),
                }
                .boxed(),
            )
            .expect("request");
        stalled.push((method, tokio::spawn(send.send_request(request))));
    }
    assert_eq!(get(&mut send).await, (StatusCode::OK, Bytes::from("web-1")));
    for (method, answer) in stalled {
        let answer = tokio::time::timeout(Duration::from_secs(20), answer)
            .await
            .unwrap_or_else(|_| panic!("the stalled {method} stream did not end"))
            .expect("the request task");
        match answer {
            Ok(response) => assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT, "{method}"),
            Err(error) => panic!("the stalled {method} stream was not answered: {error}"),
        }
    }
    // The connection still serves.
    assert_eq!(get(&mut send).await, (StatusCode::OK, Bytes::from("web-1")));
    router.stopped().await.expect("stops cleanly");
}
