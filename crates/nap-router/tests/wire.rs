//! HTTP/1.1 framing on the wire (RFC 9112): what the router refuses, what it
//! passes on intact, and what a hostile instance cannot do to a client.
//!
//! Every case is bytes chosen here, sent over a TcpStream, against an
//! instance that records every byte reaching it (`support::raw`). The cases
//! are tables run through one check each, so that they pin behaviour and not
//! how the router is built. Cases whose rule hyper's HTTP/1.1 path did not
//! follow are in `beyond_hyper`.

mod beyond_hyper;
mod boundaries;
mod framing;
mod hop_by_hop;
pub mod hostile;
pub mod refused;
mod upgrade;

use crate::support::Router;
use crate::support::raw::{Answer, Instance, Seen};

/// A second request behind a bad one: if the router took the bad one's
/// leftover bytes for the start of another request, this is what it would
/// find there (with `close`, so that a router that serves it ends the
/// connection at once and the check fails fast).
pub const SMUGGLED: &[u8] =
    b"GET /smuggled HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n";

/// The router's page for an instance that answered with something no
/// client should get.
pub const BAD_GATEWAY: &str = "502 Bad Gateway: web did not answer\n";

/// A router that routes `web` to a new [`Instance`] answering as `answer` does.
pub async fn web(answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> (Router, Instance) {
    let router = Router::start().await;
    let instance = Instance::start(answer).await;
    router.apps.set("web", &[instance.addr]);
    (router, instance)
}

/// Stops the router and waits until the instance has read all it was sent:
/// after this, what the instance has not seen, it never will.
pub async fn finish(router: Router, instance: &Instance) {
    router.stopped().await.expect("the router stops");
    instance.settled().await;
}

/// A request for `web`: `line`, `fields` (each ending in CRLF) and `body`.
pub fn request(line: &str, fields: &str, body: &str) -> Vec<u8> {
    format!("{line}\r\nHost: web.localhost\r\n{fields}\r\n{body}").into_bytes()
}
