//! Slow clients, too many clients, and stopping.

use std::time::Duration;

use hyper::StatusCode;
use nap_router::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::raw::{Instance, echo_target};
use crate::support::{Backend, Router, client, fetch, read_response, request};

/// A safety net only: these tests wait for events, and hang without it if
/// the router is broken.
const HANG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_client_slow_with_its_headers_is_cut_off() {
    let options = Options {
        header_read_timeout: Duration::from_millis(100),
        ..Options::default()
    };
    let router = Router::start_with(options).await;
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: web.localhost\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(HANG, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection stayed open");
    router.stopped().await.unwrap();
}

#[tokio::test]
async fn connections_over_the_cap_are_closed() {
    let options = Options {
        max_connections: 2,
        ..Options::default()
    };
    let router = Router::start_with(options).await;
    let backend = Backend::start("web").await;
    router.apps.set("web", &[backend.addr]);
    let ask = b"GET / HTTP/1.1\r\nHost: web.localhost\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(router.addr).await.unwrap();
        stream.write_all(ask).await.unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(body, "web");
        open.push(stream);
    }
    let mut third = TcpStream::connect(router.addr).await.unwrap();
    let _ = third.write_all(ask).await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(HANG, third.read(&mut byte))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the third connection was served"
    );
    // The two that were in are still served.
    for stream in &mut open {
        stream.write_all(ask).await.unwrap();
        let (head, _) = read_response(stream).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    }
    router.stopped().await.unwrap();
}

#[tokio::test]
async fn stopping_lets_a_request_in_progress_finish() {
    let mut router = Router::start().await;
    let backend = Backend::start("slow").await;
    router.apps.set("slow", &[backend.addr]);
    let held = tokio::spawn(fetch_owned(request(router.addr, "slow", "/hold")));
    backend.arrived().await;
    router.ask_to_stop();
    // The router stops listening first: from then on connections are refused.
    while TcpStream::connect(router.addr).await.is_ok() {
        tokio::task::yield_now().await;
    }
    backend.release();
    let (status, body) = held.await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"slow"[..]));
    tokio::time::timeout(HANG, router.stopped())
        .await
        .unwrap()
        .unwrap();
}

async fn fetch_owned(request: hyper::http::request::Builder) -> (StatusCode, hyper::body::Bytes) {
    fetch(
        &client(),
        request.body(Default::default()).expect("request"),
    )
    .await
}

#[tokio::test]
async fn a_client_that_stalls_its_body_is_cut_off() {
    let options = Options {
        body_timeout: Duration::from_millis(100),
        ..Options::default()
    };
    let router = Router::start_with(options).await;
    let instance = Instance::start(echo_target).await;
    router.apps.set("web", &[instance.addr]);
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    // A POST streams; 10 of its 1,000 bytes come, then nothing.
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(HANG, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection stayed open");
    // The instance's half of a request is not left open (nor pooled) either.
    instance.settled().await;
    assert!(
        instance.requests().is_empty(),
        "no whole request reached it"
    );
    router.stopped().await.unwrap();
}

#[tokio::test]
async fn a_client_that_never_reads_its_answer_is_cut_off() {
    let options = Options {
        body_timeout: Duration::from_millis(200),
        ..Options::default()
    };
    let router = Router::start_with(options).await;
    let (instance, wrote) = endless_instance().await;
    router.apps.set("web", &[instance]);
    // A small receive buffer, so that the client's side stops taking bytes soon
    // (loopback's own buffers would absorb tens of MiB).
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(router.addr).await.unwrap();
    stream
        .write_all(b"GET /large HTTP/1.1\r\nHost: web.localhost\r\n\r\n")
        .await
        .unwrap();
    // The router gives up on the client, and closes the instance's connection too:
    // the instance's writes fail before it has written the whole response.
    let wrote = tokio::time::timeout(HANG, wrote).await.unwrap().unwrap();
    assert!(wrote.is_err(), "the instance wrote all of it: {wrote:?}");
    // What the router had sent arrives, then the end of the connection.
    let mut received = 0u64;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(HANG, stream.read(&mut chunk))
            .await
            .unwrap()
        {
            Ok(0) | Err(_) => break,
            Ok(read) => received += read as u64,
        }
    }
    assert!(received < ENDLESS, "the client got {received} bytes");
    router.stopped().await.unwrap();
}

/// How much the endless instance writes at most: 256 MiB.
const ENDLESS: u64 = 256 * 1024 * 1024;

/// An instance that answers one request with [`ENDLESS`] bytes, chunked and made
/// as they are written; it reports how much it wrote, or how its writes failed.
async fn endless_instance() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Receiver<std::io::Result<u64>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the instance");
    let addr = listener.local_addr().expect("instance address");
    let (report, wrote) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("instance accept");
        crate::support::read_head(&mut stream)
            .await
            .expect("the request head");
        let result = async {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await?;
            let chunk = [b'x'; 64 * 1024];
            let mut written = 0u64;
            while written < ENDLESS {
                stream.write_all(b"10000\r\n").await?;
                stream.write_all(&chunk).await?;
                stream.write_all(b"\r\n").await?;
                written += chunk.len() as u64;
            }
            stream.write_all(b"0\r\n\r\n").await?;
            Ok(written)
        }
        .await;
        let _ = report.send(result);
    });
    (addr, wrote)
}
