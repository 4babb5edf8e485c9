//! Serving the router, with a graceful shutdown.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use axum::{Extension, Router};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// How long open connections may take to finish after the shutdown signal.
const GRACE: Duration = Duration::from_secs(10);

/// Tells long responses (action event streams) that the server is shutting
/// down: the value turns `true`, or the sender goes away.
#[derive(Clone)]
pub(crate) struct Closing(pub(crate) watch::Receiver<bool>);

/// Serves `app` (from [`crate::router`]) on `listener` until `shutdown`
/// completes. Then it stops accepting connections, ends the event streams of
/// action pages, lets requests in flight finish (at most 10 seconds), and
/// returns. Actions keep running in their tasks; the runtime owns them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (closing, closing_receiver) = watch::channel(false);
    let (signalled, signalled_receiver) = oneshot::channel::<()>();
    let app = app.layer(Extension(Closing(closing_receiver)));
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "web manager listening");
    }
    let signal = async move {
        shutdown.await;
        tracing::info!("web manager shutting down");
        closing.send_replace(true);
        let _ = signalled.send(());
    };
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .into_future();
    let deadline = async {
        match signalled_receiver.await {
            Ok(()) => tokio::time::sleep(GRACE).await,
            // The server ended without a signal (it cannot, but then there
            // is nothing to wait for).
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!("web manager: connections still open {GRACE:?} after shutdown; leaving them");
            Ok(())
        }
    }
}
