//! Connections to instances: opened on demand, kept alive between requests.
//! A [`Pool`] keeps either kind: raw TCP connections, which HTTP/1.x clients'
//! requests go on as bytes (`exchange`), and hyper's HTTP/1 client connections,
//! which HTTP/2 clients' requests go on (`h2`).
//!
//! The latter are a small pool of hyper's HTTP/1 client connections rather than
//! hyper-util's `Client` because the router has to know *where* a request
//! failed: a connection that could not be opened, or a pooled one found
//! closed before the request was written, leaves the request untouched — even
//! a streaming body can still go to the next instance. `Client` hides that
//! difference and consumes the body either way.
//!
//! Each instance has a pool of its own ([`crate::table::Upstream`]), so taking
//! and giving back a connection locks that instance's list for a push or a
//! pop, and requests for different instances never wait for each other.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use crate::body::RequestBody;
use crate::table::Upstream;
use crate::traffic::Claim;

type Io = TokioIo<TcpStream>;

/// Who polls a connection's hyper state machine (reads, writes, bodies).
enum Driver {
    /// The task of the request that uses it: a request and its forwarding
    /// run in one task, with no channel and no wake-up of another task in
    /// between. Boxed because hyper's connection is large and must not move.
    Here(Pin<Box<http1::Connection<Io, RequestBody>>>),
    /// The connection has ended.
    Ended,
}

/// A connection to an instance.
pub(crate) struct Connection {
    sender: SendRequest<RequestBody>,
    driver: Driver,
}

impl Connection {
    /// Lets the connection do what it can (write, read, pass on body data);
    /// whoever holds it calls this whenever its task is polled.
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) {
        if let Driver::Here(connection) = &mut self.driver
            && let Poll::Ready(result) = connection.as_mut().poll(cx)
        {
            if let Err(error) = result {
                debug!(%error, "instance connection ended");
            }
            self.driver = Driver::Ended;
        }
    }

    /// Waits until the connection takes a request; false if it ended.
    pub(crate) async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            self.drive(cx);
            match self.sender.poll_ready(cx) {
                Poll::Ready(result) => Poll::Ready(result.is_ok()),
                Poll::Pending if self.ended() => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Sends `request` and waits for the response head.
    pub(crate) async fn send(
        &mut self,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        let mut response = pin!(self.sender.try_send_request(request));
        poll_fn(|cx| {
            // The connection first: it writes the request and reads the
            // answer that the response future then reports. Once it has
            // ended, the response future reports how.
            self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

/// A connection that can wait in a [`Pool`]: it knows whether it still works.
pub(crate) trait Reusable {
    /// Whether the connection has ended (closed by the instance, broken).
    fn ended(&self) -> bool;
}

impl Reusable for Connection {
    fn ended(&self) -> bool {
        matches!(self.driver, Driver::Ended) || self.sender.is_closed()
    }
}

/// A raw TCP connection to an instance is usable as long as the instance has not
/// closed it or sent anything unasked: either is seen without a syscall (tokio knows
/// the socket turned readable), and a readable idle connection is never reused.
impl Reusable for crate::buffer::Reader<TcpStream> {
    fn ended(&self) -> bool {
        let mut byte = [0u8; 1];
        !matches!(self.stream.try_read(&mut byte), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }
}

/// Idle connections kept per instance; more are closed when they come back.
const MAX_IDLE_PER_INSTANCE: usize = 64;
/// An idle connection older than this is closed rather than reused, so that
/// the pool never holds connections an instance has long forgotten.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

struct Idle<C> {
    connection: C,
    since: Instant,
}

impl<C: Reusable> Idle<C> {
    fn usable(&self) -> bool {
        !self.connection.ended() && self.since.elapsed() < IDLE_TIMEOUT
    }
}

/// One instance's idle connections, the most recently used last.
pub(crate) struct Pool<C> {
    idle: Mutex<Vec<Idle<C>>>,
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
        }
    }
}

impl<C: Reusable> Pool<C> {
    /// The most recently used idle connection that is still open.
    pub(crate) fn take(&self) -> Option<C> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(entry) = idle.pop() {
            if entry.usable() {
                return Some(entry.connection);
            }
        }
        None
    }

    /// Gives a connection back for the next request, unless it has ended.
    pub(crate) fn put(&self, connection: C) {
        if connection.ended() {
            return;
        }
        let entry = Idle {
            connection,
            since: Instant::now(),
        };
        // Dropping a connection closes it (its driving task ends): do that outside
        // the lock.
        let (_stale, _refused) = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            // The oldest entry is at the bottom; the most recently used ones are taken
            // from the top, so a busy pool would never reach it. Checking it on every
            // return keeps the pool free of dead and timed-out connections at the cost
            // of one look.
            let stale = if idle.first().is_some_and(|oldest| !oldest.usable()) {
                Some(idle.remove(0))
            } else {
                None
            };
            if idle.len() < MAX_IDLE_PER_INSTANCE {
                idle.push(entry);
                (stale, None)
            } else {
                (stale, Some(entry))
            }
        };
    }
}

/// A connection in use, to be given back when its response has been read. Until then
/// the request counts as in flight to its instance (the claim).
pub(crate) struct Checkin {
    upstream: Arc<Upstream>,
    pub(crate) connection: Connection,
    reusable: bool,
    _claim: Claim,
}

impl Checkin {
    /// `reusable` is false for connections that must not carry another
    /// request (the instance said `Connection: close`, spoke HTTP/1.0, or the
    /// connection was opened for an upgrade); they are kept open only until
    /// their response has been read.
    pub(crate) fn new(
        upstream: Arc<Upstream>,
        connection: Connection,
        reusable: bool,
        claim: Claim,
    ) -> Checkin {
        Checkin {
            upstream,
            connection,
            reusable,
            _claim: claim,
        }
    }

    /// The response has been read in full: the connection may go back, unless its
    /// instance is being drained (nothing would take it again), and the request is no
    /// longer in flight.
    pub(crate) fn finish(self) {
        if self.reusable && !self.upstream.presence.retired() {
            self.upstream.pool.put(self.connection);
        }
    }
}

/// Opens a new hyper connection to `addr`, giving up after `timeout`; whoever uses
/// it drives it.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Connection> {
    let stream = connect_tcp(addr, timeout).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    Ok(Connection {
        sender,
        driver: Driver::Here(Box::pin(connection)),
    })
}

/// Opens a TCP connection to `addr`, giving up after `timeout`.
pub(crate) async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    // Small writes (headers, WebSocket frames) should leave at once.
    stream.set_nodelay(true)?;
    Ok(stream)
}
