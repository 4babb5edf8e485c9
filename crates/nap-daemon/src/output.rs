//! Writing command output: stdout and stderr of one request.

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The two output streams of a command. Write errors are ignored: they mean
/// the client went away, and the command is cancelled by its caller then.
pub struct Out<'a> {
    stdout: Box<dyn AsyncWrite + Send + Unpin + 'a>,
    stderr: Box<dyn AsyncWrite + Send + Unpin + 'a>,
    closed: bool,
}

impl<'a> Out<'a> {
    /// Wraps two streams.
    pub fn new(
        stdout: Box<dyn AsyncWrite + Send + Unpin + 'a>,
        stderr: Box<dyn AsyncWrite + Send + Unpin + 'a>,
    ) -> Out<'a> {
        Out {
            stdout,
            stderr,
            closed: false,
        }
    }

    /// Writes `text` and a newline to stdout.
    pub async fn line(&mut self, text: &str) {
        let written = self.stdout.write_all(format!("{text}\n").as_bytes()).await;
        if written.and(self.stdout.flush().await).is_err() {
            self.closed = true;
        }
    }

    /// Whether a write failed: the reader is gone.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Writes `text` and a newline to stderr.
    pub async fn err(&mut self, text: &str) {
        let _ = self.stderr.write_all(format!("{text}\n").as_bytes()).await;
        let _ = self.stderr.flush().await;
    }

    /// Flushes both streams.
    pub async fn flush(&mut self) {
        let _ = self.stdout.flush().await;
        let _ = self.stderr.flush().await;
    }

    /// The raw streams, for bridging a child process.
    pub fn streams(
        &mut self,
    ) -> (
        &mut (dyn AsyncWrite + Send + Unpin + 'a),
        &mut (dyn AsyncWrite + Send + Unpin + 'a),
    ) {
        (&mut *self.stdout, &mut *self.stderr)
    }
}
