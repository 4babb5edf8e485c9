//! Connections to instances: opened on demand, kept alive between requests.
//!
//! This is a small pool of hyper's HTTP/1 client connections rather than
//! hyper-util's `Client` because the router has to know *where* a request
//! failed: a connection that could not be opened, or a pooled one found
//! closed before the request was written, leaves the request untouched — even
//! a streaming body can still go to the next instance. `Client` hides that
//! difference and consumes the body either way.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use crate::body::RequestBody;

/// A connection to an instance, ready to carry one request.
pub(crate) type Sender = SendRequest<RequestBody>;

/// Idle connections kept per instance; more are closed when they come back.
const MAX_IDLE_PER_INSTANCE: usize = 32;
/// An idle connection older than this is closed rather than reused, so that
/// the pool never holds connections an instance has long forgotten.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The idle connections, per instance address.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<(Sender, Instant)>>>,
}

impl Pool {
    /// The most recently used idle connection to `addr` that is still open.
    pub(crate) fn take(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&addr)?;
        while let Some((sender, since)) = list.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        idle.remove(&addr);
        None
    }

    fn put(&self, addr: SocketAddr, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(addr).or_default();
        list.retain(|(sender, since)| !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT);
        if list.len() < MAX_IDLE_PER_INSTANCE {
            list.push((sender, Instant::now()));
        }
    }
}

/// A connection in use, to be given back when its response has been read.
pub(crate) struct Checkin {
    pool: Arc<Pool>,
    addr: SocketAddr,
    sender: Sender,
    reusable: bool,
}

impl Checkin {
    /// `reusable` is false for connections that must not carry another
    /// request (the instance said `Connection: close`, spoke HTTP/1.0, or the
    /// connection was opened for an upgrade); they are kept open only until
    /// their response has been read.
    pub(crate) fn new(
        pool: Arc<Pool>,
        addr: SocketAddr,
        sender: Sender,
        reusable: bool,
    ) -> Checkin {
        Checkin {
            pool,
            addr,
            sender,
            reusable,
        }
    }

    /// The response has been read in full: the connection may go back.
    pub(crate) fn finish(self) {
        if self.reusable {
            self.pool.put(self.addr, self.sender);
        }
    }
}

/// Opens a new connection to `addr`, giving up after `timeout`. Its driving
/// task runs until the connection closes (or, with `upgrades`, until it is
/// handed over to an upgrade).
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    upgrades: bool,
) -> io::Result<Sender> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    // Small writes (headers, WebSocket frames) should leave at once.
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    if upgrades {
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                debug!(%addr, %error, "instance connection ended");
            }
        });
    } else {
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%addr, %error, "instance connection ended");
            }
        });
    }
    Ok(sender)
}
