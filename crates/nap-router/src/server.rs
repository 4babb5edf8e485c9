//! The accept loop: one task per client connection, a cap on their number,
//! and a graceful stop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, PoisonError};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinError, JoinSet};
use tracing::{Instrument, debug, error, info};

use crate::proxy::{Proxy, TunnelSlot};
use crate::{Membership, Options};

/// See [`crate::serve`].
pub(crate) async fn run(
    listener: TcpListener,
    options: Options,
    membership: Arc<dyn Membership>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let proxy = Arc::new(Proxy::new(&options, membership));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let http = Arc::new(http);
    let limit = options.max_connections.min(Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(limit));
    // Connections watch this to learn that the router is stopping.
    let (stop, stopping) = watch::channel(false);
    // Owning the connection tasks means dropping `run` ends them all.
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => report(joined),
            accepted = nap_stdx::accept("router", || listener.accept()) => match accepted {
                Ok((stream, peer)) => {
                    // Over the cap, close at once rather than leave clients
                    // waiting in the backlog for a slot.
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        debug!(%peer, limit, "too many connections; closing a new one");
                        continue;
                    };
                    let span = tracing::debug_span!("connection", %peer);
                    let task = connection(proxy.clone(), http.clone(), stream, peer, stopping.clone(), permit);
                    connections.spawn(task.instrument(span));
                }
                // The listener is broken (failed clients and a lack of
                // descriptors are waited out by the helper).
                Err(error) => return Err(error),
            },
        }
    }

    drop(listener);
    // `stopping` is still alive here, so sending cannot fail.
    let _ = stop.send(true);
    let drain = async {
        while let Some(joined) = connections.join_next().await {
            report(joined);
        }
    };
    if tokio::time::timeout(options.shutdown_grace, drain)
        .await
        .is_err()
    {
        info!(
            left = connections.len(),
            "router shutdown grace is over; closing the remaining connections"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Serves one client connection: its requests, then the tunnel of an
/// upgrade if one of them set one up.
async fn connection(
    proxy: Arc<Proxy>,
    http: Arc<http1::Builder>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stopping: watch::Receiver<bool>,
    // Held for as long as the client's connection is open, tunnel included.
    _permit: OwnedSemaphorePermit,
) {
    // Error pages and small responses should not wait for Nagle.
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "set_nodelay");
    }
    let tunnel = TunnelSlot::default();
    let service = {
        let tunnel = tunnel.clone();
        service_fn(move |request| {
            let proxy = proxy.clone();
            let tunnel = tunnel.clone();
            async move { proxy.handle(request, peer, &tunnel).await }
        })
    };
    let mut serving = pin!(
        http.serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
    );
    let mut stop_asked = false;
    let result = loop {
        tokio::select! {
            result = serving.as_mut() => break result,
            // Finish the request in progress, then close; an idle
            // keep-alive connection closes at once.
            _ = stopping.changed(), if !stop_asked => {
                stop_asked = true;
                serving.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(error) = result {
        // Clients that vanish, send garbage or are too slow with their
        // headers end up here; that is their business, not an operator's.
        debug!(%error, "client connection ended");
    }
    let piping = tunnel.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(piping) = piping {
        piping.await;
    }
}

fn report(joined: Result<(), JoinError>) {
    if let Err(join_error) = joined
        && join_error.is_panic()
    {
        error!(%join_error, "a router connection task panicked");
    }
}
