//! A client connection that acknowledges what it reads at once.
//!
//! An SSH client sends several messages in a row at times (its key exchange init
//! right after its algorithm list, a channel request after the channel open), and
//! OpenSSH's client keeps Nagle's algorithm on for a session without a terminal
//! (every `git push`): its second small message waits until the first one is
//! acknowledged. Linux's receiver delays that ACK by up to 40 ms once it sees a
//! connection answer what it reads (its "ping-pong" mode), and an SSH server has
//! nothing to answer a client's algorithm list with. Measured with tcpdump on a
//! `git push` to nap: 40 ms of nothing before the key exchange in two of three
//! sessions. After every read this asks the kernel for quick ACKs again
//! (`TCP_QUICKACK`, which the kernel drops by itself as the conversation goes on),
//! which also sends an ACK it was holding back.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::debug;

/// A [`TcpStream`] that asks for quick ACKs after each read that returns bytes.
pub(crate) struct QuickAck {
    stream: TcpStream,
    /// Set once the socket refused the option: not asked again.
    refused: bool,
}

impl QuickAck {
    pub(crate) fn new(stream: TcpStream) -> QuickAck {
        QuickAck {
            stream,
            refused: false,
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && !self.refused
            && let Err(error) = rustix::net::sockopt::set_tcp_quickack(&self.stream, true)
        {
            debug!(%error, "cannot ask for quick ACKs");
            self.refused = true;
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair on 127.0.0.1: (client, server).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[tokio::test]
    async fn a_read_turns_delayed_acks_off_again() {
        let (mut client, server) = pair().await;
        // Delayed ACKs, as the kernel turns them on for a connection that answers.
        rustix::net::sockopt::set_tcp_quickack(&server, false).expect("ping-pong mode");
        assert!(!rustix::net::sockopt::tcp_quickack(&server).expect("TCP_QUICKACK"));
        let mut server = QuickAck::new(server);
        client.write_all(b"kexinit").await.expect("write");
        let mut read = [0u8; 7];
        server.read_exact(&mut read).await.expect("read");
        assert_eq!(&read, b"kexinit");
        assert!(
            rustix::net::sockopt::tcp_quickack(&server.stream).expect("TCP_QUICKACK"),
            "after a read the server acknowledges at once again"
        );
    }
}
