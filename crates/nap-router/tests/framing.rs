//! The HTTP/1.1 path at the byte level: raw requests to the router, and raw-TCP
//! instances that answer bytes chosen to break it. Each case pins what the client
//! gets and what the instance saw, so a smuggled request or a desynchronised
//! connection shows up as bytes where none should be.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{Backend, Router, raw, read_head, read_response};

/// A safety net only: a broken router would otherwise hang these tests.
const HANG: Duration = Duration::from_secs(60);

/// The status line of a response (empty if there was none).
fn status_line(response: &str) -> &str {
    response.split("\r\n").next().unwrap_or_default()
}

/// Requests that must be refused before anything reaches the instance: each is sent
/// with a second request behind it, which must not be served either.
#[tokio::test]
async fn smuggling_attempts_are_refused_and_nothing_reaches_the_instance() {
    let router = Router::start().await;
    let backend = Backend::start("web").await;
    router.apps.set("web", &[backend.addr]);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: web.localhost\r\n\r\n";
    let long = format!("X-Long: {}\r\n", "a".repeat(70 * 1024));
    let many = "X-Many: 1\r\n".repeat(101);
    let cases: Vec<(String, &str)> = [
        ("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", "400"),
        ("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", "400"),
        ("Content-Length: 3\r\nContent-Length: 3\r\n", "400"),
        ("Content-Length: 3\r\nContent-Length: 4\r\n", "400"),
        ("Content-Length: +3\r\n", "400"),
        ("Content-Length: -1\r\n", "400"),
        ("Content-Length: 3, 3\r\n", "400"),
        ("Content-Length: 0x3\r\n", "400"),
        ("Content-Length: 18446744073709551616\r\n", "400"),
        ("Transfer-Encoding: chunked, gzip\r\n", "400"),
        ("Transfer-Encoding: gzip\r\n", "400"),
        ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "400"),
        ("Transfer-Encoding: xchunked\r\n", "501"),
        ("X-Folded: a\r\n b\r\n", "400"),
        ("X-Space : a\r\n", "400"),
        ("X-Nul: a\0b\r\n", "400"),
        ("X-Cr: a\rb\r\n", "400"),
        (long.as_str(), "431"),
        (many.as_str(), "431"),
    ]
    .into_iter()
    .map(|(headers, status)| {
        (
            format!("POST / HTTP/1.1\r\nHost: web.localhost\r\n{headers}\r\nabc{smuggled}"),
            status,
        )
    })
    .chain([(
        format!("POST / HTTP/1.0\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n{smuggled}"),
        "400",
    )])
    .collect();
    for (request, status) in &cases {
        let response = raw(&router, request.as_bytes()).await;
        let line = status_line(&response);
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:.120?} got {line:?}"
        );
        assert!(response.contains("\r\nconnection: close\r\n"), "{response}");
    }
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        0,
        "a refused request reached the instance"
    );
    router.stopped().await.expect("stops");
}

/// An instance that records every byte it receives and never answers.
async fn recorder() -> (SocketAddr, Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let record = record.clone();
            tokio::spawn(async move {
                let mut bytes = [0u8; 4096];
                while let Ok(read) = stream.read(&mut bytes).await {
                    if read == 0 {
                        break;
                    }
                    record
                        .lock()
                        .expect("lock")
                        .extend_from_slice(&bytes[..read]);
                }
            });
        }
    });
    (addr, seen, task)
}

/// A chunked body streams to the instance as it comes; a bad chunk stops it there:
/// the client gets 400 and its connection closes, and what followed never reaches
/// the instance as a request.
#[tokio::test]
async fn a_malformed_chunk_ends_the_request_and_nothing_after_it_passes() {
    let router = Router::start().await;
    let (instance, seen, _task) = recorder().await;
    router.apps.set("web", &[instance]);
    for chunk in [
        "-1\r\nabc\r\n",
        "0x3\r\nabc\r\n",
        "10000000000000003\r\nabc\r\n",
        "3\r\nabcGET",
        "3\nabc\r\n",
        "3 x\r\nabc\r\n",
    ] {
        let request = format!(
            "POST /upload HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
             {chunk}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web.localhost\r\n\r\n"
        );
        let response = tokio::time::timeout(HANG, raw(&router, request.as_bytes()))
            .await
            .expect("the connection closes");
        assert!(
            status_line(&response).starts_with("HTTP/1.1 400 "),
            "{chunk:?}: {response}"
        );
    }
    let seen = String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
    assert!(seen.contains("POST /upload HTTP/1.1\r\n"), "{seen}");
    assert!(!seen.contains("smuggled"), "{seen}");
    router.stopped().await.expect("stops");
}

/// An instance that answers each request on a connection with the next of `answers`
/// (read the request head, write the bytes); after the last it closes. Every
/// connection starts again from the first answer.
async fn scripted(answers: &[&'static str]) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let answers: Vec<&'static str> = answers.to_vec();
    let task = tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let answers = answers.clone();
            tokio::spawn(async move {
                for answer in answers {
                    if read_head(&mut stream).await.unwrap_or_default().is_empty() {
                        return;
                    }
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// One keep-alive connection to the router: sends a GET for `path` and reads the
/// response head and its `Content-Length` body.
async fn get_on(stream: &mut TcpStream, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: web.localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    tokio::time::timeout(HANG, read_response(stream))
        .await
        .expect("an answer")
}

/// What a hostile instance answers, and the status line the client must get (or
/// `None`: the connection must be closed). The client's connection is then asked
/// again, on a fresh instance connection that answers properly.
#[tokio::test]
async fn a_hostile_instance_cannot_split_or_desync_the_client_connection() {
    let good = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal";
    let large = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
            "a".repeat(70 * 1024)
        )
        .into_boxed_str(),
    );
    for (answer, expected) in [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nevil\r\n0\r\n\r\n",
            "HTTP/1.1 502 ",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nevil!",
            "HTTP/1.1 502 ",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 4x\r\n\r\nevil",
            "HTTP/1.1 502 ",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nevil\r\n0\r\n\r\n",
            "HTTP/1.1 502 ",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nevil",
            "HTTP/1.1 502 ",
        ),
        (
            "HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: evil=1\r\nContent-Length: 4\r\n\r\nevil",
            "HTTP/1.1 502 ",
        ),
        (large, "HTTP/1.1 502 "),
        // More body than it said: the extra bytes must not become an answer.
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
            "HTTP/1.1 200 ",
        ),
    ] {
        let router = Router::start().await;
        let (instance, _task) = scripted(&[answer, good]).await;
        let (fresh, _fresh_task) = scripted(&[good, good]).await;
        router.apps.set("web", &[instance]);
        let mut stream = TcpStream::connect(router.addr).await.expect("connect");
        let (head, body) = get_on(&mut stream, "/first").await;
        assert!(head.starts_with(expected), "{answer:.80?}: {head}");
        assert!(
            !head.contains("evil") && !body.contains("evil"),
            "{head}{body}"
        );
        if expected == "HTTP/1.1 200 " {
            // The instance's connection, with bytes no request asked for, is not used
            // again: a new one gets the script's first answer again.
            let (head, body) = get_on(&mut stream, "/again").await;
            assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
            assert_eq!(body, "ok");
        }
        // The next answer on this client connection is its own.
        router.apps.set("web", &[fresh]);
        let (head, body) = get_on(&mut stream, "/second").await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{answer:.80?}: {head}");
        assert_eq!(body, "real", "{answer:.80?}");
        router.stopped().await.expect("stops");
    }
}

/// An instance that dies in the middle of a body: the client's connection is closed,
/// not left waiting for the rest.
#[tokio::test]
async fn an_instance_that_dies_mid_body_closes_the_client_connection() {
    let router = Router::start().await;
    for answer in [
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nshort",
    ] {
        let (instance, _task) = scripted(&[answer]).await;
        router.apps.set("web", &[instance]);
        let mut stream = TcpStream::connect(router.addr).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: web.localhost\r\n\r\n")
            .await
            .expect("send");
        let mut response = Vec::new();
        tokio::time::timeout(HANG, stream.read_to_end(&mut response))
            .await
            .expect("the client's connection is closed")
            .expect("read");
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        assert!(response.contains("short"), "{response}");
    }
    router.stopped().await.expect("stops");
}

/// Framing that must pass through: interim responses, bodies that end with the
/// connection, responses without a body; for HTTP/1.1 and HTTP/1.0 clients.
#[tokio::test]
async fn responses_are_framed_for_the_client_that_asked() {
    let router = Router::start().await;
    for (answer, request, expected) in [
        (
            "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "GET / HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\n|content-length: 2|\r\n\r\nok",
        ),
        (
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
            "GET / HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\n|transfer-encoding: chunked\r\n|\r\n\r\nb\r\nuntil close\r\n0\r\n\r\n",
        ),
        (
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
            "GET / HTTP/1.0\r\nHost: web.localhost\r\n\r\n",
            "HTTP/1.0 200 OK\r\n|\r\n|\r\n\r\nuntil close",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: web.localhost\r\nConnection: keep-alive\r\n\r\n",
            "HTTP/1.0 200 OK\r\n|connection: close\r\n|\r\n\r\nhello",
        ),
        (
            "HTTP/1.1 204 No Content\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n|\r\n|\r\n\r\n",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            "HEAD / HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\n|content-length: 5|\r\n\r\n",
        ),
    ] {
        let (instance, _task) = scripted(&[answer]).await;
        router.apps.set("web", &[instance]);
        let response = tokio::time::timeout(HANG, raw(&router, request.as_bytes()))
            .await
            .expect("the connection closes");
        // The pieces in order: status line, a header, the end of the head and body.
        let pieces: Vec<&str> = expected.split('|').collect();
        assert!(response.starts_with(pieces[0]), "{answer:?}: {response:?}");
        assert!(
            response
                .to_ascii_lowercase()
                .contains(&pieces[1].to_ascii_lowercase()),
            "{answer:?}: {response:?}"
        );
        // Chunk sizes are hexadecimal in either case.
        assert!(
            response.to_ascii_lowercase().ends_with(pieces[2]),
            "{answer:?}: {response:?}"
        );
    }
    router.stopped().await.expect("stops");
}

/// Requests on one connection: pipelined, HTTP/1.0 keep-alive, `Expect:
/// 100-continue`, a chunked body, and the answers come in order.
#[tokio::test]
async fn one_connection_carries_requests_in_order() {
    let router = Router::start().await;
    let backend = Backend::start("web").await;
    router.apps.set("web", &[backend.addr]);
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    stream
        .write_all(
            b"POST /length HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 1\r\n\r\na\
              POST /length HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
              PUT /length HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 3\r\n\r\nxyz",
        )
        .await
        .expect("send");
    for expected in ["1", "5", "3"] {
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(body, expected);
    }
    // `Expect: 100-continue`: the router asks for the body itself.
    stream
        .write_all(b"POST /length HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        .await
        .expect("send");
    let interim = read_head(&mut stream).await.expect("100 Continue");
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"body").await.expect("send the body");
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, "4");
    // HTTP/1.0 with keep-alive keeps the connection; without, closes it.
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: web.localhost\r\nConnection: keep-alive\r\n\r\n")
        .await
        .expect("send");
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.0 200 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nconnection: keep-alive\r\n"),
        "{head}"
    );
    assert_eq!(body, "web");
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: web.localhost\r\n\r\n")
        .await
        .expect("send");
    let mut rest = Vec::new();
    tokio::time::timeout(HANG, stream.read_to_end(&mut rest))
        .await
        .expect("closed after an HTTP/1.0 answer")
        .expect("read");
    assert!(String::from_utf8_lossy(&rest).ends_with("\r\n\r\nweb"));
    router.stopped().await.expect("stops");
}

/// A 101 with bytes of the new protocol right behind it, and a client that sent its
/// first bytes with the handshake: neither side loses them.
#[tokio::test]
async fn bytes_sent_with_an_upgrade_are_not_lost() {
    let router = Router::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let instance = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let head = read_head(&mut stream).await.expect("handshake");
        stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello")
            .await
            .expect("101");
        let mut early = [0u8; 5];
        stream.read_exact(&mut early).await.expect("early bytes");
        (head, early)
    });
    router.apps.set("web", &[instance]);
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: web.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly")
        .await
        .expect("send");
    let head = read_head(&mut stream).await.expect("101");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let mut hello = [0u8; 5];
    stream
        .read_exact(&mut hello)
        .await
        .expect("the instance's first bytes");
    assert_eq!(&hello, b"hello");
    let (seen, early) = task.await.expect("instance");
    assert!(
        seen.to_ascii_lowercase().contains("\r\nupgrade: echo\r\n"),
        "{seen}"
    );
    assert_eq!(&early, b"early");
    // The tunnel ends with the client's side.
    drop(stream);
    router.stopped().await.expect("stops");
}
