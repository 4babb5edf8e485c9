//! The control socket (`DATA/nap.sock`, mode 0600): how `nap COMMAND` on the
//! host and git's pre-receive hook reach the daemon.
//!
//! Protocol: the client sends one JSON [`Request`] line; the daemon answers
//! with JSON [`Frame`] lines (`{"out": ..}`, `{"err": ..}`) and ends with
//! `{"exit": N}`. If the client hangs up, the command is cancelled.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use nap_core::Caller;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tracing::{Instrument, debug};

use crate::hook::HookRequest;
use crate::{Daemon, Out, ServeError};

/// The name the local operator acts under. Whoever can open the socket (mode
/// 0600, so the daemon's own user) is an admin.
pub const OPERATOR: &str = "operator";

/// Largest request line accepted (stdin of `keys:add` travels inside it).
const MAX_REQUEST: u64 = 1 << 20;

/// What a client asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// A management command, as words, with optional input.
    Command {
        /// The words, e.g. `["apps"]`.
        args: Vec<String>,
        /// What the command reads on stdin.
        #[serde(default)]
        stdin: Option<String>,
    },
    /// The pre-receive hook of a push.
    Hook(HookRequest),
}

/// One piece of the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frame {
    /// Text for stdout.
    Out(String),
    /// Text for stderr.
    Err(String),
    /// The exit status; the last frame.
    Exit(u32),
}

/// Opens the socket, refusing to steal it from a daemon that still answers.
pub(crate) async fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    if UnixStream::connect(path).await.is_ok() {
        return Err(ServeError::AlreadyRunning(
            path.parent().unwrap_or(path).to_owned(),
        ));
    }
    let listen_error = |source| ServeError::Listen {
        what: "control socket",
        address: path.display().to_string(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(listen_error(e)),
    }
    let listener = UnixListener::bind(path).map_err(listen_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(listen_error)?;
    Ok(listener)
}

pub(crate) async fn serve(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            // Failed clients and a lack of descriptors are waited out by the helper.
            accepted = nap_stdx::accept("control socket", || listener.accept()) => match accepted {
                Ok((stream, _)) => stream,
                Err(_broken) => return,
            },
        };
        let daemon = daemon.clone();
        tokio::spawn(
            async move {
                if let Err(e) = handle(stream, daemon).await {
                    debug!(error = %e, "control connection ended");
                }
            }
            .instrument(tracing::info_span!("control")),
        );
    }
}

async fn handle(stream: UnixStream, daemon: Arc<Daemon>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read.take(MAX_REQUEST));
    let mut line = String::new();
    read.read_line(&mut line).await?;
    let request: Request = match serde_json::from_str(&line) {
        Ok(request) => request,
        Err(e) => {
            write_frame(&mut write, &Frame::Err(format!(" !     bad request: {e}"))).await?;
            return write_frame(&mut write, &Frame::Exit(2)).await;
        }
    };
    // Output travels through two pipes whose reader turns it into frames,
    // so commands write plain bytes whatever door they serve.
    let (out_writer, out_reader) = tokio::io::duplex(64 * 1024);
    let (err_writer, err_reader) = tokio::io::duplex(64 * 1024);
    let (frames_tx, mut frames_rx) = mpsc::channel::<Frame>(64);
    let pump_out = crate::output::pump(out_reader, frames_tx.clone(), Frame::Out);
    let pump_err = crate::output::pump(err_reader, frames_tx, Frame::Err);
    let writer = async {
        while let Some(frame) = frames_rx.recv().await {
            write_frame(&mut write, &frame).await?;
        }
        Ok::<_, std::io::Error>(write)
    };
    let run = async {
        let mut out = Out::new(Box::new(out_writer), Box::new(err_writer));
        let status = match request {
            Request::Command { args, stdin } => {
                let caller = Caller {
                    user: OPERATOR.into(),
                    admin: true,
                };
                let line = shell_words::join(&args);
                let input: Box<dyn AsyncRead + Send + Unpin> =
                    Box::new(std::io::Cursor::new(stdin.unwrap_or_default().into_bytes()));
                daemon.execute(&caller, &line, input, &mut out).await
            }
            Request::Hook(hook) => daemon.pre_receive(hook, &mut out).await,
        };
        drop(out);
        status
    };
    // The client never sends more after its request: reading EOF (or
    // anything) means it hung up, and the command is dropped.
    let hangup = async {
        let mut byte = [0u8; 1];
        let _ = read.read(&mut byte).await;
    };
    let ((status, _, _), write) = tokio::select! {
        done = async { tokio::join!(async { tokio::join!(run, pump_out, pump_err) }, writer) } => done,
        () = hangup => { debug!("client hung up"); return Ok(()); }
    };
    let mut write = write?;
    write_frame(&mut write, &Frame::Exit(status)).await
}

async fn write_frame(write: &mut (impl AsyncWrite + Unpin), frame: &Frame) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(frame).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.flush().await
}

/// The client side: sends `request` to the daemon at `socket`, copies its
/// output to `stdout` and `stderr` as it comes, and returns the exit status.
pub async fn call(
    socket: &Path,
    request: &Request,
    stdout: &mut (impl AsyncWrite + Unpin),
    stderr: &mut (impl AsyncWrite + Unpin),
) -> std::io::Result<u32> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot reach the nap daemon at {}: {e} (is `nap serve` running with this data directory?)", socket.display()),
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        match serde_json::from_str::<Frame>(&line).map_err(std::io::Error::other)? {
            Frame::Out(text) => {
                stdout.write_all(text.as_bytes()).await?;
                stdout.flush().await?;
            }
            Frame::Err(text) => {
                stderr.write_all(text.as_bytes()).await?;
                stderr.flush().await?;
            }
            Frame::Exit(status) => return Ok(status),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the nap daemon hung up without an exit status",
    ))
}

#[cfg(test)]
#[path = "control_properties.rs"]
mod properties;
