//! Instances that answer before they have read the request's body (a 413 for an
//! upload too large, a 401 before reading anything): the client gets that answer,
//! not a 502 or a wait for the body timeout, and then the end of its connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nap_router::Options;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::support::raw::Wire;
use crate::support::{Router, read_head};
use crate::wire::SMUGGLED;

/// The bodies the clients send: far more than the sockets between router and
/// instance can hold.
const BODY: usize = 4 * 1024 * 1024;

const TOO_LARGE: &[u8] =
    b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 10\r\nConnection: close\r\n\r\ntoo large\n";

const LOG_IN: &[u8] = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 13\r\n\r\nlog in first\n";

/// A guard only: a router that waited for bodies that never come would answer
/// nothing, or close, after this instead of hanging the test. One worker: the
/// connections kept to instances are per worker, and a test that checks what
/// was kept needs its requests on the same one.
fn guarded() -> Options {
    Options {
        body_timeout: Duration::from_secs(2),
        workers: 1,
        ..Options::default()
    }
}

/// What an [`Early`] instance does after its answer.
#[derive(Clone, Copy)]
enum Then {
    /// Closes the connection, the body unread.
    Close,
    /// Keeps the connection open and reads nothing more from it.
    Hold,
}

/// An instance that reads a request's head and answers at once, without reading
/// the body.
struct Early {
    addr: SocketAddr,
    heads: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Early {
    async fn start(answer: &'static [u8], then: Then) -> Early {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the instance");
        let addr = listener.local_addr().expect("instance address");
        let heads = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = {
            let (heads, connections) = (heads.clone(), connections.clone());
            tokio::spawn(async move {
                // Dropped with the task: a held connection closes when the test ends.
                let mut held = JoinSet::new();
                loop {
                    let (mut stream, _) = listener.accept().await.expect("instance accept");
                    connections.fetch_add(1, Ordering::SeqCst);
                    let heads = heads.clone();
                    held.spawn(async move {
                        loop {
                            let head = read_head(&mut stream).await.unwrap_or_default();
                            if !head.ends_with("\r\n\r\n") {
                                return;
                            }
                            heads.fetch_add(1, Ordering::SeqCst);
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                            match then {
                                Then::Close => return,
                                Then::Hold => std::future::pending::<()>().await,
                            }
                        }
                    });
                }
            })
        };
        Early {
            addr,
            heads,
            connections,
            task,
        }
    }

    fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Early {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `head` and `body` on `writer` in a task of its own, then closes the
/// sending side (unless `then_close` is false): whether all of it went out. A
/// router that closed the connection with bytes of it unread would have reset it.
fn send(mut writer: TcpStream, head: String, body: Vec<u8>, then_close: bool) -> JoinHandle<bool> {
    tokio::spawn(async move {
        let sent = writer.write_all(head.as_bytes()).await.is_ok()
            && writer.write_all(&body).await.is_ok();
        if !then_close {
            // Neither the rest of the body nor a close: the client waits.
            std::future::pending::<()>().await;
        }
        sent && writer.shutdown().await.is_ok()
    })
}

/// `body` as chunks of 64 KiB, with the last chunk.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(body.len() + body.len() / 1024 + 16);
    for chunk in body.chunks(64 * 1024) {
        framed.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    framed
}

/// The 413 reaches the client whole, marked as the connection's last, and then the
/// connection ends; the instance saw one request head.
async fn check_refused_upload(framing: &str, body: Vec<u8>) {
    let router = Router::start_with(guarded()).await;
    let instance = Early::start(TOO_LARGE, Then::Close).await;
    router.apps.set("web", &[instance.addr]);
    let (mut wire, writer) = Wire::connect_with_writer(&router).await;
    let head = format!("POST /upload HTTP/1.1\r\nHost: web.localhost\r\n{framing}\r\n\r\n");
    let sending = send(writer, head, body, true);
    let response = wire.response(false).await;
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(response.text(), "too large\n");
    assert_eq!(response.head.get("connection"), Some("close"));
    wire.closed().await;
    assert!(sending.await.expect("the sender"), "the body was cut off");
    assert_eq!((instance.heads(), instance.connections()), (1, 1));
    router.stopped().await.expect("the router stops");
}

#[tokio::test]
async fn an_instance_that_refuses_a_large_body_at_once_is_heard() {
    check_refused_upload(&format!("Content-Length: {BODY}"), vec![b'x'; BODY]).await;
}

#[tokio::test]
async fn an_instance_that_refuses_a_large_chunked_body_at_once_is_heard() {
    check_refused_upload("Transfer-Encoding: chunked", chunked(&vec![b'x'; BODY])).await;
}

#[tokio::test]
async fn an_answer_from_an_instance_that_stops_reading_comes_before_the_body_is_done() {
    let router = Router::start_with(guarded()).await;
    let instance = Early::start(LOG_IN, Then::Hold).await;
    router.apps.set("web", &[instance.addr]);
    let (mut wire, writer) = Wire::connect_with_writer(&router).await;
    // A quarter of the body, then the client waits with its connection open.
    let head =
        format!("POST /upload HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: {BODY}\r\n\r\n");
    let sending = send(writer, head, vec![b'x'; BODY / 4], false);
    let response = wire.response(false).await;
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(response.text(), "log in first\n");
    assert_eq!(response.head.get("connection"), Some("close"));
    wire.closed().await;
    sending.abort();
    // The instance's connection, with a body half-sent on it, was not pooled: the
    // next request gets a new one (on the held one it would never be read).
    let mut next = Wire::connect(&router).await;
    next.send(b"GET / HTTP/1.1\r\nHost: web.localhost\r\n\r\n")
        .await;
    assert_eq!(next.response(false).await.status, 401);
    assert_eq!((instance.heads(), instance.connections()), (2, 2));
    router.stopped().await.expect("the router stops");
}

#[tokio::test]
async fn a_client_that_sends_on_after_an_early_answer_gets_nothing_more() {
    let router = Router::start_with(guarded()).await;
    let one = Early::start(TOO_LARGE, Then::Close).await;
    let two = Early::start(TOO_LARGE, Then::Close).await;
    router.apps.set("web", &[one.addr, two.addr]);
    let (mut wire, mut writer) = Wire::connect_with_writer(&router).await;
    // PUT is idempotent, but a body this large streams and is never sent twice; it
    // is made of requests, which must not be taken for requests after the answer.
    let body: Vec<u8> = SMUGGLED.iter().copied().cycle().take(BODY).collect();
    let head =
        format!("PUT /upload HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: {BODY}\r\n\r\n");
    let (start, rest) = body.split_at(64 * 1024);
    writer
        .write_all(head.as_bytes())
        .await
        .expect("send the head");
    writer.write_all(start).await.expect("send the start");
    assert_eq!(wire.response(false).await.status, 413);
    // The rest only now: the router reads and drops it rather than reset the
    // connection under the client.
    let sent = writer.write_all(rest).await.is_ok() && writer.shutdown().await.is_ok();
    assert!(sent, "the body was cut off");
    wire.closed().await;
    assert_eq!(one.heads() + two.heads(), 1, "one instance saw the request");
    assert_eq!(one.connections() + two.connections(), 1);
    router.stopped().await.expect("the router stops");
}
