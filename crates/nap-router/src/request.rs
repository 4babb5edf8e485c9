//! A client's HTTP/1.x request head: parsed with httparse, checked against request
//! smuggling, and written again as bytes for the instance.
//!
//! The checks are RFC 9112's (§6.3 and §11.2), strictly: a message whose length two
//! parsers could read differently is refused and its connection closed, because the
//! instance behind the router may be one of those parsers. Refused are: both
//! `Transfer-Encoding` and `Content-Length`; more than one `Content-Length`, even with
//! equal values; a `Content-Length` that is not all digits or does not fit 64 bits;
//! a `Transfer-Encoding` other than exactly `chunked` (501 for a coding the router does
//! not know); `Transfer-Encoding` in an HTTP/1.0 request. httparse itself refuses
//! obs-fold, whitespace before a colon, and CR, LF or NUL inside a value; a head over
//! [`MAX_HEAD`] bytes or [`MAX_HEADERS`] headers gets 431.

use std::mem::MaybeUninit;

use hyper::StatusCode;

use crate::headers::{self, ConnectionOptions, FramingFields};

/// The largest request head the router reads.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The most header fields a request (or response) head may have.
pub(crate) const MAX_HEADERS: usize = 100;

/// Room for a head's header fields, filled by httparse.
pub(crate) type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// An empty [`HeaderSlots`]: nothing to initialise.
pub(crate) fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// How a message's body is delimited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Why a request head is refused: its status and page. The connection is closed after.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) text: &'static str,
}

const BAD_REQUEST: Refusal = Refusal {
    status: StatusCode::BAD_REQUEST,
    text: "400 Bad Request\n",
};

/// A parsed request head, borrowing the client's read buffer.
pub(crate) struct RequestHead<'b> {
    pub(crate) method: &'b str,
    /// HTTP/1.0 (otherwise HTTP/1.1).
    pub(crate) http10: bool,
    pub(crate) headers: &'b [httparse::Header<'b>],
    /// The authority of an absolute-form target, or else the one `Host` header; `None`
    /// for none, two, or one that is not text.
    pub(crate) host: Option<&'b str>,
    /// Whether the target was absolute-form: its authority replaces `Host` then.
    absolute: bool,
    /// The target as the instance gets it: origin-form, path and query.
    pub(crate) path: &'b str,
    pub(crate) framing: Framing,
    pub(crate) connection: ConnectionOptions,
    /// An `Upgrade` header that `Connection` marks as meant for us (HTTP/1.1 only).
    pub(crate) upgrade: bool,
    pub(crate) expect_continue: bool,
}

impl RequestHead<'_> {
    /// Whether the client wants its connection kept after this exchange.
    pub(crate) fn keep_alive(&self) -> bool {
        !self.connection.close && (!self.http10 || self.connection.keep_alive)
    }

    /// Whether the method is idempotent (RFC 9110 §9.2.2), so a request that may have
    /// reached an instance can be sent to another.
    pub(crate) fn idempotent(&self) -> bool {
        matches!(
            self.method,
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        )
    }
}

/// Parses the request head at the start of `buffer`: `Ok(None)` if it is not complete
/// yet, otherwise the head and its length in bytes.
pub(crate) fn parse<'b>(
    buffer: &'b [u8],
    slots: &'b mut HeaderSlots<'b>,
) -> Result<Option<(RequestHead<'b>, usize)>, Refusal> {
    let mut request = httparse::Request::new(&mut []);
    let length = match request.parse_with_uninit_headers(buffer, slots) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_HEAD => return Err(too_large()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        Err(_) => return Err(BAD_REQUEST),
    };
    if length > MAX_HEAD {
        return Err(too_large());
    }
    if has_bare_lf(&buffer[..length]) {
        return Err(BAD_REQUEST);
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(BAD_REQUEST);
    };
    let http10 = version == 0;
    let headers: &'b [httparse::Header<'b>] = request.headers;

    let mut fields = FramingFields::default();
    let (mut hosts, mut host, mut has_upgrade, mut expect_continue) = (0, None, false, false);
    for header in headers {
        if fields.see(header) {
            continue;
        }
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = Some(header.value);
        } else if name.eq_ignore_ascii_case("upgrade") {
            has_upgrade = true;
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = header.value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    let (connection, lengths, length_value, codings) = (
        fields.connection,
        fields.lengths,
        fields.length,
        fields.codings,
    );
    let framing = match (codings, lengths) {
        (None, 0) => Framing::Empty,
        (None, 1) => match length_value.and_then(content_length) {
            Some(0) => Framing::Empty,
            Some(length) => Framing::Length(length),
            None => return Err(BAD_REQUEST),
        },
        (Some(_), _) if http10 || lengths > 0 => return Err(BAD_REQUEST),
        (Some(codings), _) => chunked(codings)?,
        (None, _) => return Err(BAD_REQUEST),
    };

    let (absolute, authority, path) = split_target(target)?;
    let host = if absolute {
        authority
    } else if hosts == 1 {
        host.and_then(text)
    } else {
        None
    };
    Ok(Some((
        RequestHead {
            method,
            http10,
            headers,
            host,
            absolute,
            path,
            framing,
            connection,
            upgrade: !http10 && has_upgrade && connection.upgrade,
            expect_continue: expect_continue && !http10,
        },
        length,
    )))
}

fn too_large() -> Refusal {
    Refusal {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        text: "431 Request Header Fields Too Large\n",
    }
}

/// A `Content-Length` value: digits only, fitting 64 bits.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A request's `Transfer-Encoding`: exactly `chunked`, or refused. 501 if it names a
/// coding the router does not know, or one it knows but does not decode before a final
/// `chunked` (`gzip, chunked`); 400 if `chunked` is not last or not alone of its kind,
/// which leaves the length unknowable (RFC 9112 §6.1, §6.3).
fn chunked(codings: &[u8]) -> Result<Framing, Refusal> {
    if codings.trim_ascii().eq_ignore_ascii_case(b"chunked") {
        return Ok(Framing::Chunked);
    }
    let is_chunked = |coding: &[u8]| coding.eq_ignore_ascii_case(b"chunked");
    let known = |coding: &[u8]| {
        [
            &b"chunked"[..],
            b"gzip",
            b"x-gzip",
            b"deflate",
            b"compress",
            b"x-compress",
        ]
        .iter()
        .any(|known| coding.eq_ignore_ascii_case(known))
    };
    let not_implemented = Refusal {
        status: StatusCode::NOT_IMPLEMENTED,
        text: "501 Not Implemented: unknown transfer coding\n",
    };
    if !headers::tokens(codings).all(known) {
        return Err(not_implemented);
    }
    let chunked_last = headers::tokens(codings).last().is_some_and(is_chunked);
    if chunked_last
        && headers::tokens(codings)
            .filter(|coding| is_chunked(coding))
            .count()
            == 1
    {
        Err(not_implemented)
    } else {
        Err(BAD_REQUEST)
    }
}

/// Whether a head ends a line with a bare LF anywhere. httparse accepts one (RFC 9112
/// §2.2 allows it); the router does not, so that no two readers of a head can split
/// its lines differently.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(at, &byte)| byte == b'\n' && (at == 0 || head[at - 1] != b'\r'))
}

/// A header value as text, if it is visible ASCII (with spaces and tabs), the way
/// `HeaderValue::to_str` reads it.
fn text(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&byte| byte == b'\t' || (b' '..0x7f).contains(&byte))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// A request target's form: whether absolute, its authority if so, and the
/// origin-form path and query the instance gets. `*` (OPTIONS) passes as it is.
fn split_target(target: &str) -> Result<(bool, Option<&str>, &str), Refusal> {
    if target.starts_with('/') || target == "*" {
        return Ok((false, None, target));
    }
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        let prefix = target.get(..scheme.len())?;
        prefix
            .eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    });
    let Some(rest) = rest else {
        return Err(BAD_REQUEST);
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(BAD_REQUEST);
    }
    // `http://host?q` has an empty path: the instance gets `/?q`, which is the same
    // resource; `http://host` gets `/`.
    let path = if path.starts_with('/') { path } else { "/" };
    Ok((true, Some(authority), path))
}

/// What goes with a request head to the instance besides the client's own headers.
pub(crate) struct Forwarding<'a> {
    /// The client's address as `X-Forwarded-For` carries it.
    pub(crate) forwarded_for: &'a [u8],
    /// `http` or `https`.
    pub(crate) proto: &'a [u8],
}

/// Writes the head the instance gets into `out`: the request line in HTTP/1.1; the
/// client's headers without the hop-by-hop ones, those `Connection` names, `Expect`
/// (the router answers it), the framing (written again), and the `X-Forwarded-*` that
/// it sets itself; then `Host` for an absolute-form target, the upgrade's
/// `Connection`, the framing, and `X-Forwarded-For` (what proxies before it wrote,
/// then the client), `-Proto` and `-Host` (the original Host).
pub(crate) fn write_instance_head(
    head: &RequestHead<'_>,
    forwarding: &Forwarding<'_>,
    out: &mut Vec<u8>,
) {
    let host = head.host.unwrap_or_default().as_bytes();
    request_line(head, out);
    let mut earlier_for = false;
    for header in head.headers {
        let name = header.name;
        let kept_upgrade = head.upgrade && name.eq_ignore_ascii_case("upgrade");
        let skip = !kept_upgrade
            && (headers::is_hop_by_hop(name)
                || (head.connection.names_headers
                    && headers::named_by_connection(head.headers, name)))
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-host")
            || (head.absolute && name.eq_ignore_ascii_case("host"));
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            earlier_for = true;
        } else if !skip {
            line(out, name.as_bytes(), header.value);
        }
    }
    if head.absolute {
        line(out, b"host", host);
    }
    if head.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    match head.framing {
        Framing::Empty => {}
        Framing::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(length, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    // What proxies before the router wrote, unless the client marked it as meant for
    // the router alone.
    if earlier_for
        && !(head.connection.names_headers
            && headers::named_by_connection(head.headers, "x-forwarded-for"))
    {
        for header in head.headers {
            if header.name.eq_ignore_ascii_case("x-forwarded-for") {
                out.extend_from_slice(header.value);
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(forwarding.forwarded_for);
    out.extend_from_slice(b"\r\n");
    line(out, b"x-forwarded-proto", forwarding.proto);
    line(out, b"x-forwarded-host", host);
    out.extend_from_slice(b"\r\n");
}

/// The request line, always HTTP/1.1 towards instances.
fn request_line(head: &RequestHead<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// One `name: value` header line.
pub(crate) fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `number` in decimal, written into `digits`.
pub(crate) fn itoa(mut number: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            return &digits[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `head` and returns the instance's head, or the refusal's status.
    fn check(head: &str) -> Result<String, u16> {
        let mut slots = header_slots();
        let parsed =
            parse(head.as_bytes(), &mut slots).map_err(|refusal| refusal.status.as_u16())?;
        let (head, _) = parsed.expect("a complete head");
        let mut out = Vec::new();
        let forwarding = Forwarding {
            forwarded_for: b"127.0.0.1",
            proto: b"http",
        };
        write_instance_head(&head, &forwarding, &mut out);
        Ok(String::from_utf8(out).expect("text"))
    }

    #[test]
    fn smuggling_attempts_are_refused() {
        for (head, status) in [
            (
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                400,
            ),
            ("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n", 400),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
                501,
            ),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost : web\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", 400),
            ("GET nowhere HTTP/1.1\r\n\r\n", 400),
        ] {
            assert_eq!(check(head), Err(status), "{head:?}");
        }
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(101));
        assert_eq!(check(&many), Err(431));
    }

    #[test]
    fn the_instance_gets_the_head_rewritten() {
        let head = check(
            "GET http://Web.localhost:8000/a?b HTTP/1.0\r\nHost: other\r\nConnection: keep-alive, X-Secret\r\n\
             X-Secret: 1\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nKeep-Alive: 5\r\n\
             Expect: 100-continue\r\nAccept: */*\r\nContent-Length: 2\r\n\r\n",
        );
        assert_eq!(
            head.as_deref(),
            Ok(
                "GET /a?b HTTP/1.1\r\nAccept: */*\r\nhost: Web.localhost:8000\r\ncontent-length: 2\r\n\
                x-forwarded-for: 10.0.0.1, 127.0.0.1\r\nx-forwarded-proto: http\r\n\
                x-forwarded-host: Web.localhost:8000\r\n\r\n"
            )
        );
        let head = check(
            "GET /socket HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Connection: host\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(
            head.as_deref(),
            Ok(
                "GET /socket HTTP/1.1\r\nHost: chat\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\
                transfer-encoding: chunked\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\
                x-forwarded-host: chat\r\n\r\n"
            )
        );
    }
}
