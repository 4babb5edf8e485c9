//! HTTP/1.x client connections, framed by hand on httparse: the router's usual path
//! (plain TCP, and TLS connections whose client did not choose `h2`).
//!
//! Per connection there is one read buffer, reused from request to request, and one
//! write buffer. A request head is parsed in place (`request`), routed, and written
//! again as bytes for the instance; the instance's response head is parsed on its
//! connection's buffer (`response`) and written again for the client; bodies pass
//! through `framing`. Requests are answered one after the other, so pipelined requests
//! get their answers in order. Instances are reached over raw TCP connections kept
//! per instance ([`crate::table::Upstream::raw`]); which instance, and what is retried,
//! is `forward`'s business, as for HTTP/2.
//!
//! A connection is closed after anything the router cannot frame soundly: a refused
//! request head, a request body that breaks, an instance's response that breaks after
//! its head was passed on. What happens between a routed request and its answer is
//! `exchange`'s.

use std::pin::pin;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use nap_certs::ChallengeLookup;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{Level, debug};

use crate::buffer::Reader;
use crate::framing;
use crate::proxy::{Client, NO_HTTPS, Proxy, Target};
use crate::request::{self, Forwarding, Framing, MAX_HEAD, Refusal, header_slots};
use crate::response;
use crate::stop::Stopping;
use crate::table::RouteView;

/// Serves one HTTP/1.x client connection until either side closes it, the client
/// is too slow with a request head, or the router stops.
pub(crate) async fn serve<S>(
    proxy: &Proxy,
    stream: S,
    client: &Client,
    routes: RouteView,
    stopping: &mut Stopping,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader = Reader::new(stream, proxy.body_timeout);
    let mut out = Vec::with_capacity(4096);
    let mut head = Vec::with_capacity(1024);
    let mut name = String::new();
    // Only this connection's requests use it; it lets a request look at the newest
    // routes again after it waited (see `Proxy::send`).
    let routes = Mutex::new(routes);
    // The time a request head may take, from when the connection starts waiting for
    // it: this closes idle keep-alive connections and slowloris clients alike.
    let mut deadline = pin!(tokio::time::sleep(proxy.header_read_timeout));
    let mut need_more = reader.buffered().is_empty();
    loop {
        if need_more {
            let idle = reader.buffered().is_empty();
            tokio::select! {
                biased;
                read = reader.fill(MAX_HEAD) => match read {
                    Ok(0) if reader.buffered().len() < MAX_HEAD => return,
                    Ok(_) => {}
                    Err(error) => {
                        debug!(%error, "client connection ended");
                        return;
                    }
                },
                () = deadline.as_mut() => {
                    debug!("client too slow with a request head, or idle too long");
                    return;
                }
                // An idle connection closes at once; one in the middle of a head
                // finishes its request.
                () = &mut *stopping, if idle => return,
            }
        }
        let started = tracing::enabled!(Level::DEBUG).then(Instant::now);
        let table = routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current()
            .clone();
        // What the request leads to, decided while its head is at hand; the head
        // leaves the buffer after that. Nothing here waits, so the header slots
        // are no part of the connection's future (which every spawn copies).
        let decided = {
            let mut slots = header_slots();
            request::parse(reader.buffered(), &mut slots).map(|parsed| {
                parsed.map(|(parsed, length)| {
                    let ask = Ask {
                        http10: parsed.http10,
                        head_request: parsed.method == "HEAD",
                        keep_alive: parsed.keep_alive(),
                        framing: parsed.framing,
                        upgrade: parsed.upgrade,
                        expect_continue: parsed.expect_continue,
                        idempotent: parsed.idempotent(),
                    };
                    let plan = plan(proxy, &parsed, &table, client, &mut name, &mut head);
                    (ask, plan, length)
                })
            })
        };
        let (ask, plan, length) = match decided {
            Ok(Some(decided)) => decided,
            Ok(None) => {
                need_more = true;
                continue;
            }
            Err(refusal) => {
                debug!(client = %client.addr, status = refusal.status.as_u16(), "request refused");
                refuse(&mut reader.stream, &mut out, &refusal, proxy.body_timeout).await;
                return;
            }
        };
        reader.consume(length);
        let (status, instance, keep) = match plan {
            Plan::Page(page) => {
                // A body that was not read cannot be skipped safely: close after.
                let keep = ask.keep_alive && ask.framing == Framing::Empty;
                write_page(&mut out, &ask, keep, &page);
                if framing::flush(&mut reader.stream, &mut out, proxy.body_timeout)
                    .await
                    .is_err()
                {
                    return;
                }
                (page.status.as_u16(), None, keep)
            }
            Plan::Forward(app) => {
                let mut exchange = crate::exchange::Exchange {
                    proxy,
                    reader: &mut reader,
                    out: &mut out,
                    head: &head,
                    ask: &ask,
                    name: &name,
                };
                exchange.forward((&routes, &table, app)).await
            }
        };
        if let Some(started) = started {
            debug!(
                client = %client.addr,
                app = if name.is_empty() { "-" } else { name.as_str() },
                instance = %crate::proxy::Optional(instance),
                status,
                ms = started.elapsed().as_millis() as u64,
                "request"
            );
        }
        if !keep || stopping.asked() {
            let _ = reader.stream.shutdown().await;
            return;
        }
        deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + proxy.header_read_timeout);
        need_more = reader.buffered().is_empty();
    }
}

/// What the router needs to know of a request once its head has left the buffer.
pub(crate) struct Ask {
    pub(crate) http10: bool,
    pub(crate) head_request: bool,
    pub(crate) keep_alive: bool,
    pub(crate) framing: Framing,
    pub(crate) upgrade: bool,
    pub(crate) expect_continue: bool,
    pub(crate) idempotent: bool,
}

/// One of the router's own pages.
pub(crate) struct Page {
    status: StatusCode,
    text: String,
    location: Option<String>,
    content_type: &'static str,
}

impl Page {
    pub(crate) fn new(status: StatusCode, text: impl Into<String>) -> Page {
        Page {
            status,
            text: text.into(),
            location: None,
            content_type: "text/plain; charset=utf-8",
        }
    }
}

/// What a request leads to.
enum Plan<'t> {
    Page(Page),
    /// To this app's instances, with the head in the head buffer.
    Forward(&'t crate::table::App),
}

/// Decides what `parsed` leads to in `table`; for an app, sets `name` to its name and
/// writes the instance's head into `head`.
fn plan<'t>(
    proxy: &Proxy,
    parsed: &request::RequestHead<'_>,
    table: &'t crate::table::Table,
    client: &Client,
    name: &mut String,
    head: &mut Vec<u8>,
) -> Plan<'t> {
    name.clear();
    if parsed.method == "CONNECT" {
        return Plan::Page(Page::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 Method Not Allowed: this is no forward proxy\n",
        ));
    }
    // ACME's HTTP-01 challenges come over plain HTTP for any host, and are answered
    // before routing and before any redirect to HTTPS (RFC 8555 §8.3).
    if !client.https
        && let Some(challenges) = &proxy.challenges
    {
        let path = parsed.path.split('?').next().unwrap_or_default();
        match challenges.lookup(path) {
            ChallengeLookup::NotAChallenge => {}
            ChallengeLookup::Unknown => {
                return Plan::Page(Page::new(
                    StatusCode::NOT_FOUND,
                    "404 Not Found: no such ACME challenge\n",
                ));
            }
            ChallengeLookup::Answer(key_authorization) => {
                let mut page = Page::new(StatusCode::OK, key_authorization);
                page.content_type = "text/plain";
                return Plan::Page(page);
            }
        }
    }
    let target = proxy.target(table, parsed.host, client.https);
    match target {
        Target::App(app_name, app) => {
            name.push_str(&app_name);
            if app.instances.is_empty() {
                return Plan::Page(Page::new(
                    StatusCode::BAD_GATEWAY,
                    format!("502 Bad Gateway: {app_name} has no running instance\n"),
                ));
            }
            head.clear();
            let forwarding = Forwarding {
                forwarded_for: client.forwarded_for.as_bytes(),
                proto: client.proto.as_bytes(),
            };
            request::write_instance_head(parsed, &forwarding, head);
            Plan::Forward(app)
        }
        Target::Redirect(custom) => match proxy.redirect_location(&custom, parsed.path) {
            Some(location) => {
                let mut page = Page::new(
                    StatusCode::PERMANENT_REDIRECT,
                    format!("308 Permanent Redirect: {location}\n"),
                );
                page.location = Some(location);
                Plan::Page(page)
            }
            None => Plan::Page(Page::new(StatusCode::SERVICE_UNAVAILABLE, NO_HTTPS)),
        },
        other => {
            let (status, text) = proxy.refusal(&other);
            Plan::Page(Page::new(status, text))
        }
    }
}

/// Writes `page` as the answer to `ask`; `keep` says whether the connection stays.
pub(crate) fn write_page(out: &mut Vec<u8>, ask: &Ask, keep: bool, page: &Page) {
    let code = page.status.as_u16();
    response::status_line(out, ask.http10, code, "");
    request::line(out, b"content-type", page.content_type.as_bytes());
    out.extend_from_slice(b"x-content-type-options: nosniff\r\ncache-control: no-store\r\n");
    if let Some(location) = &page.location {
        request::line(out, b"location", location.as_bytes());
    }
    request::line(
        out,
        b"content-length",
        request::itoa(page.text.len() as u64, &mut [0; 20]),
    );
    response::date(out);
    response::connection(out, ask.http10, keep);
    out.extend_from_slice(b"\r\n");
    if !ask.head_request {
        out.extend_from_slice(page.text.as_bytes());
    }
}

/// Answers a refused request head and leaves the connection to be closed.
async fn refuse<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    refusal: &Refusal,
    stall: Duration,
) {
    let ask = Ask {
        http10: false,
        head_request: false,
        keep_alive: false,
        framing: Framing::Empty,
        upgrade: false,
        expect_continue: false,
        idempotent: false,
    };
    write_page(out, &ask, false, &Page::new(refusal.status, refusal.text));
    let _ = framing::flush(stream, out, stall).await;
    let _ = stream.shutdown().await;
}
