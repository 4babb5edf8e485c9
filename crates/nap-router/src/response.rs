//! An instance's HTTP/1.x response head: parsed with httparse, checked, and written
//! again as bytes for the client.
//!
//! An instance is not trusted to frame its response soundly: one with both
//! `Content-Length` and `Transfer-Encoding`, more than one `Content-Length`, one that
//! is not all digits, or a `Transfer-Encoding` other than `chunked` is refused as
//! [`Odd`] (the client gets a 502 and the instance's connection is closed), so that it
//! can never make the client's connection read two responses where it sent one. Header
//! values go to the client as the bytes that came, which never hold CR or LF: httparse
//! refuses a head with either inside a value.

use hyper::StatusCode;

use crate::headers::{self, ConnectionOptions, FramingFields};
use crate::request::{self, HeaderSlots, MAX_HEAD};

/// A response head the router will not pass on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Odd(pub(crate) &'static str);

/// How an instance's response body is delimited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Body {
    /// No body: a response to HEAD, a 1xx, 204 or 304.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the instance closes the connection.
    UntilClose,
}

/// A parsed response head, borrowing the instance connection's read buffer.
pub(crate) struct ResponseHead<'b> {
    pub(crate) code: u16,
    reason: &'b str,
    /// The instance spoke HTTP/1.0.
    http10: bool,
    headers: &'b [httparse::Header<'b>],
    pub(crate) body: Body,
    connection: ConnectionOptions,
    has_date: bool,
}

impl ResponseHead<'_> {
    /// Whether the instance's connection can carry another request after this
    /// response (before looking at how the body went).
    pub(crate) fn reusable(&self) -> bool {
        !self.http10 && !self.connection.close && self.body != Body::UntilClose
    }
}

/// Parses the response head at the start of `buffer`, the answer to a request for
/// which `head_request` says whether it was HEAD: `Ok(None)` if it is not complete yet.
pub(crate) fn parse<'b>(
    buffer: &'b [u8],
    slots: &'b mut HeaderSlots<'b>,
    head_request: bool,
) -> Result<Option<(ResponseHead<'b>, usize)>, Odd> {
    let mut response = httparse::Response::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buffer,
        slots,
    ) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_HEAD => {
            return Err(Odd("response head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Odd("malformed response head")),
    };
    if length > MAX_HEAD {
        return Err(Odd("response head too large"));
    }
    let (Some(code), Some(version)) = (response.code, response.version) else {
        return Err(Odd("malformed response head"));
    };
    let headers: &'b [httparse::Header<'b>] = response.headers;
    let mut fields = FramingFields::default();
    let mut has_date = false;
    for header in headers {
        if !fields.see(header) && header.name.eq_ignore_ascii_case("date") {
            has_date = true;
        }
    }
    let (connection, lengths, length_value, codings) = (
        fields.connection,
        fields.lengths,
        fields.length,
        fields.codings,
    );
    let framed = match (codings, lengths) {
        (Some(_), 0) if version == 0 => return Err(Odd("transfer-encoding in HTTP/1.0")),
        (Some(codings), 0) if codings.trim_ascii().eq_ignore_ascii_case(b"chunked") => {
            Body::Chunked
        }
        (Some(_), 0) => return Err(Odd("a transfer coding other than chunked")),
        (Some(_), _) => return Err(Odd("both content-length and transfer-encoding")),
        (None, 0) => Body::UntilClose,
        (None, 1) => match length_value.and_then(request::content_length) {
            Some(length) => Body::Length(length),
            None => return Err(Odd("a malformed content-length")),
        },
        (None, _) => return Err(Odd("more than one content-length")),
    };
    let body = if head_request || code < 200 || code == 204 || code == 304 {
        Body::None
    } else {
        framed
    };
    Ok(Some((
        ResponseHead {
            code,
            reason: response.reason.unwrap_or_default(),
            http10: version == 0,
            headers,
            body,
            connection,
            has_date,
        },
        length,
    )))
}

/// How the client's side frames a response.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sending {
    /// As the instance framed it: no body, or its length.
    AsIs,
    /// Chunked (the instance's chunks, or its until-close body cut into chunks).
    Chunked,
    /// The body's bytes, then the client's connection closes (HTTP/1.0 clients).
    UntilClose,
}

/// How to send `head`'s body to a client that speaks HTTP/1.0 if `http10`.
pub(crate) fn sending(head: &ResponseHead<'_>, http10: bool) -> Sending {
    match head.body {
        Body::None | Body::Length(_) => Sending::AsIs,
        Body::Chunked | Body::UntilClose if http10 => Sending::UntilClose,
        Body::Chunked | Body::UntilClose => Sending::Chunked,
    }
}

/// Writes the head the client gets into `out`: the status line in the client's
/// version (the canonical reason when there is one), the instance's headers without
/// the hop-by-hop ones and those its `Connection` names, then the framing of
/// `sending`, a `Date` if the instance sent none, and `Connection` as the client's
/// connection goes on (`keep_alive`). With `upgrade` (a 101), `Upgrade` stays and
/// `Connection: upgrade` is set.
pub(crate) fn write_client_head(
    head: &ResponseHead<'_>,
    sending: Sending,
    http10: bool,
    keep_alive: bool,
    upgrade: bool,
    out: &mut Vec<u8>,
) {
    status_line(out, http10, head.code, head.reason);
    for header in head.headers {
        let name = header.name;
        let kept_upgrade = upgrade && name.eq_ignore_ascii_case("upgrade");
        let skip = !kept_upgrade
            && (headers::is_hop_by_hop(name)
                || (head.connection.names_headers
                    && headers::named_by_connection(head.headers, name)));
        if !skip {
            request::line(out, name.as_bytes(), header.value);
        }
    }
    if !head.has_date {
        date(out);
    }
    if upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    } else {
        if sending == Sending::Chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        connection(out, http10, keep_alive);
    }
    out.extend_from_slice(b"\r\n");
}

/// `HTTP/1.x CODE REASON`: the canonical reason for codes that have one, so that what
/// an instance writes there never reaches the client.
pub(crate) fn status_line(out: &mut Vec<u8>, http10: bool, code: u16, reason: &str) {
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(request::itoa(u64::from(code), &mut [0; 20]));
    out.push(b' ');
    let canonical = StatusCode::from_u16(code)
        .ok()
        .and_then(|status| status.canonical_reason());
    out.extend_from_slice(canonical.unwrap_or(reason).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The `Connection` header a client needs: `close` when its connection ends after this
/// response, `keep-alive` for an HTTP/1.0 client whose connection is kept.
pub(crate) fn connection(out: &mut Vec<u8>, http10: bool, keep_alive: bool) {
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
}

/// A `Date` header for now, formatted once a second per thread.
pub(crate) fn date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static NOW: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    NOW.with_borrow_mut(|(formatted_at, text)| {
        if *formatted_at != second || text.is_empty() {
            *text = httpdate::fmt_http_date(now);
            *formatted_at = second;
        }
        request::line(out, b"date", text.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::header_slots;

    /// Parses `head` (the answer to a GET) and returns what an HTTP/1.1 client gets
    /// with keep-alive, without the Date line, or why it is refused.
    fn check(head: &str) -> Result<String, Odd> {
        let mut slots = header_slots();
        let (parsed, _) = parse(head.as_bytes(), &mut slots, false)?.expect("complete");
        let mut out = Vec::new();
        let sending = sending(&parsed, false);
        write_client_head(&parsed, sending, false, true, false, &mut out);
        let text = String::from_utf8(out).expect("text");
        Ok(text
            .lines()
            .filter(|line| !line.starts_with("date: "))
            .map(|line| format!("{line}\n"))
            .collect())
    }

    #[test]
    fn hostile_framing_is_refused() {
        for head in [
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-A: a\0\r\n\r\n",
        ] {
            assert!(check(head).is_err(), "{head:?}");
        }
    }

    /// Header values go to the client as the bytes that came; that is safe only
    /// because httparse never lets a CR or LF into one (a head with either inside a
    /// value is refused), which this pins.
    #[test]
    fn values_passed_on_as_bytes_never_hold_cr_or_lf() {
        for head in [
            "HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: b=1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-A: a\r\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: b=1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-A: a\r\n Set-Cookie: b=1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-A: \u{7f}\u{80}a\tb\r\nContent-Length: 0\r\n\r\n",
        ] {
            let mut slots = header_slots();
            if let Ok(Some((parsed, _))) = parse(head.as_bytes(), &mut slots, false) {
                for header in parsed.headers {
                    assert!(
                        !header
                            .value
                            .iter()
                            .any(|&byte| byte == b'\r' || byte == b'\n'),
                        "{head:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_client_gets_the_head_rewritten() {
        assert_eq!(
            check(
                "HTTP/1.1 200 Fine\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nDate: x\r\nContent-Length: 3\r\n\r\n"
            ),
            Ok("HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 3\r\n\r\n".replace("\r\n", "\n"))
        );
        assert_eq!(
            check("HTTP/1.0 299 Odd\r\nDate: x\r\n\r\n"),
            Ok(
                "HTTP/1.1 299 Odd\r\nDate: x\r\ntransfer-encoding: chunked\r\n\r\n"
                    .replace("\r\n", "\n")
            )
        );
    }
}
