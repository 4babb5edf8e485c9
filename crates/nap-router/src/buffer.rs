//! A byte stream with its read buffer: the bytes read from a connection but not used
//! yet. Every HTTP/1.1 connection of the router, the client's and each instance's, is
//! read through one, reused from message to message, so that a pipelined request or
//! the bytes after an upgrade are never lost between two reads.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How large a buffer starts; it grows (up to what its reader allows) only for heads
/// that do not fit.
const INITIAL: usize = 8 * 1024;

/// A stream and the bytes read from it that were not consumed yet.
pub(crate) struct Reader<S> {
    pub(crate) stream: S,
    /// Apart from the stream, so that the stream can be split (to write to it while its
    /// replies are read, see `exchange`).
    pub(crate) held: Held,
}

/// The bytes read from a stream and not consumed yet.
pub(crate) struct Held {
    /// What was read; the bytes before `start` are consumed. Reads go into its spare
    /// capacity, which is never zeroed first: a new connection's buffer costs an
    /// allocation, not a write of every byte.
    buffer: Vec<u8>,
    start: usize,
    /// How long a body passing through may make no progress on this connection
    /// ([`crate::Options::body_timeout`]).
    stall: Duration,
}

impl<S> Reader<S> {
    pub(crate) fn new(stream: S, stall: Duration) -> Reader<S> {
        Reader {
            stream,
            held: Held {
                buffer: Vec::with_capacity(INITIAL),
                start: 0,
                stall,
            },
        }
    }

    /// How long a body may make no progress on this connection.
    pub(crate) fn stall(&self) -> Duration {
        self.held.stall
    }

    /// The bytes read and not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        self.held.buffered()
    }

    /// Marks the first `count` buffered bytes as used.
    pub(crate) fn consume(&mut self, count: usize) {
        self.held.consume(count);
    }

    /// Takes up to `count` buffered bytes out, appending them to `to`; how many.
    pub(crate) fn take_into(&mut self, count: u64, to: &mut Vec<u8>) -> usize {
        let buffered = self.held.buffered();
        let taken =
            usize::try_from(count).map_or(buffered.len(), |count| count.min(buffered.len()));
        to.extend_from_slice(&buffered[..taken]);
        self.held.consume(taken);
        taken
    }
}

impl<S: AsyncRead + Unpin> Reader<S> {
    /// Reads more bytes into the buffer (see [`Held::fill`]).
    pub(crate) async fn fill(&mut self, limit: usize) -> io::Result<usize> {
        self.held.fill(&mut self.stream, limit).await
    }
}

impl Held {
    /// The bytes read and not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buffer[self.start..]
    }

    /// Marks the first `count` buffered bytes as used.
    pub(crate) fn consume(&mut self, count: usize) {
        self.start = (self.start + count).min(self.buffer.len());
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
    }

    /// Reads more bytes of `from` (the stream these bytes came from) into the buffer,
    /// making room first (moving what is left to the front, or growing the buffer
    /// towards `limit` bytes in all). Returns how many were read: 0 at the end of the
    /// stream, or when the buffer holds `limit` bytes.
    pub(crate) async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        from: &mut R,
        limit: usize,
    ) -> io::Result<usize> {
        if self.start > 0 && self.buffer.len() == self.buffer.capacity() {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        let held = self.buffer.len();
        if held >= limit {
            return Ok(0);
        }
        if held == self.buffer.capacity() {
            self.buffer.reserve(held.clamp(1, limit - held));
        }
        // Into the spare capacity only: there is some, so the vector does not grow.
        from.read_buf(&mut self.buffer).await
    }
}
