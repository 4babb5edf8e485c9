//! One request: find its app, choose an instance, forward, upgrade.
//!
//! Forwarding itself — which instance is tried when, and what is retried —
//! is in `forward`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{
    CACHE_CONTROL, CONTENT_TYPE, EXPECT, HOST, HeaderValue, LOCATION, X_CONTENT_TYPE_OPTIONS,
};
use hyper::http::Extensions;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use nap_certs::{ChallengeLookup, Challenges};
use tracing::{Level, debug};

use crate::body::{RequestBody, ResponseBody};
use crate::forward::{Hyper, Template, Unanswered};
use crate::pool::Checkin;
use crate::table::{App, RouteView, Table};
use crate::{BoxFuture, Options, headers, host};

/// The page of a redirect to HTTPS when there is no HTTPS listener to go to.
pub(crate) const NO_HTTPS: &str =
    "503 Service Unavailable: this host is served over HTTPS only, and HTTPS is off\n";

/// The byte copying of an upgraded connection (a WebSocket), which outlives
/// the request that set it up.
pub(crate) type Tunnel = BoxFuture<'static, ()>;

/// Where a request's handler leaves the [`Tunnel`] for its client connection
/// to run once hyper has handed the connection over.
pub(crate) type TunnelSlot = Arc<Mutex<Option<Tunnel>>>;

/// The router's settings: what every request needs besides the routes.
pub(crate) struct Proxy {
    domain: String,
    pub(crate) connect_timeout: Duration,
    /// How long a client may take to send a request head (HTTP/1.1; hyper's own
    /// timer for HTTP/2).
    pub(crate) header_read_timeout: Duration,
    pub(crate) retry_body_limit: u64,
    /// The ACME HTTP-01 challenges to answer on plain HTTP.
    pub(crate) challenges: Option<Challenges>,
    /// The port of the HTTPS listener, for redirects; `None` without one.
    https_port: Option<u16>,
}

/// What a request's Host leads to; names live as long as `'n`, the app `'t`.
pub(crate) enum Target<'n, 't> {
    /// This app (its name, for messages and the log).
    App(Cow<'n, str>, &'t App),
    /// A custom host whose app wants HTTPS, asked over plain HTTP.
    Redirect(Cow<'n, str>),
    /// `APP.<domain>` of no app.
    NoSuchApp(Cow<'n, str>),
    /// Nothing the router serves.
    Nothing,
}

impl Target<'_, '_> {
    /// The app's name for the log line; `-` for no app.
    pub(crate) fn app_name(&self) -> &str {
        match self {
            Target::App(name, _) => name,
            _ => "-",
        }
    }
}

/// Who is at the other end of a client connection, worked out once per
/// connection rather than per request.
pub(crate) struct Client {
    pub(crate) addr: SocketAddr,
    /// The client's address as it goes into `X-Forwarded-For`.
    pub(crate) forwarded_for: HeaderValue,
    /// `X-Forwarded-Proto`: how the client reached the router.
    pub(crate) proto: HeaderValue,
    /// Whether it came over TLS.
    pub(crate) https: bool,
}

impl Client {
    /// A client that connected from `addr`, over TLS if `https`.
    pub(crate) fn new(addr: SocketAddr, https: bool) -> Client {
        Client {
            addr,
            forwarded_for: headers::forwarded_for_value(addr.ip()),
            proto: HeaderValue::from_static(if https { "https" } else { "http" }),
            https,
        }
    }
}

impl Proxy {
    /// The proxy for `options`; `https_port` is the HTTPS listener's port, if there is
    /// one, which redirects to HTTPS name.
    pub(crate) fn new(options: &Options, https_port: Option<u16>) -> Proxy {
        Proxy {
            domain: host::normalise_domain(&options.domain),
            connect_timeout: options.connect_timeout,
            header_read_timeout: options.header_read_timeout,
            retry_body_limit: u64::try_from(options.retry_body_limit).unwrap_or(u64::MAX),
            challenges: options.challenges.clone(),
            https_port,
        }
    }

    /// Answers one client request from the apps of the newest routes its
    /// connection's view has; never fails (failures are error pages).
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        routes: &Mutex<RouteView>,
        client: &Client,
        tunnel: &TunnelSlot,
    ) -> Result<Response<ResponseBody>, Infallible> {
        // The clock is read only for the log line, and only if it is written.
        let started = tracing::enabled!(Level::DEBUG).then(Instant::now);
        if request.method() == Method::CONNECT {
            return Ok(page(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: this is no forward proxy\n",
            ));
        }
        // ACME's HTTP-01 challenges come over plain HTTP for any host, and are answered
        // before routing and before any redirect to HTTPS (RFC 8555 §8.3). A path
        // outside the challenge prefix costs one comparison.
        if !client.https
            && let Some(challenges) = &self.challenges
            && let Some(answer) = challenge(challenges, request.uri().path())
        {
            return Ok(answer);
        }
        let table = newest(routes);
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
                    tunnel,
                    &mut instance,
                )
                .await
            }
            (Target::Redirect(custom), _) => self.redirect(&request, custom),
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
    #[expect(
        clippy::too_many_arguments,
        reason = "one request's context, passed down once"
    )]
    async fn route(
        &self,
        mut request: Request<Incoming>,
        // The routes the app was found in, the app in them, and where newer ones appear.
        (routes, table, app): (&Mutex<RouteView>, &Arc<Table>, &App),
        name: &str,
        host: &HeaderValue,
        client: &Client,
        tunnel: &TunnelSlot,
        instance: &mut Option<SocketAddr>,
    ) -> Response<ResponseBody> {
        if app.instances.is_empty() {
            return page(
                StatusCode::BAD_GATEWAY,
                format!("502 Bad Gateway: {name} has no running instance\n"),
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
        let uri = if parts.uri.authority().is_some() {
            // An absolute-form request: its authority is the Host (RFC 9112 §3.2.2).
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
            upgrade,
        };
        let forwarded = self
            .send(&mut transport, (routes, table, app), name, body, idempotent)
            .await;
        let ((mut response, connection), upstream, claim) = match forwarded {
            Ok(answered) => answered,
            Err(unanswered) => {
                if let Unanswered::Broke(addr) = unanswered {
                    *instance = Some(addr);
                }
                return page(
                    StatusCode::BAD_GATEWAY,
                    format!("502 Bad Gateway: {name} did not answer\n"),
                );
            }
        };
        *instance = Some(upstream.addr);

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return page(
                    StatusCode::BAD_GATEWAY,
                    format!("502 Bad Gateway: {name} switched protocols unasked\n"),
                );
            };
            let instance_upgrade = hyper::upgrade::on(&mut response);
            let piping: Tunnel = Box::pin(pipe(client_upgrade, instance_upgrade, upstream.addr));
            *tunnel.lock().unwrap_or_else(PoisonError::into_inner) = Some(piping);
            let (mut parts, _) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers, true);
            parts.version = Version::HTTP_11;
            parts.extensions = Extensions::new();
            // The request has its answer; the tunnel that follows does not hold up a
            // drain of the instance.
            drop(claim);
            return Response::from_parts(parts, ResponseBody::Page(None));
        }

        let (mut parts, incoming) = response.into_parts();
        let close = headers::strip_hop_by_hop(&mut parts.headers, false);
        let reusable = !upgrade && parts.version == Version::HTTP_11 && !close;
        // hyper turns this into HTTP/1.0 for HTTP/1.0 clients.
        parts.version = Version::HTTP_11;
        parts.extensions = Extensions::new();
        let checkin = Checkin::new(upstream, connection, reusable, claim);
        Response::from_parts(parts, ResponseBody::upstream(incoming, checkin))
    }

    /// 308 to the same host and path over HTTPS (308, unlike 301, keeps the method and
    /// body). Without an HTTPS listener there is nowhere to go: the app answers.
    fn redirect(&self, request: &Request<Incoming>, host: &str) -> Response<ResponseBody> {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str());
        let Some(location) = self.redirect_location(host, path) else {
            return page(StatusCode::SERVICE_UNAVAILABLE, NO_HTTPS);
        };
        // The host is a key of the snapshot and the path passed hyper's URI parser, so
        // this cannot fail; refuse rather than send a header nobody checked.
        let Ok(value) = HeaderValue::from_str(&location) else {
            return page(StatusCode::BAD_REQUEST, "400 Bad Request\n");
        };
        let mut response = page(
            StatusCode::PERMANENT_REDIRECT,
            format!("308 Permanent Redirect: {location}\n"),
        );
        response.headers_mut().insert(LOCATION, value);
        response
    }

    /// Where a 308 for `host` and `path` (with its query) sends the client: the same
    /// host and path on the HTTPS listener's port. `None` without an HTTPS listener.
    pub(crate) fn redirect_location(&self, host: &str, path: &str) -> Option<String> {
        let port = self.https_port?;
        Some(if port == 443 {
            format!("https://{host}{path}")
        } else {
            format!("https://{host}:{port}{path}")
        })
    }

    /// What a request with Host `host` (as text, if it is text) leads to in `table`;
    /// `https` if it came over TLS.
    pub(crate) fn target<'n, 't: 'n>(
        &self,
        table: &'t Table,
        host: Option<&'n str>,
        https: bool,
    ) -> Target<'n, 't> {
        let name = host.and_then(|text| host::app_name(text, &self.domain));
        // `APP.<domain>` first, the usual case and one lookup; custom hosts after.
        if let Some(name) = name.as_ref()
            && let Some(app) = table.app(name)
        {
            return Target::App(name.clone(), app);
        }
        let custom = host.and_then(host::custom_host);
        match custom
            .as_ref()
            .and_then(|custom| Some((custom, table.host(custom)?)))
        {
            Some((custom, (found, _))) if found.https_redirect && !https => {
                Target::Redirect(custom.clone())
            }
            Some((_, (found, app))) => Target::App(Cow::Borrowed(&found.app), app),
            None => name.map_or(Target::Nothing, Target::NoSuchApp),
        }
    }

    /// The status and page of a target that is not forwarded (not an app, or a
    /// redirect).
    pub(crate) fn refusal(&self, target: &Target<'_, '_>) -> (StatusCode, String) {
        match target {
            Target::NoSuchApp(name) => (
                StatusCode::NOT_FOUND,
                format!("404 Not Found: no app named {name}\n"),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                format!(
                    "404 Not Found: no app here; apps are at http://APP.{}/\n",
                    self.domain
                ),
            ),
        }
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
}

/// The table of the newest routes a connection's view has.
fn newest(routes: &Mutex<RouteView>) -> Arc<Table> {
    routes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .current()
        .clone()
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

/// The answer to an HTTP-01 challenge request for `path`, or `None` when `path` is not
/// one (a request to route as usual).
fn challenge(challenges: &Challenges, path: &str) -> Option<Response<ResponseBody>> {
    match challenges.lookup(path) {
        ChallengeLookup::NotAChallenge => None,
        ChallengeLookup::Unknown => Some(page(
            StatusCode::NOT_FOUND,
            "404 Not Found: no such ACME challenge\n",
        )),
        ChallengeLookup::Answer(key_authorization) => {
            let mut response = page(StatusCode::OK, key_authorization);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Some(response)
        }
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
pub(crate) struct Optional(pub(crate) Option<SocketAddr>);

impl fmt::Display for Optional {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}
