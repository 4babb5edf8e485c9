//! One request: find its app, choose an instance, forward, retry, upgrade.
//!
//! The retry rule, like nginx's `proxy_next_upstream error`:
//! - a connection that could not be opened (refused, reset, timed out), or a
//!   pooled one found closed before the request was written, sends the
//!   request — any request, even one with a large streaming body — to the
//!   next instance at once, because the instance saw nothing of it;
//! - a connection that fails after the request was written but before the
//!   response started sends the request on only if the method is idempotent
//!   (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) and its body was small enough to
//!   keep ([`Options::retry_body_limit`]); a POST that an instance may have
//!   half-done is answered 502 rather than done twice;
//! - each instance is tried at most once per request, and once the response
//!   has started nothing is retried.

use std::collections::HashMap;
use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{
    CACHE_CONTROL, CONTENT_TYPE, EXPECT, HOST, HeaderMap, HeaderValue, X_CONTENT_TYPE_OPTIONS,
};
use hyper::http::Extensions;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tracing::debug;

use crate::body::{RequestBody, ResponseBody};
use crate::pool::{self, Checkin, Pool, Sender};
use crate::{BoxFuture, Membership, Options, headers, host};

/// The byte copying of an upgraded connection (a WebSocket), which outlives
/// the request that set it up.
pub(crate) type Tunnel = BoxFuture<'static, ()>;

/// Where a request's handler leaves the [`Tunnel`] for its client connection
/// to run once hyper has handed the connection over.
pub(crate) type TunnelSlot = Arc<Mutex<Option<Tunnel>>>;

/// How long an instance that refused a connection goes to the back of the
/// line: it is still tried, but after the others.
const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// The router's shared state: what every request needs.
pub(crate) struct Proxy {
    domain: String,
    connect_timeout: Duration,
    retry_body_limit: u64,
    membership: Arc<dyn Membership>,
    pool: Arc<Pool>,
    /// The next turn of round robin, per app.
    turns: Mutex<HashMap<String, usize>>,
    /// Instances that recently refused a connection, and since when.
    refused: Mutex<HashMap<SocketAddr, Instant>>,
}

/// What happened to a request, for the log line.
struct Outcome {
    app: Option<String>,
    instance: Option<SocketAddr>,
}

/// How one try at one instance went.
enum Attempt {
    /// The instance answered (the response head has arrived).
    Answered(Response<Incoming>, Sender),
    /// Nothing reached the instance; the body comes back for the next one.
    NotSent(RequestBody, Box<dyn StdError + Send + Sync>),
    /// The request was (at least partly) written, then the connection failed.
    Sent(hyper::Error),
}

/// The request as it goes to instances, kept to be sent more than once.
struct Template {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Template {
    fn request(&self, body: RequestBody) -> Request<RequestBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

impl Proxy {
    pub(crate) fn new(options: &Options, membership: Arc<dyn Membership>) -> Proxy {
        Proxy {
            domain: host::normalise_domain(&options.domain),
            connect_timeout: options.connect_timeout,
            retry_body_limit: u64::try_from(options.retry_body_limit).unwrap_or(u64::MAX),
            membership,
            pool: Arc::default(),
            turns: Mutex::default(),
            refused: Mutex::default(),
        }
    }

    /// Answers one client request; never fails (failures are error pages).
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        tunnel: &TunnelSlot,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let started = Instant::now();
        let mut outcome = Outcome {
            app: None,
            instance: None,
        };
        let response = self.route(request, client, tunnel, &mut outcome).await;
        debug!(
            app = outcome.app.as_deref().unwrap_or("-"),
            instance = %Optional(outcome.instance),
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "request"
        );
        Ok(response)
    }

    async fn route(
        &self,
        mut request: Request<Incoming>,
        client: SocketAddr,
        tunnel: &TunnelSlot,
        outcome: &mut Outcome,
    ) -> Response<ResponseBody> {
        if request.method() == Method::CONNECT {
            return page(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: this is no forward proxy\n",
            );
        }
        let Some(host) = request_host(&request) else {
            return self.no_app_here();
        };
        let Some(app) = host
            .to_str()
            .ok()
            .and_then(|host| host::app_name(host, &self.domain))
        else {
            return self.no_app_here();
        };
        let app = &*outcome.app.insert(app);
        let Some(instances) = self.membership.instances(app).await else {
            return page(
                StatusCode::NOT_FOUND,
                format!("404 Not Found: no app named {app}\n"),
            );
        };
        let order = self.order(app, instances);
        if order.is_empty() {
            return page(
                StatusCode::BAD_GATEWAY,
                format!("502 Bad Gateway: {app} has no running instance\n"),
            );
        }

        // hyper hands an upgraded connection over only for HTTP/1.1.
        let upgrade =
            request.version() == Version::HTTP_11 && headers::is_upgrade(request.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (parts, body) = request.into_parts();
        let idempotent = parts.method.is_idempotent();
        let Ok(body) = self.prepare_body(body, idempotent).await else {
            return page(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: the request body could not be read\n",
            );
        };
        let mut headers = parts.headers;
        headers::strip_hop_by_hop(&mut headers, upgrade);
        // hyper has already answered `Expect: 100-continue` by reading the
        // body; the instance gets the body without having to ask.
        headers.remove(EXPECT);
        if parts.uri.authority().is_some() {
            // An absolute-form request: its authority is the Host (RFC 9112 §3.2.2).
            headers.insert(HOST, host.clone());
        }
        headers::add_forwarded(&mut headers, client.ip(), host);
        let uri = parts
            .uri
            .path_and_query()
            .cloned()
            .map_or_else(|| Uri::from_static("/"), Uri::from);
        let template = Template {
            method: parts.method,
            uri,
            headers,
        };

        let (mut response, instance, sender) = match self
            .forward(&order, &template, body, idempotent, upgrade)
            .await
        {
            Ok(answered) => answered,
            Err(instance) => {
                outcome.instance = instance;
                return page(
                    StatusCode::BAD_GATEWAY,
                    format!("502 Bad Gateway: {app} did not answer\n"),
                );
            }
        };
        outcome.instance = Some(instance);

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return page(
                    StatusCode::BAD_GATEWAY,
                    format!("502 Bad Gateway: {app} switched protocols unasked\n"),
                );
            };
            let instance_upgrade = hyper::upgrade::on(&mut response);
            let piping: Tunnel = Box::pin(pipe(client_upgrade, instance_upgrade, instance));
            *tunnel.lock().unwrap_or_else(PoisonError::into_inner) = Some(piping);
            let (mut parts, _) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers, true);
            parts.version = Version::HTTP_11;
            parts.extensions = Extensions::new();
            return Response::from_parts(parts, ResponseBody::Page(None));
        }

        let reusable = !upgrade
            && response.version() == Version::HTTP_11
            && !headers::connection_has(response.headers(), "close");
        let (mut parts, incoming) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, false);
        // hyper turns this into HTTP/1.0 for HTTP/1.0 clients.
        parts.version = Version::HTTP_11;
        parts.extensions = Extensions::new();
        let checkin = Checkin::new(self.pool.clone(), instance, sender, reusable);
        Response::from_parts(parts, ResponseBody::upstream(incoming, checkin))
    }

    fn no_app_here(&self) -> Response<ResponseBody> {
        page(
            StatusCode::NOT_FOUND,
            format!(
                "404 Not Found: no app here; apps are at http://APP.{}/\n",
                self.domain
            ),
        )
    }

    /// The instances in the order to try them: round robin over those that
    /// have not refused a connection lately, then those that have.
    fn order(&self, app: &str, instances: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let mut healthy = Vec::with_capacity(instances.len());
        let mut suspects = Vec::new();
        {
            let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
            if !refused.is_empty() {
                refused.retain(|_, since| since.elapsed() < SUSPECT_FOR);
            }
            for addr in instances {
                if healthy.contains(&addr) || suspects.contains(&addr) {
                    continue;
                } else if refused.contains_key(&addr) {
                    suspects.push(addr);
                } else {
                    healthy.push(addr);
                }
            }
        }
        if !healthy.is_empty() {
            let turn = {
                let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
                match turns.get_mut(app) {
                    Some(turn) => {
                        let this = *turn;
                        *turn = this.wrapping_add(1);
                        this
                    }
                    None => {
                        turns.insert(app.to_owned(), 1);
                        0
                    }
                }
            };
            let len = healthy.len();
            healthy.rotate_left(turn % len);
        }
        healthy.extend(suspects);
        healthy
    }

    /// Reads a small body of an idempotent request in full so that it can be
    /// sent again; everything else streams.
    async fn prepare_body(
        &self,
        body: Incoming,
        idempotent: bool,
    ) -> Result<RequestBody, hyper::Error> {
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        // Only a body of known length is kept: waiting for an unknown one to
        // end could wait for ever on a client that streams.
        let small = body
            .size_hint()
            .exact()
            .is_some_and(|length| length <= self.retry_body_limit);
        if !(idempotent && small) {
            return Ok(RequestBody::Streaming(body));
        }
        let bytes = body.collect().await?.to_bytes();
        Ok(if bytes.is_empty() {
            RequestBody::Empty
        } else {
            RequestBody::Buffered(Some(bytes))
        })
    }

    /// Sends the request to the instances in `order` until one answers; the
    /// error names the instance that broke a request that cannot be sent
    /// again, or none if nobody could be reached.
    async fn forward(
        &self,
        order: &[SocketAddr],
        template: &Template,
        mut body: RequestBody,
        idempotent: bool,
        upgrade: bool,
    ) -> Result<(Response<Incoming>, SocketAddr, Sender), Option<SocketAddr>> {
        for &instance in order {
            let spare = if idempotent { body.replay() } else { None };
            match self.attempt(instance, template, body, upgrade).await {
                Attempt::Answered(response, sender) => {
                    self.refused
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&instance);
                    return Ok((response, instance, sender));
                }
                Attempt::NotSent(unsent, error) => {
                    debug!(%instance, %error, "instance unreachable; trying the next");
                    self.refused
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(instance, Instant::now());
                    body = unsent;
                }
                Attempt::Sent(error) => {
                    debug!(%instance, %error, "instance failed before answering");
                    match spare {
                        Some(spare) => body = spare,
                        None => return Err(Some(instance)),
                    }
                }
            }
        }
        Err(None)
    }

    /// One try at one instance: on an idle pooled connection if there is one
    /// that works, otherwise on a new connection.
    async fn attempt(
        &self,
        instance: SocketAddr,
        template: &Template,
        mut body: RequestBody,
        upgrade: bool,
    ) -> Attempt {
        // An upgrade takes the connection for good: it gets its own.
        let mut pooled = if upgrade {
            None
        } else {
            self.pool.take(instance)
        };
        loop {
            let reused = pooled.is_some();
            let mut sender = match pooled.take() {
                Some(sender) => sender,
                None => match pool::connect(instance, self.connect_timeout, upgrade).await {
                    Ok(sender) => sender,
                    Err(error) => return Attempt::NotSent(body, error.into()),
                },
            };
            // A pooled connection is ready as soon as hyper has noticed the
            // end of its last exchange, which is at once in practice; one that
            // does not become ready (closed meanwhile) is dropped.
            if reused
                && !matches!(
                    tokio::time::timeout(self.connect_timeout, sender.ready()).await,
                    Ok(Ok(()))
                )
            {
                pooled = self.pool.take(instance);
                continue;
            }
            match sender.try_send_request(template.request(body)).await {
                Ok(response) => return Attempt::Answered(response, sender),
                Err(mut error) => match error.take_message() {
                    // Closed before the request was written: nothing was sent.
                    Some(request) => {
                        body = request.into_body();
                        if reused {
                            pooled = self.pool.take(instance);
                            continue;
                        }
                        return Attempt::NotSent(body, error.into_error().into());
                    }
                    None => return Attempt::Sent(error.into_error()),
                },
            }
        }
    }
}

/// Copies bytes both ways between an upgraded client connection and the
/// instance's, until either side closes.
async fn pipe(client: OnUpgrade, instance_upgrade: OnUpgrade, instance: SocketAddr) {
    let (client, upstream) = match tokio::try_join!(client, instance_upgrade) {
        Ok(pair) => pair,
        Err(error) => {
            debug!(%instance, %error, "upgrade failed");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((sent, received)) => debug!(%instance, sent, received, "upgraded connection closed"),
        Err(error) => debug!(%instance, %error, "upgraded connection broke"),
    }
}

/// The Host a request is for: the authority of an absolute-form request,
/// otherwise the one `Host` header (two are no Host at all).
fn request_host(request: &Request<Incoming>) -> Option<HeaderValue> {
    if let Some(authority) = request.uri().authority() {
        return HeaderValue::from_str(authority.as_str()).ok();
    }
    let mut hosts = request.headers().get_all(HOST).iter();
    let host = hosts.next()?;
    hosts.next().is_none().then(|| host.clone())
}

/// One of the router's own short plain-text pages.
fn page(status: StatusCode, text: impl Into<String>) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Page(Some(Bytes::from(text.into()))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An optional address for the log: the address or `-`.
struct Optional(Option<SocketAddr>);

impl fmt::Display for Optional {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}
