//! Copying a message body from one connection to the other, framed as the receiving
//! side needs it: exactly `Content-Length` bytes, chunks checked one by one (passed on
//! as chunks, or as plain bytes for an HTTP/1.0 client), or everything until the
//! sender closes.
//!
//! The bytes to send collect in the caller's write buffer, which may already hold the
//! message's head, and leave whenever the source has nothing more buffered: a small
//! response goes out in one write, a large one streams.
//!
//! A body that makes no progress for [`crate::Options::body_timeout`] — nothing arrives
//! from its sender, or its receiver takes nothing — is cut. The timer costs nothing
//! when the bytes are there at once: tokio registers it only when the read or write has
//! to wait.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::buffer::Reader;
use crate::request::MAX_HEAD;

/// How much the write buffer may hold before it is sent.
const FLUSH_AT: usize = 64 * 1024;
/// How much of a source the read buffer holds at most while a body passes.
const READ_LIMIT: usize = 64 * 1024;

/// Why a body did not pass in full.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The source broke or ended early.
    Source(io::Error),
    /// The source's framing was malformed (a bad chunk).
    Malformed,
    /// The receiving side broke.
    Sink(io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Source(error) => write!(f, "reading the body: {error}"),
            Failure::Malformed => f.write_str("a malformed chunk"),
            Failure::Sink(error) => write!(f, "passing the body on: {error}"),
        }
    }
}

impl std::error::Error for Failure {}

/// How chunks are passed on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunks {
    /// As chunks again.
    Framed,
    /// As plain bytes (the receiver reads until close).
    Plain,
}

/// Sends what `out` holds; a receiver that takes none of it for `stall` fails.
pub(crate) async fn flush<W: AsyncWrite + Unpin>(
    to: &mut W,
    out: &mut Vec<u8>,
    stall: Duration,
) -> Result<(), Failure> {
    if !out.is_empty() {
        write_all(to, out, stall).await?;
        out.clear();
    }
    Ok(())
}

/// Writes all of `bytes`, each write given `stall` to take something.
async fn write_all<W: AsyncWrite + Unpin>(
    to: &mut W,
    mut bytes: &[u8],
    stall: Duration,
) -> Result<(), Failure> {
    while !bytes.is_empty() {
        match tokio::time::timeout(stall, to.write(bytes)).await {
            Ok(Ok(0)) => return Err(Failure::Sink(io::ErrorKind::WriteZero.into())),
            Ok(Ok(written)) => bytes = &bytes[written..],
            Ok(Err(error)) => return Err(Failure::Sink(error)),
            Err(_) => return Err(Failure::Sink(stalled())),
        }
    }
    Ok(())
}

/// Reads more of `from` into its buffer, given its `stall` to send something.
async fn fill<R: AsyncRead + Unpin>(from: &mut Reader<R>) -> Result<usize, Failure> {
    let stall = from.stall();
    match tokio::time::timeout(stall, from.fill(READ_LIMIT)).await {
        Ok(Ok(read)) => Ok(read),
        Ok(Err(error)) => Err(Failure::Source(error)),
        Err(_) => Err(Failure::Source(stalled())),
    }
}

/// The error of a side that made no progress in time.
fn stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "no progress within the router's body timeout",
    )
}

/// Reads more of the source, first sending what is waiting (the receiver should not
/// wait for bytes the router holds while it waits itself). An early end is a failure.
async fn more<R, W>(from: &mut Reader<R>, to: &mut W, out: &mut Vec<u8>) -> Result<(), Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    flush(to, out, from.stall()).await?;
    match fill(from).await? {
        0 => Err(Failure::Source(io::ErrorKind::UnexpectedEof.into())),
        _ => Ok(()),
    }
}

/// Passes exactly `length` bytes on, leaving the last of them in `out`.
pub(crate) async fn relay_length<R, W>(
    from: &mut Reader<R>,
    to: &mut W,
    out: &mut Vec<u8>,
    mut length: u64,
) -> Result<(), Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        // Large pieces go straight from the read buffer, without a copy into `out`.
        let buffered = from.buffered();
        let here =
            usize::try_from(length).map_or(buffered.len(), |length| length.min(buffered.len()));
        if out.is_empty() && here >= FLUSH_AT {
            let stall = from.stall();
            write_all(to, &from.buffered()[..here], stall).await?;
            from.consume(here);
        } else {
            from.take_into(length, out);
            if out.len() >= FLUSH_AT {
                flush(to, out, from.stall()).await?;
            }
        }
        length -= here as u64;
        if length == 0 {
            return Ok(());
        }
        more(from, to, out).await?;
    }
}

/// Passes a chunked body on, checking each chunk-size line and the CRLF after each
/// chunk's data; trailers are read and dropped. The end is left in `out`.
pub(crate) async fn relay_chunked<R, W>(
    from: &mut Reader<R>,
    to: &mut W,
    out: &mut Vec<u8>,
    chunks: Chunks,
) -> Result<(), Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let size = loop {
            match httparse::parse_chunk_size(from.buffered()) {
                Ok(httparse::Status::Complete((used, size))) => {
                    from.consume(used);
                    break size;
                }
                Ok(httparse::Status::Partial) if from.buffered().len() < 1024 => {
                    more(from, to, out).await?;
                }
                _ => return Err(Failure::Malformed),
            }
        };
        if size == 0 {
            skip_trailers(from, to, out).await?;
            if chunks == Chunks::Framed {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            return Ok(());
        }
        if chunks == Chunks::Framed {
            chunk_size_line(out, size);
        }
        relay_length(from, to, out, size).await?;
        while from.buffered().len() < 2 {
            more(from, to, out).await?;
        }
        if &from.buffered()[..2] != b"\r\n" {
            return Err(Failure::Malformed);
        }
        from.consume(2);
        if chunks == Chunks::Framed {
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Reads the trailer lines after the last chunk, up to the empty line.
async fn skip_trailers<R, W>(
    from: &mut Reader<R>,
    to: &mut W,
    out: &mut Vec<u8>,
) -> Result<(), Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut skipped = 0;
    loop {
        let buffered = from.buffered();
        match buffered.iter().position(|&byte| byte == b'\n') {
            Some(end) if end == 0 || buffered[end - 1] != b'\r' => return Err(Failure::Malformed),
            Some(end) => {
                from.consume(end + 1);
                if end == 1 {
                    return Ok(());
                }
                skipped += end + 1;
            }
            None => more(from, to, out).await?,
        }
        if skipped > MAX_HEAD {
            return Err(Failure::Malformed);
        }
    }
}

/// Passes everything on until the source closes: as chunks (with the last chunk,
/// left in `out`) or as plain bytes.
pub(crate) async fn relay_until_close<R, W>(
    from: &mut Reader<R>,
    to: &mut W,
    out: &mut Vec<u8>,
    chunks: Chunks,
) -> Result<(), Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let here = from.buffered().len();
        if here > 0 {
            if chunks == Chunks::Framed {
                chunk_size_line(out, here as u64);
            }
            from.take_into(here as u64, out);
            if chunks == Chunks::Framed {
                out.extend_from_slice(b"\r\n");
            }
        }
        flush(to, out, from.stall()).await?;
        if fill(from).await? == 0 {
            break;
        }
    }
    if chunks == Chunks::Framed {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    Ok(())
}

/// A chunk's size line: the size in hexadecimal, CRLF.
fn chunk_size_line(out: &mut Vec<u8>, size: u64) {
    let digits = (64 - size.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev() {
        out.push(b"0123456789abcdef"[((size >> (shift * 4)) & 0xf) as usize]);
    }
    out.extend_from_slice(b"\r\n");
}

/// A writer that remembers whether anything went through it: whether a client has
/// seen any of a response yet, and can still be given an error page instead.
pub(crate) struct Tally<'w, W> {
    pub(crate) inner: &'w mut W,
    pub(crate) wrote: bool,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Tally<'_, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut *this.inner).poll_write(cx, bytes);
        if matches!(poll, Poll::Ready(Ok(written)) if written > 0) {
            this.wrote = true;
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}
