//! Operations that outlive their client.
//!
//! A push, rollback, config change, scale, restart, clone, deploy from a URL or destroy,
//! once started, runs in a task of its own ([`Operations::spawn`]) that holds the app's
//! lock until the operation is over. The door that started it (an SSH channel, the
//! control socket, a web request) only follows its output ([`follow`]) and may go away
//! at any moment: the operation goes on, and what it writes from then on is dropped.
//!
//! An operation writes into a [`Sink`], a channel to its door. Text (`Sink::out`) never
//! waits: when the door has gone, or has not read the last [`OUTPUT_CHUNKS`] writes,
//! the text is dropped. git's protocol bytes must arrive whole while somebody listens,
//! so those wait for room ([`Sink::send`]) and are dropped only once the door is gone.
//!
//! When the daemon shuts down it cancels every operation ([`Operations::cancel_all`]):
//! each notices at its next step (a checkout stops through its interrupt flag, an
//! instance being waited for is stopped), undoes what it began, and ends; the daemon
//! waits for that before it stops the runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::Out;

/// Writes an operation may have waiting for its door before text is dropped.
pub(crate) const OUTPUT_CHUNKS: usize = 1024;

/// Some output of an operation: bytes for the client's stdout or stderr.
pub(crate) enum Chunk {
    Out(Vec<u8>),
    Err(Vec<u8>),
}

/// Where an operation writes: a channel to the door that follows it.
#[derive(Clone)]
pub(crate) struct Sink(mpsc::Sender<Chunk>);

impl Sink {
    /// A sink and the receiving end for the door.
    pub(crate) fn new() -> (Sink, mpsc::Receiver<Chunk>) {
        let (sender, receiver) = mpsc::channel(OUTPUT_CHUNKS);
        (Sink(sender), receiver)
    }

    /// An [`Out`] for the operation's messages, which never waits for the door.
    pub(crate) fn out(&self) -> Out<'static> {
        Out::new(
            Box::new(SinkWriter {
                sender: self.0.clone(),
                chunk: Chunk::Out,
            }),
            Box::new(SinkWriter {
                sender: self.0.clone(),
                chunk: Chunk::Err,
            }),
        )
    }

    /// Passes `chunk` on, waiting for room while the door follows; false (and the
    /// chunk dropped) once the door is gone.
    pub(crate) async fn send(&self, chunk: Chunk) -> bool {
        self.0.send(chunk).await.is_ok()
    }

    /// Whether the door has gone.
    pub(crate) fn door_gone(&self) -> bool {
        self.0.is_closed()
    }
}

/// One stream of a [`Sink`] as an `AsyncWrite` that never waits.
struct SinkWriter {
    sender: mpsc::Sender<Chunk>,
    chunk: fn(Vec<u8>) -> Chunk,
}

impl AsyncWrite for SinkWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.sender.try_send((self.chunk)(bytes.to_vec()))
        {
            debug!("the client reads no output; some was dropped");
        }
        // Written or dropped: either way the operation goes on.
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Copies an operation's output to the door's `out` as it comes, until the operation
/// has ended (every copy of its sink is gone), and returns its exit status. Dropping
/// this future leaves the operation running.
pub(crate) async fn follow(
    mut chunks: mpsc::Receiver<Chunk>,
    operation: JoinHandle<u32>,
    out: &mut Out<'_>,
) -> u32 {
    let mut door_open = true;
    while let Some(chunk) = chunks.recv().await {
        if !door_open {
            continue;
        }
        let (stdout, stderr) = out.streams();
        let (stream, bytes) = match &chunk {
            Chunk::Out(bytes) => (stdout, bytes),
            Chunk::Err(bytes) => (stderr, bytes),
        };
        if stream.write_all(bytes).await.is_err() || stream.flush().await.is_err() {
            // The client is gone; its door will drop this soon. Until then the
            // operation's output is read and dropped, so that it never waits.
            door_open = false;
        }
    }
    match operation.await {
        Ok(status) => status,
        Err(error) => {
            warn!(%error, "an operation ended abnormally");
            out.err(" !     internal error: the operation ended abnormally; see the daemon's log")
                .await;
            1
        }
    }
}

/// The daemon's way of telling its operations to stop: a flag for blocking work (a
/// checkout) and a channel for tasks to wait on.
#[derive(Clone)]
pub(crate) struct Cancel {
    flag: Arc<AtomicBool>,
    changed: watch::Receiver<bool>,
}

impl Cancel {
    /// Whether the daemon is shutting down.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Completes once the daemon is shutting down.
    pub(crate) async fn cancelled(&self) {
        let mut changed = self.changed.clone();
        let _ = changed.wait_for(|cancelled| *cancelled).await;
    }

    /// The flag, for a checkout's interrupt.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }
}

/// The operations under way, and their cancellation.
pub(crate) struct Operations {
    flag: Arc<AtomicBool>,
    cancel: watch::Sender<bool>,
    running: watch::Sender<usize>,
}

impl Default for Operations {
    fn default() -> Operations {
        Operations {
            flag: Arc::default(),
            cancel: watch::Sender::new(false),
            running: watch::Sender::new(0),
        }
    }
}

/// Counts a running operation out when it ends (or its task is dropped).
struct Running(watch::Sender<usize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.send_modify(|running| *running -= 1);
    }
}

impl Operations {
    /// Runs `operation` in a task of its own, counted until it ends.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        operation: impl Future<Output = T> + Send + 'static,
    ) -> JoinHandle<T> {
        self.running.send_modify(|running| *running += 1);
        let running = Running(self.running.clone());
        tokio::spawn(async move {
            let _running = running;
            operation.await
        })
    }

    /// What operations look at to learn that the daemon is shutting down.
    pub(crate) fn cancel(&self) -> Cancel {
        Cancel {
            flag: self.flag.clone(),
            changed: self.cancel.subscribe(),
        }
    }

    /// Cancels every operation and waits until all have undone what they began and
    /// ended, for at most `patience`.
    pub(crate) async fn cancel_all(&self, patience: Duration) {
        self.flag.store(true, Ordering::SeqCst);
        self.cancel.send_replace(true);
        let mut running = self.running.subscribe();
        let ended = running.wait_for(|running| *running == 0);
        if tokio::time::timeout(patience, ended).await.is_err() {
            warn!(
                left = *self.running.borrow(),
                "operations still running after {}s; stopping anyway",
                patience.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_operation_goes_on_without_its_door_and_never_waits_for_it() {
        let operations = Operations::default();
        let (sink, chunks) = Sink::new();
        let (done, finished) = tokio::sync::oneshot::channel();
        let operation = operations.spawn(async move {
            let mut out = sink.out();
            // Far more than the channel holds, with nobody reading.
            for n in 0..OUTPUT_CHUNKS * 3 {
                out.err(&format!("line {n}")).await;
            }
            let _ = done.send(());
            7
        });
        finished.await.expect("the operation ran to its end unread");
        drop(chunks);
        assert_eq!(operation.await.expect("joined"), 7);
        assert_eq!(*operations.running.borrow(), 0);
    }

    #[tokio::test]
    async fn follow_streams_the_output_and_returns_the_status() {
        let operations = Operations::default();
        let (sink, chunks) = Sink::new();
        let operation = operations.spawn(async move {
            let mut out = sink.out();
            out.line("to stdout").await;
            out.err("to stderr").await;
            3
        });
        let (stdout, mut read_out) = tokio::io::duplex(1024);
        let (stderr, mut read_err) = tokio::io::duplex(1024);
        let mut out = Out::new(Box::new(stdout), Box::new(stderr));
        assert_eq!(follow(chunks, operation, &mut out).await, 3);
        drop(out);
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut read_out, &mut text)
            .await
            .expect("stdout");
        assert_eq!(text, "to stdout\n");
        text.clear();
        tokio::io::AsyncReadExt::read_to_string(&mut read_err, &mut text)
            .await
            .expect("stderr");
        assert_eq!(text, "to stderr\n");
    }

    #[tokio::test]
    async fn cancel_all_waits_for_operations_to_undo_and_end() {
        let operations = Arc::new(Operations::default());
        let cancel = operations.cancel();
        let (undone_tx, mut undone) = tokio::sync::mpsc::unbounded_channel();
        operations.spawn(async move {
            cancel.cancelled().await;
            assert!(cancel.is_cancelled());
            let _ = undone_tx.send("undone");
        });
        operations.cancel_all(Duration::from_secs(30)).await;
        assert_eq!(undone.try_recv().ok(), Some("undone"));
    }
}
