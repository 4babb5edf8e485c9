//! Writing the daemon's output to this process's stdout and stderr as it comes, without
//! tokio's `stdout()`/`stderr()`: those hand every write to a thread of tokio's blocking
//! pool, which the first write has to start. The hook and `nap COMMAND` do nothing else
//! while they print, so a plain blocking write in place is all they need, and a push's
//! hook starts no thread but its own.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

/// A [`Write`] used as an [`AsyncWrite`] whose every call is done at once, blocking.
pub struct BlockingWrite<W>(pub W);

impl<W: Write + Unpin> AsyncWrite for BlockingWrite<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.get_mut().0.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.get_mut().0.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}
