//! The bodies that flow through hyper (HTTP/2 clients' requests and their
//! answers), without boxing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::pool::Checkin;

/// What the router sends to an instance.
pub(crate) enum RequestBody {
    /// No body (most requests).
    Empty,
    /// A small body read in full, so the request can be sent again; `None`
    /// once it has been handed out.
    Buffered(Option<Bytes>),
    /// The client's body, streamed as it arrives; it can be sent only once.
    Streaming(Timed),
}

impl RequestBody {
    /// A fresh copy to send again, if this body can be sent again.
    pub(crate) fn replay(&self) -> Option<RequestBody> {
        match self {
            RequestBody::Empty => Some(RequestBody::Empty),
            RequestBody::Buffered(bytes) => Some(RequestBody::Buffered(bytes.clone())),
            RequestBody::Streaming(_) => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Buffered(bytes) => {
                Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes))))
            }
            RequestBody::Streaming(incoming) => Pin::new(incoming).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Buffered(bytes) => bytes.is_none(),
            RequestBody::Streaming(incoming) => incoming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Buffered(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |bytes| bytes.len() as u64))
            }
            RequestBody::Streaming(incoming) => incoming.size_hint(),
        }
    }
}

/// Why a client's HTTP/2 request body did not arrive in full.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The stream broke.
    Broke(hyper::Error),
    /// Nothing came for [`crate::Options::body_timeout`].
    Stalled,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Broke(error) => write!(f, "the request body broke: {error}"),
            BodyError::Stalled => {
                f.write_str("no more of the request body within the body timeout")
            }
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Broke(error) => Some(error),
            BodyError::Stalled => None,
        }
    }
}

/// A client's HTTP/2 request body that fails when no frame of it arrives for a
/// while (`stall`), as an HTTP/1.x body does: a client that opens a stream and then
/// sends nothing would hold the stream, and the request to the instance, for ever.
/// The clock runs only while the body is asked for a frame and has none: a body that
/// waits because the instance takes nothing is the instance's business.
pub(crate) struct Timed {
    incoming: Incoming,
    stall: Duration,
    /// Set while a frame is awaited: when the wait gives up.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    /// Set once the body has given up, for the caller to tell a stalled client
    /// (408) from a failed instance (502).
    stalled: Arc<AtomicBool>,
}

impl Timed {
    pub(crate) fn new(incoming: Incoming, stall: Duration, stalled: Arc<AtomicBool>) -> Timed {
        Timed {
            incoming,
            stall,
            timer: None,
            waiting: false,
            stalled,
        }
    }
}

impl Body for Timed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.incoming).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(BodyError::Broke)));
        }
        if !this.waiting {
            this.waiting = true;
            let deadline = Instant::now() + this.stall;
            match &mut this.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let expired = this
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if expired {
            this.stalled.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyError::Stalled)));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// What the router sends to a client.
pub(crate) enum ResponseBody {
    /// One of the router's own short pages (or nothing, for a 101).
    Page(Option<Bytes>),
    /// An instance's body, streamed as it arrives.
    Upstream(UpstreamBody),
}

impl ResponseBody {
    /// An instance's body; `checkin` gives the connection back to the pool
    /// once the body has been read to its end (and only then: a connection
    /// with a half-read response cannot carry another request).
    pub(crate) fn upstream(incoming: Incoming, checkin: Checkin) -> ResponseBody {
        let mut body = UpstreamBody {
            incoming,
            checkin: Some(checkin),
        };
        // hyper does not poll a body that says it is empty (HEAD, 204,
        // `Content-Length: 0`), so the end has to be noticed here.
        if body.incoming.is_end_stream() {
            body.finish();
        }
        ResponseBody::Upstream(body)
    }
}

/// An instance's response body and the connection it arrives on.
pub(crate) struct UpstreamBody {
    incoming: Incoming,
    checkin: Option<Checkin>,
}

impl UpstreamBody {
    fn finish(&mut self) {
        if let Some(checkin) = self.checkin.take() {
            checkin.finish();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Page(bytes) => {
                Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes))))
            }
            ResponseBody::Upstream(body) => {
                let mut frame = Pin::new(&mut body.incoming).poll_frame(cx);
                // The instance's connection is driven by this task: once the
                // body has asked for data (the poll above), let it read and
                // pass the data on, then look again.
                if frame.is_pending()
                    && let Some(checkin) = body.checkin.as_mut()
                {
                    checkin.connection.drive(cx);
                    frame = Pin::new(&mut body.incoming).poll_frame(cx);
                }
                match &frame {
                    // hyper stops polling once `is_end_stream` says so, so
                    // the end may be the last frame rather than a `None`.
                    Poll::Ready(None) => body.finish(),
                    Poll::Ready(Some(Ok(_))) if body.incoming.is_end_stream() => body.finish(),
                    // A broken connection is not given back: dropping the
                    // checkin drops the connection.
                    Poll::Ready(Some(Err(_))) => body.checkin = None,
                    Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
                }
                frame
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Page(bytes) => bytes.is_none(),
            ResponseBody::Upstream(body) => body.incoming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Page(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |bytes| bytes.len() as u64))
            }
            ResponseBody::Upstream(body) => body.incoming.size_hint(),
        }
    }
}
