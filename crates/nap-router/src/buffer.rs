//! A byte stream with its read buffer: the bytes read from a connection but not used
//! yet. Every HTTP/1.1 connection of the router, the client's and each instance's, is
//! read through one, reused from message to message, so that a pipelined request or
//! the bytes after an upgrade are never lost between two reads.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How large a buffer starts; it grows (up to what its reader allows) only for heads
/// that do not fit.
const INITIAL: usize = 8 * 1024;

/// A stream and the bytes read from it that were not consumed yet.
pub(crate) struct Reader<S> {
    pub(crate) stream: S,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
}

impl<S> Reader<S> {
    pub(crate) fn new(stream: S) -> Reader<S> {
        Reader {
            stream,
            buffer: vec![0; INITIAL],
            start: 0,
            end: 0,
        }
    }

    /// The bytes read and not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }

    /// Marks the first `count` buffered bytes as used.
    pub(crate) fn consume(&mut self, count: usize) {
        self.start = (self.start + count).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Takes up to `count` buffered bytes out, appending them to `to`; how many.
    pub(crate) fn take_into(&mut self, count: u64, to: &mut Vec<u8>) -> usize {
        let taken = usize::try_from(count).map_or(self.end - self.start, |count| {
            count.min(self.end - self.start)
        });
        to.extend_from_slice(&self.buffer[self.start..self.start + taken]);
        self.consume(taken);
        taken
    }
}

impl<S: AsyncRead + Unpin> Reader<S> {
    /// Reads more bytes into the buffer, making room first (moving what is left to the
    /// front, or growing the buffer up to `limit` bytes in all). Returns how many were
    /// read: 0 at the end of the stream, or when the buffer holds `limit` bytes.
    pub(crate) async fn fill(&mut self, limit: usize) -> io::Result<usize> {
        if self.end == self.buffer.len() {
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buffer.len() < limit {
                let grown = (self.buffer.len() * 2).min(limit);
                self.buffer.resize(grown, 0);
            } else {
                return Ok(0);
            }
        }
        let read = self.stream.read(&mut self.buffer[self.end..]).await?;
        self.end += read;
        Ok(read)
    }
}
