//! Slow clients, too many clients, and stopping.

use std::time::Duration;

use hyper::StatusCode;
use nap_router::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
