//! The workers and their accept loops: one task per client connection, a cap
//! on their number, and a graceful stop.
//!
//! The router runs on threads of its own, one per core by default
//! ([`Options::workers`]), each with a single-threaded tokio runtime and its
//! own accept loop on the one listening socket, as nginx runs a worker
//! process per core. A connection, the instance connections it uses and its
//! timers then live on one thread: no task is stolen by another core, no
//! wake-up crosses threads, and each worker has its own pools, so a pooled
//! connection is always polled by the runtime it is registered with.
//!
//! The HTTPS listener has an accept loop of its own on every worker. Its
//! connection tasks run the TLS handshake (nap-certs' acceptor: rustls, the
//! certificate by SNI, a timeout) and then serve HTTP/1.x through the same
//! hand-framed path as plain TCP (`h1`), or HTTP/2 through hyper
//! ([`serve_http2`]) when the client chose `h2` by ALPN.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use nap_certs::HttpsAcceptor;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinError, JoinSet};
use tracing::{Instrument, debug, error, info};

use crate::balance::{self, Load, Loads, Open};
use crate::proxy::{Client, Proxy};
use crate::stop::{Stop, Stopping};
use crate::table::{RouteView, Turns};
use crate::{Listeners, Options, RoutesReceiver};

/// What every worker and connection shares.
struct Shared {
    proxy: Proxy,
    /// HTTP/2 over TLS; its streams are tasks of the connection's worker.
    http2: http2::Builder<TokioExecutor>,
    /// One permit per open client connection, over all workers.
    permits: Arc<Semaphore>,
    limit: usize,
    shutdown_grace: Duration,
}

/// Ends what was started when dropped: the workers' connections are cut if
/// `serve`'s future goes away before they finished.
struct CutOnDrop(Arc<Stop>);

impl Drop for CutOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// See [`crate::serve`].
pub(crate) async fn run(
    listeners: Listeners,
    options: Options,
    routes: RoutesReceiver,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2.timer(TokioTimer::new());
    let limit = options.max_connections.min(Semaphore::MAX_PERMITS);
    let https_port = match &listeners.https {
        Some(https) => Some(https.listener.local_addr()?.port()),
        None => None,
    };
    let shared = Arc::new(Shared {
        proxy: Proxy::new(&options, https_port),
        http2,
        permits: Arc::new(Semaphore::new(limit)),
        limit,
        shutdown_grace: options.shutdown_grace,
    });
    // Stop accepting and finish what is in progress...
    let stop = Arc::new(Stop::default());
    // ...or end everything now.
    let cut = CutOnDrop(Arc::new(Stop::default()));
    // The sockets leave the caller's runtime: each worker registers a copy
    // with its own.
    let listener = listeners.http.into_std()?;
    let https = match listeners.https {
        Some(https) => Some((https.listener.into_std()?, https.acceptor)),
        None => None,
    };
    let workers = options.workers.max(1);
    let (finished, mut results) = mpsc::channel(workers);
    let turns = Arc::new(Turns::default());
    let loads = Loads::new(workers);
    for index in 0..workers {
        let https = match &https {
            Some((listener, acceptor)) => Some((listener.try_clone()?, acceptor.clone())),
            None => None,
        };
        let worker = Worker {
            listener: listener.try_clone()?,
            https,
            shared: shared.clone(),
            routes: RouteView::new(routes.clone(), turns.clone(), options.traffic.clone()),
            stop: stop.clone(),
            cut: cut.0.stopping(),
            load: Load::of(&loads, index),
        };
        let finished = finished.clone();
        std::thread::Builder::new()
            .name(format!("nap-router-{index}"))
            .spawn(move || {
                let result = worker.run();
                // Nobody listens any more only if `serve` was dropped.
                let _ = finished.try_send(result);
            })?;
    }
    drop((listener, https, finished));

    let mut shutdown = pin!(shutdown);
    let mut running = workers;
    let outcome = tokio::select! {
        () = &mut shutdown => Ok(()),
        // A worker ends before the stop only if the listener is unusable.
        Some(result) = results.recv() => {
            running -= 1;
            result
        }
    };
    if outcome.is_err() {
        cut.0.stop();
    } else {
        stop.stop();
    }
    while running > 0 {
        match results.recv().await {
            Some(_) => running -= 1,
            None => break,
        }
    }
    outcome
}

/// One worker thread: its runtime, its accept loop, its connections.
struct Worker {
    listener: std::net::TcpListener,
    https: Option<(std::net::TcpListener, HttpsAcceptor)>,
    shared: Arc<Shared>,
    routes: RouteView,
    stop: Arc<Stop>,
    cut: Stopping,
    /// Its open client connections among all workers' (both listeners).
    load: Load,
}

impl Worker {
    fn run(self) -> io::Result<()> {
        // Sockets and timers only: the signal and process drivers would be
        // looked at every time the worker waits, for nothing.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let Worker {
            listener,
            https,
            shared,
            routes,
            stop,
            cut,
            load,
        } = self;
        // Dropping the runtime at the end cancels whatever a cut left.
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener)?;
            let plain = accept_loop(
                listener,
                None,
                shared.clone(),
                routes.clone(),
                stop.clone(),
                load.clone(),
            );
            let tls = async {
                match https {
                    Some((listener, acceptor)) => {
                        let listener = TcpListener::from_std(listener)?;
                        accept_loop(listener, Some(acceptor), shared, routes, stop, load).await
                    }
                    None => Ok(()),
                }
            };
            tokio::select! {
                // Either loop ends early only when its listener is broken; the
                // worker then ends, and `run` stops the others.
                result = async { tokio::try_join!(plain, tls).map(|_| ()) } => result,
                () = cut => Ok(()),
            }
        })
    }
}

/// Accepts connections on `listener` until the stop, then waits out its
/// connections; with `tls`, each connection starts with a TLS handshake.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<HttpsAcceptor>,
    shared: Arc<Shared>,
    // Each connection starts from this view, brought up to date before it is
    // handed on, and then keeps its own.
    mut routes: RouteView,
    stop: Arc<Stop>,
    load: Load,
) -> io::Result<()> {
    // Owning the connection tasks means dropping this ends them all.
    let mut connections = JoinSet::new();
    let mut stopping = stop.stopping();
    let limit = shared.limit;

    loop {
        // A worker well above the least loaded one leaves new connections to the others.
        let accepting = load.may_accept();
        tokio::select! {
            () = &mut stopping => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => report(joined),
            () = tokio::time::sleep(balance::RECHECK), if !accepting => {}
            accepted = nap_stdx::accept("router", || listener.accept()), if accepting => match accepted {
                Ok((stream, peer)) => {
                    // Over the cap, close at once rather than leave clients
                    // waiting in the backlog for a slot.
                    let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
                        debug!(%peer, limit, "too many connections; closing a new one");
                        continue;
                    };
                    // Small responses and error pages should not wait for Nagle.
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(%error, "set_nodelay");
                    }
                    routes.current();
                    let (shared, routes, stopping) = (shared.clone(), routes.clone(), stop.stopping());
                    let open = load.open(permit);
                    match &tls {
                        None => {
                            let task = serve_connection(
                                shared,
                                stream,
                                Client::new(peer, false),
                                routes,
                                stopping,
                                open,
                            );
                            // Boxed: a spawn moves the future several times, and the
                            // connection's future is kilobytes; a box is a pointer.
                            connections.spawn(Box::pin(task).instrument(tracing::debug_span!("connection", %peer)));
                        }
                        Some(acceptor) => {
                            let task = serve_tls(shared, acceptor.clone(), stream, peer, routes, stopping, open);
                            connections.spawn(Box::pin(task).instrument(tracing::debug_span!("tls connection", %peer)));
                        }
                    }
                }
                // The listener is broken (failed clients and a lack of
                // descriptors are waited out by the helper).
                Err(error) => return Err(error),
            },
        }
    }

    drop(listener);
    let drain = async {
        while let Some(joined) = connections.join_next().await {
            report(joined);
        }
    };
    if tokio::time::timeout(shared.shutdown_grace, drain)
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

/// Serves one HTTP/1.x client connection, over any byte stream (plain TCP, or
/// TLS): its requests, and the tunnel of an upgrade if one of them set one up.
async fn serve_connection<Stream>(
    shared: Arc<Shared>,
    stream: Stream,
    client: Client,
    routes: RouteView,
    mut stopping: Stopping,
    // Held for as long as the client's connection is open, tunnel included.
    _open: Open,
) where
    Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    crate::h1::serve(&shared.proxy, stream, &client, routes, &mut stopping).await;
}

/// Runs the TLS handshake on an accepted connection, then serves it as
/// HTTP/1.1 or, if the client chose it by ALPN, HTTP/2.
async fn serve_tls(
    shared: Arc<Shared>,
    acceptor: HttpsAcceptor,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    routes: RouteView,
    mut stopping: Stopping,
    open: Open,
) {
    // The handshake has a timeout of its own; a stop meanwhile ends it at once.
    let handshake = tokio::select! {
        handshake = acceptor.accept(stream) => handshake,
        () = &mut stopping => return,
    };
    let tls = match handshake {
        Ok(tls) => tls,
        Err(error) => {
            // No SNI, a host without certificate, an old TLS version, a scanner:
            // the client's business.
            debug!(%error, "TLS handshake failed");
            return;
        }
    };
    let client = Client::new(peer, true);
    if tls.is_http2() {
        serve_http2(shared, TokioIo::new(tls), client, routes, stopping, open).await;
    } else {
        serve_connection(shared, tls, client, routes, stopping, open).await;
    }
}

/// Serves one HTTP/2 connection. Each stream runs as a task of the worker
/// (hyper spawns them), so what a request needs is owned, not borrowed.
async fn serve_http2<Stream>(
    shared: Arc<Shared>,
    stream: TokioIo<Stream>,
    client: Client,
    routes: RouteView,
    mut stopping: Stopping,
    _open: Open,
) where
    Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = Arc::new(client);
    let service = {
        let (shared, client) = (shared.clone(), client.clone());
        // Shared by the connection's streams, which run as tasks of their own.
        let routes = Arc::new(std::sync::Mutex::new(routes));
        service_fn(move |request| {
            let (shared, client, routes) = (shared.clone(), client.clone(), routes.clone());
            async move { shared.proxy.handle(request, &routes, &client).await }
        })
    };
    let mut serving = pin!(shared.http2.serve_connection(stream, service));
    let mut stop_asked = false;
    let result = loop {
        tokio::select! {
            biased;
            result = serving.as_mut() => break result,
            // GOAWAY: streams in progress finish, no new ones start.
            () = &mut stopping, if !stop_asked => {
                stop_asked = true;
                serving.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(error) = result {
        debug!(%error, "HTTP/2 client connection ended");
    }
}

fn report(joined: Result<(), JoinError>) {
    if let Err(join_error) = joined
        && join_error.is_panic()
    {
        error!(%join_error, "a router connection task panicked");
    }
}
