//! The HTTP router: `APP.<domain>` and custom hosts balanced over an app's
//! live instances, over plain HTTP and HTTPS.
//!
//! [`serve`] accepts HTTP/1.x connections ([`serve_listeners`] also HTTPS
//! ones, HTTP/1.x or HTTP/2 as ALPN chose), reads the app from the `Host`
//! header (or a custom host of the snapshot), looks up where that app's
//! instances are in the newest [`Routes`] snapshot the daemon published and
//! forwards the request to one of them, round robin. It behaves like the
//! routers of Heroku and Dokku (nginx): an instance that refuses the connection
//! is skipped at once, bodies stream both ways, WebSockets pass through, and
//! the instance learns the client through `X-Forwarded-*` headers.
//!
//! HTTP/1.x is framed by the router itself, on httparse: heads are parsed in
//! place and written on as bytes, and anything whose length two parsers could
//! read differently is refused (see `request` and `response`). hyper serves
//! HTTP/2 clients only.
//!
//! Membership stays off the request path: the daemon publishes a new
//! [`Routes`] through a `tokio::sync::watch` channel whenever an instance
//! comes up or goes down, and each client connection only checks, per
//! request, whether one arrived. Round robin, the memory of refused
//! connections and the keep-alive pools live per app and per instance, so no
//! request waits for a lock of the whole router.
//!
//! Module map: `routes` (the published snapshot), `table` (the router's state
//! per app and instance, carried from snapshot to snapshot), `host` (which app
//! a `Host` is for), `proxy` (settings, the client, what a Host leads to),
//! `headers` (hop-by-hop and forwarding headers), `forward` (order, retries,
//! the transports' common loop), `traffic` (requests in flight per instance,
//! and instances being drained), `server` (the accept loops, TLS, limits and
//! graceful stop), `balance` (client connections spread evenly over the
//! workers). HTTP/1.x: `h1` (a client connection: heads, routing, pages),
//! `exchange` (one request to the instances and its answer back, upgrades),
//! `request` and `response` (heads parsed, checked and written again),
//! `framing` (bodies), `buffer` (a connection's read buffer). HTTP/2: `h2`
//! (hyper's server), `body` (its bodies) and `pool` (hyper's client
//! connections to instances, and the pools of both kinds).
//!
//! TLS itself is nap-certs' business: the router gets an [`HttpsAcceptor`]
//! (rustls, the certificate chosen by SNI) and answers ACME's HTTP-01
//! challenges from a [`Challenges`] registry on its plain-HTTP listener,
//! before routing and before any redirect to HTTPS.
//!
//! Draining: the daemon takes an instance out of rotation before it stops it
//! ([`Traffic::retire`]), waits until the requests already on their way to it
//! are answered ([`Traffic::until_idle`]), and only then sends it SIGTERM; a
//! connection kept open to a drained instance is not used again.
//!
//! **Architecture Invariant:** knows nothing of apps beyond their name and the
//! addresses a [`Routes`] snapshot gives; where instances come from (the local
//! supervisor, etcd) is the daemon's business.

use std::future::Future;
use std::time::Duration;

mod balance;
mod body;
mod buffer;
mod exchange;
mod forward;
mod framing;
mod h1;
mod h2;
mod headers;
mod host;
mod pool;
mod proxy;
mod request;
mod response;
mod routes;
mod server;
mod stop;
mod table;
mod traffic;

pub use nap_certs::{Challenges, HttpsAcceptor};
pub use routes::{HostRoute, Routes, RoutesReceiver};
pub use traffic::Traffic;

/// How the router behaves; `Options::default()` is what `nap serve` uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Apps are served at `APP.<domain>`; default `localhost`, so that
    /// `http://myapp.localhost:8000` works in a browser without DNS.
    pub domain: String,
    /// How long to wait for an instance to accept a connection before trying
    /// the next one; default 3 s.
    pub connect_timeout: Duration,
    /// How long an HTTP/1.x client may take to send a request's headers, and
    /// how long an idle keep-alive connection stays open (the clock starts
    /// when the connection starts waiting for a request); default 30 s. This
    /// is what stops slowloris clients from holding connections forever.
    pub header_read_timeout: Duration,
    /// How long an HTTP/1.x body passing through may make no progress — nothing arrives from the
    /// side sending it, or the side receiving it takes nothing — before the exchange is
    /// cut and both connections closed; default 60 s, nginx's default for the same
    /// (`client_body_timeout`, `proxy_read_timeout` between reads, `send_timeout`).
    /// Without it a client that trickles its body or never reads its answer, or an
    /// instance that stops reading a body, holds a connection for ever. An HTTP/2
    /// request body gets as long between two of its frames; then its stream is
    /// answered 408 (or, if the answer has started, reset), and the connection's other
    /// streams go on. The wait for an instance's response head, upgraded connections
    /// (WebSockets) and the rest of an HTTP/2 stream (hyper's) have no such limit.
    pub body_timeout: Duration,
    /// At most this many client connections at once; connections beyond it
    /// are closed as soon as they are accepted. Default 4096.
    pub max_connections: usize,
    /// Request bodies of idempotent requests up to this size are buffered so
    /// that the request can go to another instance if the first one fails
    /// after it was sent; larger bodies stream. Default 64 KiB.
    pub retry_body_limit: usize,
    /// After `shutdown` completes, how long open connections (in-flight
    /// requests, WebSocket tunnels) may go on before they are cut; default 30 s.
    pub shutdown_grace: Duration,
    /// How many threads serve connections, each with a single-threaded
    /// runtime and an accept loop of its own, as nginx has a worker process
    /// per core; default: one per core.
    pub workers: usize,
    /// The requests in flight per instance and the instances being drained;
    /// keep a clone to drain instances with. Default: a book of its own.
    pub traffic: Traffic,
    /// The ACME HTTP-01 challenges to answer on the plain-HTTP listener
    /// (`/.well-known/acme-challenge/TOKEN`, any host); `None` answers none and
    /// routes those paths like any other.
    pub challenges: Option<Challenges>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            domain: "localhost".to_owned(),
            connect_timeout: Duration::from_secs(3),
            header_read_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            max_connections: 4096,
            retry_body_limit: 64 * 1024,
            shutdown_grace: Duration::from_secs(30),
            workers: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            traffic: Traffic::new(),
            challenges: None,
        }
    }
}

/// The HTTPS listener: its socket and the acceptor that runs the TLS
/// handshake (and picks the certificate by SNI).
#[derive(Debug)]
pub struct Https {
    /// The listening socket.
    pub listener: tokio::net::TcpListener,
    /// The TLS side, from nap-certs.
    pub acceptor: HttpsAcceptor,
}

/// The sockets the router serves.
#[derive(Debug)]
pub struct Listeners {
    /// Plain HTTP/1.1.
    pub http: tokio::net::TcpListener,
    /// HTTPS, HTTP/1.1 or HTTP/2 by ALPN; `None` for none.
    pub https: Option<Https>,
}

/// Serves HTTP on `listener` from the apps of the newest snapshot `routes`
/// has received, until `shutdown` completes.
///
/// The connections are served on [`Options::workers`] threads that `serve`
/// starts, not on the caller's runtime; `serve` itself only waits.
///
/// Then it stops accepting, lets every connection finish the request it is
/// in (idle keep-alive connections are closed), waits up to
/// [`Options::shutdown_grace`] for them and cuts whatever is left.
/// Dropping the returned future cuts all connections at once.
///
/// # Errors
///
/// Only if the listener itself is unusable (for example it is not listening);
/// failures of single connections, and transient accept errors such as
/// running out of file descriptors, are logged and survived.
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: Options,
    routes: RoutesReceiver,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let listeners = Listeners {
        http: listener,
        https: None,
    };
    server::run(listeners, options, routes, shutdown).await
}

/// Like [`serve`], on a plain-HTTP listener and, if given, an HTTPS one. Over
/// HTTPS the instances get `X-Forwarded-Proto: https`; plain-HTTP requests
/// for a custom host whose route says `https_redirect` get a 308 to the same
/// host and path on the HTTPS listener's port (none in the URL for 443).
/// Both listeners share the workers, the connection cap and the pools.
///
/// # Errors
///
/// As [`serve`], for either listener.
pub async fn serve_listeners(
    listeners: Listeners,
    options: Options,
    routes: RoutesReceiver,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    server::run(listeners, options, routes, shutdown).await
}
