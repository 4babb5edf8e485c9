//! Sending a request on to an app's instances: in which order, on which
//! connection, and what is retried.
//!
//! The retry rule, like nginx's `proxy_next_upstream error`:
//! - a connection that could not be opened (refused, reset, timed out), or a
//!   pooled one found closed before the request was written, sends the
//!   request — any request, even one with a large streaming body — to the
//!   next instance at once, because the instance saw nothing of it;
//! - a connection that fails after the request was written but before the
//!   response started sends the request on only if the method is idempotent
//!   (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) and its body was small enough to
//!   keep ([`crate::Options::retry_body_limit`]); a POST that an instance may
//!   have half-done is answered 502 rather than done twice;
//! - each instance is tried at most once per request, and once the response
//!   has started nothing is retried;
//! - an instance out of rotation (being drained, see `traffic`) is passed over
//!   before anything is sent to it; if every instance of the request's routes
//!   was, the request comes back whole so that newer routes can take it.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response, Uri};
use tracing::debug;

use crate::body::RequestBody;
use crate::pool::{self, Connection};
use crate::proxy::Proxy;
use crate::table::{App, RouteView, Table, Upstream};
use crate::traffic::Claim;

/// The order in which a request tries an app's instances, as indexes into
/// its list.
pub(crate) enum Order {
    /// Round robin from `start`: the usual case, with nothing to allocate.
    Rotation { start: usize, len: usize },
    /// Some instances refused connections lately: the others first, in
    /// round-robin order, then those.
    Listed(Vec<usize>),
}

impl Order {
    /// The order for the next request to `app`, which has instances.
    pub(crate) fn of(app: &App) -> Order {
        let len = app.instances.len();
        let turn = app.next_turn();
        if !app.instances.iter().any(|upstream| upstream.suspect()) {
            return Order::Rotation {
                start: turn % len,
                len,
            };
        }
        let (mut healthy, suspects): (Vec<usize>, Vec<usize>) =
            (0..len).partition(|&index| !app.instances[index].suspect());
        if !healthy.is_empty() {
            let healthy_len = healthy.len();
            healthy.rotate_left(turn % healthy_len);
        }
        healthy.extend(suspects);
        Order::Listed(healthy)
    }

    fn len(&self) -> usize {
        match self {
            Order::Rotation { len, .. } => *len,
            Order::Listed(list) => list.len(),
        }
    }

    /// The index of the `nth` instance to try.
    fn nth(&self, nth: usize) -> usize {
        match self {
            Order::Rotation { start, len } => (start + nth) % len,
            Order::Listed(list) => list[nth],
        }
    }
}

/// The request as it goes to instances, kept to be sent more than once.
pub(crate) struct Template {
    method: Method,
    uri: Uri,
    /// `None` while they travel with a request that has not come back.
    headers: Option<HeaderMap>,
}

impl Template {
    pub(crate) fn new(method: Method, uri: Uri, headers: HeaderMap) -> Template {
        Template {
            method,
            uri,
            headers: Some(headers),
        }
    }

    /// The request to send. With `keep`, the headers are copied because a
    /// retry may need them; otherwise they move into the request, and a
    /// request that comes back unsent gives them back ([`Template::restore`]).
    /// A copy is a few allocations per request, so it is made only when a
    /// retry is possible at all.
    fn request(&mut self, body: RequestBody, keep: bool) -> Request<RequestBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        let headers = if keep {
            self.headers.clone()
        } else {
            self.headers.take()
        };
        // Always there: only a request that was sent keeps them, and after
        // one of those, only a kept copy is sent again.
        *request.headers_mut() = headers.unwrap_or_default();
        request
    }

    /// Takes back what an unsent request carried; its body.
    fn restore(&mut self, request: Request<RequestBody>) -> RequestBody {
        let (parts, body) = request.into_parts();
        if self.headers.is_none() {
            self.headers = Some(parts.headers);
        }
        body
    }
}

/// Why no instance answered a request.
pub(crate) enum Unanswered<B> {
    /// This instance broke the request after it was sent, and it cannot be sent again.
    Broke(SocketAddr),
    /// No instance answered and the request can still go elsewhere. Boxed: the usual
    /// outcome, an answer, should not carry its size.
    Unsent(Box<Unsent<B>>),
}

/// A request no instance answered that can still go elsewhere (nothing of it was sent,
/// or its body was kept).
pub(crate) struct Unsent<B> {
    pub(crate) body: B,
    /// Whether an instance was passed over for being out of rotation: routes newer than
    /// the request's may then have another.
    pub(crate) retired: bool,
}

/// What answered a request: the transport's answer, its instance, and the request's
/// claim on the instance (in flight until the response has been passed on).
pub(crate) type Answer<A> = (A, Arc<Upstream>, Claim);

/// How one try at one instance went.
pub(crate) enum Attempt<A, B> {
    /// The instance answered (its response has started to arrive).
    Answered(A),
    /// Nothing reached the instance; the body comes back for the next one.
    NotSent(B, Box<dyn StdError + Send + Sync>),
    /// The request was (at least partly) written, then the connection failed.
    Sent(Box<dyn StdError + Send + Sync>),
}

/// How a request goes to an instance: hyper's client for HTTP/2 clients, raw bytes for
/// HTTP/1.1 ones. [`Proxy::forward`] decides where and how often; a transport does one
/// try at a time.
pub(crate) trait Transport {
    /// The request's body as it goes from try to try.
    type Body;
    /// What an instance's answer is.
    type Answer;
    /// A fresh copy of `body` to send again, if it can be sent again.
    fn replay(body: &Self::Body) -> Option<Self::Body>;
    /// One try at `upstream`; with `keep`, whatever a retry needs is kept.
    async fn attempt(
        &mut self,
        proxy: &Proxy,
        upstream: &Upstream,
        body: Self::Body,
        keep: bool,
    ) -> Attempt<Self::Answer, Self::Body>;
}

/// The routes a request was routed with: where newer ones appear, the table of the
/// ones it read, and its app in them.
pub(crate) type Routed<'r> = (&'r Mutex<RouteView>, &'r Arc<Table>, &'r App);

impl Proxy {
    /// Sends the request to `app`'s instances in turn until one answers. When every
    /// instance of those routes was being drained (the request read its routes before
    /// the ones that replaced them), the newest routes of app `name` take it, once.
    pub(crate) async fn send<T: Transport>(
        &self,
        transport: &mut T,
        (routes, table, app): Routed<'_>,
        name: &str,
        body: T::Body,
        idempotent: bool,
    ) -> Result<Answer<T::Answer>, Unanswered<T::Body>> {
        let forwarded = self
            .forward(app, &Order::of(app), transport, body, idempotent)
            .await;
        let Err(Unanswered::Unsent(unsent)) = forwarded else {
            return forwarded;
        };
        let fresh = routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current()
            .clone();
        match fresh.app(name) {
            Some(app)
                if unsent.retired && !Arc::ptr_eq(&fresh, table) && !app.instances.is_empty() =>
            {
                let Unsent { body, .. } = *unsent;
                self.forward(app, &Order::of(app), transport, body, idempotent)
                    .await
            }
            _ => Err(Unanswered::Unsent(unsent)),
        }
    }

    /// Sends the request to `app`'s instances in `order` until one answers.
    async fn forward<T: Transport>(
        &self,
        app: &App,
        order: &Order,
        transport: &mut T,
        mut body: T::Body,
        idempotent: bool,
    ) -> Result<Answer<T::Answer>, Unanswered<T::Body>> {
        let tries = order.len();
        let mut retired = false;
        for nth in 0..tries {
            let upstream = &app.instances[order.nth(nth)];
            // Counted in flight before any connection is used; an instance being
            // drained takes nothing new.
            let Some(claim) = upstream.presence.claim() else {
                debug!(instance = %upstream.addr, "instance out of rotation; trying the next");
                retired = true;
                continue;
            };
            // What a retry after a failure mid-request needs; none is
            // possible for the last instance or a request that is not safe
            // to repeat.
            let spare = if idempotent && nth + 1 < tries {
                T::replay(&body)
            } else {
                None
            };
            let keep = spare.is_some();
            match transport.attempt(self, upstream, body, keep).await {
                Attempt::Answered(answer) => {
                    upstream.answered();
                    return Ok((answer, upstream.clone(), claim));
                }
                Attempt::NotSent(unsent, error) => {
                    debug!(instance = %upstream.addr, %error, "instance unreachable; trying the next");
                    upstream.refused();
                    body = unsent;
                }
                Attempt::Sent(error) => {
                    debug!(instance = %upstream.addr, %error, "instance failed before answering");
                    match spare {
                        Some(spare) => body = spare,
                        None => return Err(Unanswered::Broke(upstream.addr)),
                    }
                }
            }
        }
        Err(Unanswered::Unsent(Box::new(Unsent { body, retired })))
    }
}

/// hyper's client on its own pool of connections: how HTTP/2 clients' requests go on.
pub(crate) struct Hyper {
    pub(crate) template: Template,
}

impl Transport for Hyper {
    type Body = RequestBody;
    type Answer = (Response<Incoming>, Connection);

    fn replay(body: &RequestBody) -> Option<RequestBody> {
        body.replay()
    }

    /// On an idle pooled connection if there is one that works, otherwise on a new
    /// connection.
    async fn attempt(
        &mut self,
        proxy: &Proxy,
        upstream: &Upstream,
        mut body: RequestBody,
        keep: bool,
    ) -> Attempt<Self::Answer, RequestBody> {
        let template = &mut self.template;
        let mut pooled = upstream.pool.take();
        loop {
            let reused = pooled.is_some();
            let mut connection = match pooled.take() {
                Some(connection) => connection,
                // Boxed: connecting is rare next to pooled requests, and its
                // future is large; every request's future would carry it.
                None => match Box::pin(pool::connect(upstream.addr, proxy.connect_timeout)).await {
                    Ok(connection) => connection,
                    Err(error) => return Attempt::NotSent(body, error.into()),
                },
            };
            // A pooled connection is ready as soon as it has been polled past
            // the end of its last exchange, which is at once in practice; one
            // that does not become ready (closed meanwhile) is dropped.
            if reused
                && !matches!(
                    tokio::time::timeout(proxy.connect_timeout, connection.ready()).await,
                    Ok(true)
                )
            {
                pooled = upstream.pool.take();
                continue;
            }
            match connection.send(template.request(body, keep)).await {
                Ok(response) => return Attempt::Answered((response, connection)),
                Err(mut error) => match error.take_message() {
                    // Closed before the request was written: nothing was sent.
                    Some(request) => {
                        body = template.restore(request);
                        if reused {
                            pooled = upstream.pool.take();
                            continue;
                        }
                        return Attempt::NotSent(body, error.into_error().into());
                    }
                    None => return Attempt::Sent(error.into_error().into()),
                },
            }
        }
    }
}
