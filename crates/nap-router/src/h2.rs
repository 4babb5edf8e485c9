//! HTTP/2 clients (TLS with ALPN `h2`), served by hyper: each request is routed like
//! an HTTP/1.x one (`proxy`) and forwarded through hyper's HTTP/1 client on its own
//! pool of connections (`pool`). HTTP/2 comes over TLS only, so it never gets an ACME
//! challenge or a redirect to HTTPS, and it has no upgrades (WebSockets over HTTP/2
//! need extended CONNECT, which the router refuses like every CONNECT).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{
    CACHE_CONTROL, CONTENT_TYPE, EXPECT, HOST, HeaderValue, X_CONTENT_TYPE_OPTIONS,
};
use hyper::http::Extensions;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use tracing::{Level, debug};

use crate::body::{BodyError, RequestBody, ResponseBody, Timed};
use crate::forward::{Hyper, Template, Unanswered};
use crate::headers;
use crate::pool::Checkin;
use crate::proxy::{Client, Optional, Proxy, Target};
use crate::table::{App, RouteView, Table};

impl Proxy {
    /// Answers one HTTP/2 request from the apps of the newest routes its
    /// connection's view has; never fails (failures are error pages).
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        routes: &Mutex<RouteView>,
        client: &Client,
    ) -> Result<Response<ResponseBody>, Infallible> {
        // The clock is read only for the log line, and only if it is written.
        let started = tracing::enabled!(Level::DEBUG).then(Instant::now);
        if request.method() == Method::CONNECT {
            return Ok(page(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: this is no forward proxy\n",
            ));
        }
        let table = routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current()
            .clone();
        let host = request_host(&request);
        let text = host.as_ref().and_then(|host| host.to_str().ok());
        let target = self.target(&table, text, client.https);
        let mut instance = None;
        let response = match (&target, &host) {
            (Target::App(app_name, app), Some(host)) => {
                self.route(
                    request,
                    (routes, &table, app),
                    app_name,
                    host,
                    client,
                    &mut instance,
                )
                .await
            }
            // A redirect is for plain HTTP only, which is never HTTP/2.
            (target, _) => {
                let (status, text) = self.refusal(target);
                page(status, text)
            }
        };
        if let Some(started) = started {
            debug!(
                client = %client.addr,
                app = target.app_name(),
                instance = %Optional(instance),
                status = response.status().as_u16(),
                ms = started.elapsed().as_millis() as u64,
                "request"
            );
        }
        Ok(response)
    }

    /// Forwards a request for app `name` (from `host`) to one of its
    /// instances; `instance` learns which one answered or broke it.
    async fn route(
        &self,
        request: Request<Incoming>,
        // The routes the app was found in, the app in them, and where newer ones appear.
        (routes, table, app): (&Mutex<RouteView>, &Arc<Table>, &App),
        name: &str,
        host: &HeaderValue,
        client: &Client,
        instance: &mut Option<SocketAddr>,
    ) -> Response<ResponseBody> {
        if app.instances.is_empty() {
            return page(
                StatusCode::BAD_GATEWAY,
                format!("502 Bad Gateway: {name} has no running instance\n"),
            );
        }
        let (parts, body) = request.into_parts();
        let idempotent = parts.method.is_idempotent();
        let stalled = Arc::new(AtomicBool::new(false));
        let body = match self.prepare_body(body, idempotent, &stalled).await {
            Ok(body) => body,
            Err(BodyError::Stalled) => return request_timeout(),
            Err(BodyError::Broke(_)) => {
                return page(
                    StatusCode::BAD_REQUEST,
                    "400 Bad Request: the request body could not be read\n",
                );
            }
        };
        let mut headers = parts.headers;
        headers::strip_hop_by_hop(&mut headers);
        // hyper has already answered `Expect: 100-continue` by reading the
        // body; the instance gets the body without having to ask.
        headers.remove(EXPECT);
        let uri = if parts.uri.authority().is_some() {
            // The authority is the Host (an HTTP/2 request's `:authority`).
            headers.insert(HOST, host.clone());
            parts
                .uri
                .path_and_query()
                .cloned()
                .map_or_else(|| Uri::from_static("/"), Uri::from)
        } else {
            parts.uri
        };
        headers::add_forwarded(&mut headers, &client.forwarded_for, &client.proto, host);
        let mut transport = Hyper {
            template: Template::new(parts.method, uri, headers),
        };
        let forwarded = self
            .send(&mut transport, (routes, table, app), name, body, idempotent)
            .await;
        let ((response, connection), upstream, claim) = match forwarded {
            Ok(answered) => answered,
            Err(unanswered) => {
                if let Unanswered::Broke(addr) = unanswered {
                    *instance = Some(addr);
                }
                // The body gave up on the client: its fault, not the instance's.
                if stalled.load(Ordering::Relaxed) {
                    return request_timeout();
                }
                return page(
                    StatusCode::BAD_GATEWAY,
                    format!("502 Bad Gateway: {name} did not answer\n"),
                );
            }
        };
        *instance = Some(upstream.addr);
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Nothing asked for it: the request's Upgrade went as hop-by-hop.
            return page(
                StatusCode::BAD_GATEWAY,
                format!("502 Bad Gateway: {name} switched protocols unasked\n"),
            );
        }
        let (mut parts, incoming) = response.into_parts();
        let close = headers::strip_hop_by_hop(&mut parts.headers);
        let reusable = parts.version == Version::HTTP_11 && !close;
        parts.version = Version::HTTP_11;
        parts.extensions = Extensions::new();
        let checkin = Checkin::new(upstream, connection, reusable, claim);
        Response::from_parts(parts, ResponseBody::upstream(incoming, checkin))
    }

    /// Reads a small body of an idempotent request in full so that it can be
    /// sent again; everything else streams. Either way the body is given up on when
    /// the client sends none of it for [`crate::Options::body_timeout`] (and then
    /// `stalled` is set).
    async fn prepare_body(
        &self,
        body: Incoming,
        idempotent: bool,
        stalled: &Arc<AtomicBool>,
    ) -> Result<RequestBody, BodyError> {
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        let body = Timed::new(body, self.body_timeout, stalled.clone());
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

/// The page for a client that stopped sending its request's body.
fn request_timeout() -> Response<ResponseBody> {
    page(
        StatusCode::REQUEST_TIMEOUT,
        "408 Request Timeout: the request body stopped arriving\n",
    )
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
