//! Writing command output: stdout and stderr of one request.

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// Turns what a command writes into one of its pipes into messages for a
/// door that speaks in messages (the control socket's frames, the web's
/// chunks). It reads until the command closes the pipe, even when the
/// receiver is gone, so the command is never blocked on a full pipe.
pub(crate) async fn pump<T>(
    mut reader: tokio::io::DuplexStream,
    to: tokio::sync::mpsc::Sender<T>,
    make: fn(String) -> T,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let _ = to
                    .send(make(String::from_utf8_lossy(&buffer[..n]).into_owned()))
                    .await;
            }
        }
    }
}

impl Out<'_> {
    /// Writes `value` as pretty JSON to stdout (the `--json` forms).
    pub async fn json(&mut self, value: &impl serde::Serialize) {
        match serde_json::to_string_pretty(value) {
            Ok(text) => self.line(&text).await,
            Err(e) => {
                self.err(&format!(" !     cannot encode the answer: {e}"))
                    .await
            }
        }
    }
}
