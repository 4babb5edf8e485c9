//! One HTTP/1.x request on its way to an app's instances and its answer on the way
//! back: the body kept or streamed, the tries (`forward`'s loop over the [`Raw`]
//! transport: bytes over raw TCP connections kept per instance), the instance's
//! response head checked and written again, its body passed on, and the tunnel after a
//! 101. An instance's connection goes back to its pool only after a response that
//! ended exactly where its framing said, with nothing unasked behind it.

use std::pin::pin;
use std::time::Duration;

use hyper::StatusCode;
use hyper::body::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use crate::buffer::{Held, Reader};
use crate::forward::{Attempt, Transport, Unanswered};
use crate::framing::{self, Chunks, Failure};
use crate::h1::{Ask, Page, write_page};
use crate::pool;
use crate::proxy::Proxy;
use crate::request::{Framing, MAX_HEAD, header_slots};
use crate::response::{self, Body, Sending};
use crate::table::Upstream;

/// One request on its way to an app's instances and back.
pub(crate) struct Exchange<'e, S> {
    pub(crate) proxy: &'e Proxy,
    pub(crate) reader: &'e mut Reader<S>,
    pub(crate) out: &'e mut Vec<u8>,
    /// The head the instance gets.
    pub(crate) head: &'e [u8],
    pub(crate) ask: &'e Ask,
    /// The app's name, for pages and the log.
    pub(crate) name: &'e str,
}

/// What a request's body is as it goes from try to try.
enum RawBody {
    Empty,
    /// Read in full (small, of an idempotent request), so it can be sent again.
    Kept(Bytes),
    /// Passed on from the client's connection as it comes, once.
    Streaming(Framing),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Exchange<'_, S> {
    /// Forwards the request, passes the answer on; the status, the instance, and
    /// whether the client's connection can take another request.
    pub(crate) async fn forward(
        &mut self,
        routed: crate::forward::Routed<'_>,
    ) -> (u16, Option<std::net::SocketAddr>, bool) {
        let ask = self.ask;
        if ask.expect_continue && ask.framing != Framing::Empty {
            // The router reads the body itself; the instance gets it without asking.
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            if framing::flush(&mut self.reader.stream, self.out, self.proxy.body_timeout)
                .await
                .is_err()
            {
                return (400, None, false);
            }
        }
        let body = match ask.framing {
            Framing::Empty => RawBody::Empty,
            Framing::Length(length) if ask.idempotent && length <= self.proxy.retry_body_limit => {
                match self.keep_body(length).await {
                    Some(body) => body,
                    None => return (400, None, false),
                }
            }
            framing => RawBody::Streaming(framing),
        };
        // After a failure the connection can go on only if the body is not left
        // half-read on it.
        let body_read = !matches!(body, RawBody::Streaming(_));
        let mut transport = Raw {
            head: self.head,
            client: &mut *self.reader,
            out: &mut *self.out,
            upgrade: ask.upgrade,
            client_failed: None,
            answered_early: false,
        };
        let sent = self
            .proxy
            .send(&mut transport, routed, self.name, body, ask.idempotent)
            .await;
        let client_failed = transport.client_failed.take();
        let early = transport.answered_early;
        let (instance, upstream, claim) = match sent {
            Ok(answer) => answer,
            Err(unanswered) => {
                if let Some(failure) = client_failed {
                    debug!(%failure, "the client's request body broke");
                    if matches!(failure, Failure::Malformed) {
                        let page = Page::new(StatusCode::BAD_REQUEST, "400 Bad Request\n");
                        write_page(self.out, ask, false, &page);
                        let _ = framing::flush(
                            &mut self.reader.stream,
                            self.out,
                            self.proxy.body_timeout,
                        )
                        .await;
                    }
                    return (400, None, false);
                }
                let addr = match unanswered {
                    Unanswered::Broke(addr) => Some(addr),
                    Unanswered::Unsent(_) => None,
                };
                let (status, keep) = self.bad_gateway("no instance answered", body_read).await;
                return (status, addr, keep);
            }
        };
        let addr = upstream.addr;
        let (status, keep) = self.answer(instance, &upstream, claim, !early).await;
        if early {
            self.linger().await;
        }
        (status, Some(addr), keep)
    }

    /// Reads a small body in full.
    async fn keep_body(&mut self, length: u64) -> Option<RawBody> {
        let mut body = Vec::with_capacity(usize::try_from(length).ok()?);
        let mut left = length;
        loop {
            left -= self.reader.take_into(left, &mut body) as u64;
            if left == 0 {
                return Some(RawBody::Kept(Bytes::from(body)));
            }
            match self.reader.fill(MAX_HEAD).await {
                Ok(read) if read > 0 => {}
                _ => return None,
            }
        }
    }

    /// Passes the instance's response on to the client: its status, and whether the
    /// client's connection can take another request. Without `body_read` the instance
    /// answered before the request's body had passed in full: the rest of it is still
    /// on the client's connection, which is closed after the answer, and the instance's
    /// is not used again.
    async fn answer(
        &mut self,
        mut instance: Reader<TcpStream>,
        upstream: &Upstream,
        claim: crate::traffic::Claim,
        body_read: bool,
    ) -> (u16, bool) {
        let ask = self.ask;
        loop {
            // Read in a block that does not wait, so that the header slots are no
            // part of the connection's future.
            let seen = {
                let mut slots = header_slots();
                match response::parse(instance.buffered(), &mut slots, ask.head_request) {
                    Ok(None) => Seen::More,
                    Err(odd) => Seen::Odd(odd.0),
                    Ok(Some((parsed, length))) => {
                        let seen = match parsed.code {
                            101 if ask.upgrade => {
                                response::write_client_head(
                                    &parsed,
                                    Sending::AsIs,
                                    false,
                                    true,
                                    true,
                                    self.out,
                                );
                                Seen::Switched
                            }
                            101 => Seen::SwitchedUnasked,
                            // Interim responses go no further, as with hyper's client
                            // before.
                            code if code < 200 => Seen::Interim,
                            code => {
                                let sending = response::sending(&parsed, ask.http10);
                                let keep =
                                    ask.keep_alive && body_read && sending != Sending::UntilClose;
                                response::write_client_head(
                                    &parsed, sending, ask.http10, keep, false, self.out,
                                );
                                Seen::Final {
                                    code,
                                    sending,
                                    keep,
                                    body: parsed.body,
                                    reusable: parsed.reusable() && !ask.upgrade && body_read,
                                }
                            }
                        };
                        instance.consume(length);
                        seen
                    }
                }
            };
            let (code, sending, keep, body, reusable) = match seen {
                Seen::More => match instance.fill(MAX_HEAD).await {
                    Ok(read) if read > 0 || instance.buffered().len() >= MAX_HEAD => continue,
                    _ => {
                        return self
                            .bad_gateway("closed in the middle of its response head", body_read)
                            .await;
                    }
                },
                Seen::Odd(why) => return self.bad_gateway(why, body_read).await,
                Seen::Interim => continue,
                Seen::SwitchedUnasked => {
                    let text = format!(
                        "502 Bad Gateway: {} switched protocols unasked\n",
                        self.name
                    );
                    return self.bad_gateway_text(text, body_read).await;
                }
                Seen::Switched => {
                    drop(claim);
                    self.tunnel(instance, upstream.addr).await;
                    return (101, false);
                }
                Seen::Final {
                    code,
                    sending,
                    keep,
                    body,
                    reusable,
                } => (code, sending, keep, body, reusable),
            };
            let chunks = if sending == Sending::Chunked {
                Chunks::Framed
            } else {
                Chunks::Plain
            };
            let mut to = framing::Tally {
                inner: &mut self.reader.stream,
                wrote: false,
            };
            let relayed = match body {
                Body::None => Ok(()),
                Body::Length(length) => {
                    framing::relay_length(&mut instance, &mut to, self.out, length).await
                }
                Body::Chunked => {
                    framing::relay_chunked(&mut instance, &mut to, self.out, chunks).await
                }
                Body::UntilClose => {
                    framing::relay_until_close(&mut instance, &mut to, self.out, chunks).await
                }
            };
            let relayed = match relayed {
                Ok(()) => framing::flush(&mut to, self.out, self.proxy.body_timeout).await,
                failed => failed,
            };
            let wrote = to.wrote;
            if let Err(failure) = relayed {
                debug!(instance = %upstream.addr, %failure, "response cut short");
                self.out.clear();
                // Nothing of it reached the client yet: it can still get a proper
                // answer instead.
                if !wrote && !matches!(failure, Failure::Sink(_)) {
                    return self.bad_gateway("its response broke", body_read).await;
                }
                return (code, false);
            }
            // Bytes after the end of the response are something no request asked for:
            // that connection is not used again.
            if reusable && instance.buffered().is_empty() && !upstream.presence.retired() {
                upstream.raw.put(instance);
            }
            drop(claim);
            return (code, keep);
        }
    }

    /// After an answer that came before the request's body was read in full: the client
    /// may still be sending the rest. A connection closed with received bytes unread is
    /// reset by the kernel, and a reset can destroy the answer at the client before it
    /// was read (RFC 9112 §9.6). So the router closes its sending side and reads and
    /// drops what still comes, until the client closes, is quiet for a while, or has
    /// had its time (nginx's `lingering_close`, with its default times).
    async fn linger(&mut self) {
        if self.reader.stream.shutdown().await.is_err() {
            return;
        }
        let quiet = LINGER_QUIET.min(self.proxy.body_timeout);
        let until = tokio::time::Instant::now() + LINGER_AT_MOST;
        loop {
            let buffered = self.reader.buffered().len();
            self.reader.consume(buffered);
            let wait = until.min(tokio::time::Instant::now() + quiet);
            match tokio::time::timeout_at(wait, self.reader.fill(MAX_HEAD)).await {
                Ok(Ok(read)) if read > 0 => {}
                _ => return,
            }
        }
    }

    /// No answer can be passed on, and nothing of one was: 502. The client's
    /// connection goes on if the request's body was read in full (`body_read`).
    async fn bad_gateway(&mut self, why: &str, body_read: bool) -> (u16, bool) {
        debug!(app = self.name, why, "no answer to pass on");
        let text = format!("502 Bad Gateway: {} did not answer\n", self.name);
        self.bad_gateway_text(text, body_read).await
    }

    async fn bad_gateway_text(&mut self, text: String, body_read: bool) -> (u16, bool) {
        let keep = self.ask.keep_alive && body_read;
        write_page(
            self.out,
            self.ask,
            keep,
            &Page::new(StatusCode::BAD_GATEWAY, text),
        );
        let flushed =
            framing::flush(&mut self.reader.stream, self.out, self.proxy.body_timeout).await;
        (502, keep && flushed.is_ok())
    }

    /// After a 101: the head, the bytes either side sent past it, then bytes both
    /// ways until either side closes.
    async fn tunnel(&mut self, mut instance: Reader<TcpStream>, addr: std::net::SocketAddr) {
        self.out.extend_from_slice(instance.buffered());
        instance.consume(instance.buffered().len());
        if framing::flush(&mut self.reader.stream, self.out, self.proxy.body_timeout)
            .await
            .is_err()
        {
            return;
        }
        let early = self.reader.buffered().len();
        if early > 0 {
            if instance
                .stream
                .write_all(self.reader.buffered())
                .await
                .is_err()
            {
                return;
            }
            self.reader.consume(early);
        }
        match tokio::io::copy_bidirectional(&mut self.reader.stream, &mut instance.stream).await {
            Ok((sent, received)) => {
                debug!(instance = %addr, sent, received, "upgraded connection closed")
            }
            Err(error) => debug!(instance = %addr, %error, "upgraded connection broke"),
        }
    }
}

/// How long a lingering close ([`Exchange::linger`]) goes on at most, and how long it
/// waits for more of the body (or less, the body timeout).
const LINGER_AT_MOST: Duration = Duration::from_secs(30);
const LINGER_QUIET: Duration = Duration::from_secs(5);

/// What an instance's response head turned out to be.
enum Seen {
    /// Not all of it has arrived.
    More,
    /// Not to be passed on.
    Odd(&'static str),
    /// A 1xx other than 101, dropped.
    Interim,
    /// A 101 to an upgrade request; its head is in the write buffer.
    Switched,
    /// A 101 nobody asked for.
    SwitchedUnasked,
    /// The final response; its head is in the write buffer.
    Final {
        code: u16,
        sending: Sending,
        keep: bool,
        body: Body,
        reusable: bool,
    },
}

/// A request sent as bytes over raw TCP connections to instances.
struct Raw<'r, S> {
    head: &'r [u8],
    client: &'r mut Reader<S>,
    /// The write buffer towards instances (the client's, which is idle meanwhile).
    out: &'r mut Vec<u8>,
    upgrade: bool,
    /// Set when the client's side of a streaming body broke, not the instance's.
    client_failed: Option<Failure>,
    /// Set when the instance answered before a streaming body had passed in full.
    answered_early: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for Raw<'_, S> {
    type Body = RawBody;
    type Answer = Reader<TcpStream>;

    fn replay(body: &RawBody) -> Option<RawBody> {
        match body {
            RawBody::Empty => Some(RawBody::Empty),
            RawBody::Kept(bytes) => Some(RawBody::Kept(bytes.clone())),
            RawBody::Streaming(_) => None,
        }
    }

    /// On an idle pooled connection if one is still open, otherwise a new one (an
    /// upgrade always gets its own). The head leaves in one write with whatever of the
    /// body is at hand; until that write succeeded nothing was consumed, so a
    /// connection that fails it leaves the request whole for the next one.
    async fn attempt(
        &mut self,
        proxy: &Proxy,
        upstream: &Upstream,
        body: RawBody,
        _keep: bool,
    ) -> Attempt<Reader<TcpStream>, RawBody> {
        let mut pooled = if self.upgrade {
            None
        } else {
            upstream.raw.take()
        };
        loop {
            let reused = pooled.is_some();
            let mut instance = match pooled.take() {
                Some(instance) => instance,
                None => match pool::connect_tcp(upstream.addr, proxy.connect_timeout).await {
                    Ok(stream) => Reader::new(stream, proxy.body_timeout),
                    Err(error) => return Attempt::NotSent(body, error.into()),
                },
            };
            self.out.clear();
            self.out.extend_from_slice(self.head);
            let mut prefix = 0;
            match &body {
                RawBody::Kept(bytes) => self.out.extend_from_slice(bytes),
                RawBody::Streaming(Framing::Length(length)) => {
                    let buffered = self.client.buffered();
                    prefix = usize::try_from(*length)
                        .map_or(buffered.len(), |length| length.min(buffered.len()));
                    self.out.extend_from_slice(&buffered[..prefix]);
                }
                RawBody::Empty | RawBody::Streaming(_) => {}
            }
            if let Err(error) = instance.stream.write_all(self.out).await {
                self.out.clear();
                if reused {
                    pooled = upstream.raw.take();
                    continue;
                }
                return Attempt::NotSent(body, error.into());
            }
            self.out.clear();
            self.client.consume(prefix);
            let rest = match body {
                RawBody::Streaming(Framing::Length(length)) if length > prefix as u64 => {
                    Some(Framing::Length(length - prefix as u64))
                }
                RawBody::Streaming(Framing::Chunked) => Some(Framing::Chunked),
                _ => None,
            };
            if let Some(rest) = rest {
                // Boxed: its future is large, and every request's future would carry it.
                let streamed =
                    Box::pin(stream_body(self.client, &mut instance, self.out, rest)).await;
                self.out.clear();
                match streamed {
                    Streamed::Whole => {}
                    Streamed::Answered => {
                        self.answered_early = true;
                        return Attempt::Answered(instance);
                    }
                    Streamed::Failed(failure @ Failure::Sink(_)) => {
                        return Attempt::Sent(Box::new(failure));
                    }
                    Streamed::Failed(failure) => {
                        self.client_failed = Some(failure);
                        return Attempt::Sent("the client's body broke".into());
                    }
                }
            }
            // The answer may have started while the body passed.
            if !instance.buffered().is_empty() {
                return Attempt::Answered(instance);
            }
            return match instance.fill(MAX_HEAD).await {
                Ok(0) => Attempt::Sent("closed before answering".into()),
                Ok(_) => Attempt::Answered(instance),
                Err(error) => Attempt::Sent(error.into()),
            };
        }
    }
}

/// How a streamed request body went.
enum Streamed {
    /// It passed in full.
    Whole,
    /// The instance answered before it had: its response head is buffered.
    Answered,
    /// It broke, and the instance said nothing.
    Failed(Failure),
}

/// Passes the rest of a streamed request body on to the instance while reading what
/// the instance sends meanwhile: an app may answer before it has read the body (a
/// 413, a 401, a redirect) and then close or stop reading. Its answer is read as it
/// comes, not after the body, because a connection closed with the body unread gets
/// reset, and with it whatever was not read yet may be lost. Interim responses are
/// dropped; once a final response head is in, the body stops.
async fn stream_body<S>(
    client: &mut Reader<S>,
    instance: &mut Reader<TcpStream>,
    out: &mut Vec<u8>,
    rest: Framing,
) -> Streamed
where
    S: AsyncRead + Unpin,
{
    let stall = instance.stall();
    let Reader { stream, held } = instance;
    let (mut from, mut to) = stream.split();
    let relay = async {
        let relayed = match rest {
            Framing::Length(length) => framing::relay_length(client, &mut to, out, length).await,
            _ => framing::relay_chunked(client, &mut to, out, Chunks::Framed).await,
        };
        match relayed {
            Ok(()) => framing::flush(&mut to, out, stall).await,
            failed => failed,
        }
    };
    let mut relay = pin!(relay);
    // Whether the instance's side may still send something.
    let mut open = true;
    let failure = loop {
        tokio::select! {
            biased;
            read = held.fill(&mut from, MAX_HEAD), if open => {
                open = matches!(read, Ok(read) if read > 0);
                if final_head(held) {
                    return Streamed::Answered;
                }
            }
            relayed = &mut relay => match relayed {
                Ok(()) => return Streamed::Whole,
                Err(failure) => break failure,
            },
        }
    };
    if !matches!(failure, Failure::Sink(_)) {
        return Streamed::Failed(failure);
    }
    // The instance took no more of the body: what it said before it closed is
    // buffered or still to be read.
    while open && !final_head(held) {
        let read = tokio::time::timeout(stall, held.fill(&mut from, MAX_HEAD)).await;
        open = matches!(read, Ok(Ok(read)) if read > 0);
    }
    if held.buffered().is_empty() {
        Streamed::Failed(failure)
    } else {
        // A final head, or part of one, or something odd: `answer` tells which.
        Streamed::Answered
    }
}

/// Whether `held` starts with a final response head (or with bytes no response starts
/// with); interim responses before it are dropped.
fn final_head(held: &mut Held) -> bool {
    loop {
        let interim = {
            let mut slots = header_slots();
            match response::parse(held.buffered(), &mut slots, false) {
                Ok(None) => return false,
                Err(_) => return true,
                Ok(Some((parsed, _))) if parsed.code >= 200 || parsed.code == 101 => return true,
                Ok(Some((_, length))) => length,
            }
        };
        held.consume(interim);
    }
}
