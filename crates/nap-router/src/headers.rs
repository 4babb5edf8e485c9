//! Headers the router removes (hop-by-hop) and adds (`X-Forwarded-*`).

use std::net::IpAddr;

use hyper::body::Bytes;

use hyper::header::{
    CONNECTION, Entry, HOST, HeaderMap, HeaderName, HeaderValue, TE, TRAILER, TRANSFER_ENCODING,
    UPGRADE,
};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The comma-separated tokens of every `Connection` header.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

// The hop-by-hop headers a message can carry, as bits of one byte.
const HAS_CONNECTION: u8 = 1;
const HAS_KEEP_ALIVE: u8 = 1 << 1;
const HAS_TE: u8 = 1 << 2;
const HAS_TRAILER: u8 = 1 << 3;
const HAS_TRANSFER_ENCODING: u8 = 1 << 4;
const HAS_UPGRADE: u8 = 1 << 5;
const HAS_PROXY: u8 = 1 << 6;

/// Which bit `name` sets if it is hop-by-hop whatever `Connection` says;
/// 0 if it is not. Standard names compare as numbers, so this is cheap.
fn hop_by_hop_bit(name: &HeaderName) -> u8 {
    if name == CONNECTION {
        HAS_CONNECTION
    } else if name == TE {
        HAS_TE
    } else if name == TRAILER {
        HAS_TRAILER
    } else if name == TRANSFER_ENCODING {
        HAS_TRANSFER_ENCODING
    } else if name == UPGRADE {
        HAS_UPGRADE
    } else {
        let name = name.as_str();
        if name == "keep-alive" {
            HAS_KEEP_ALIVE
        } else if name.starts_with("proxy-") {
            HAS_PROXY
        } else {
            0
        }
    }
}

/// Removes the hop-by-hop headers: `Connection` and every header it lists,
/// `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` and all
/// `Proxy-*`. They describe one connection, and the router has two; hyper
/// frames each side's bodies itself. Returns whether `Connection` said
/// `close`. This is the HTTP/2 path's; HTTP/1.x heads are rewritten as bytes
/// with [`is_hop_by_hop`] and [`ConnectionOptions`].
///
/// Every message passes through here, so it looks at each header name once
/// and removes only what is there: most requests carry none of these, most
/// responses only `Connection: keep-alive`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) -> bool {
    let present = headers
        .keys()
        .fold(0, |present, name| present | hop_by_hop_bit(name));
    if present == 0 {
        return false;
    }
    let mut close = false;
    if present & HAS_CONNECTION != 0 {
        // The headers `Connection` lists, found among those present (so that
        // the usual `keep-alive` and `close` cost no new header name).
        // `Connection: host` must not make the instance lose the Host: that
        // would be a way to reach an app's default virtual host.
        let mut listed: Vec<HeaderName> = Vec::new();
        for token in connection_tokens(headers) {
            if token.eq_ignore_ascii_case("close") {
                close = true;
            } else if token.eq_ignore_ascii_case("keep-alive")
                || token.eq_ignore_ascii_case("upgrade")
            {
                // Those headers go anyway.
            } else if let Some(name) = headers
                .keys()
                .find(|name| name.as_str().eq_ignore_ascii_case(token))
                && *name != HOST
                && hop_by_hop_bit(name) == 0
            {
                listed.push(name.clone());
            }
        }
        for name in listed {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    if present & HAS_PROXY != 0 {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
    for (bit, name) in [
        (HAS_KEEP_ALIVE, KEEP_ALIVE),
        (HAS_TE, TE),
        (HAS_TRAILER, TRAILER),
        (HAS_TRANSFER_ENCODING, TRANSFER_ENCODING),
        (HAS_UPGRADE, UPGRADE),
    ] {
        if present & bit != 0 {
            headers.remove(name);
        }
    }
    close
}

/// A client's address as `X-Forwarded-For` carries it: IPv4 in dotted form
/// (also when it reached an IPv6 socket as `::ffff:a.b.c.d`), IPv6 as text.
pub(crate) fn forwarded_for_value(client: IpAddr) -> HeaderValue {
    let text = match client.to_canonical() {
        // Every connection needs this, and `Display` goes through the
        // formatting machinery: IPv4 is written by hand.
        IpAddr::V4(ip) => {
            let mut text = Vec::with_capacity(15);
            for (index, octet) in ip.octets().into_iter().enumerate() {
                if index > 0 {
                    text.push(b'.');
                }
                if octet >= 100 {
                    text.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    text.push(b'0' + octet / 10 % 10);
                }
                text.push(b'0' + octet % 10);
            }
            text
        }
        IpAddr::V6(ip) => ip.to_string().into_bytes(),
    };
    HeaderValue::from_maybe_shared(Bytes::from(text)).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Tells the instance who asked: appends the client's address (from
/// [`forwarded_for_value`]) to `X-Forwarded-For`, keeping what proxies in
/// front of us wrote there, and sets `X-Forwarded-Proto` and
/// `X-Forwarded-Host` (the original Host), replacing whatever the client
/// claimed for those two.
pub(crate) fn add_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    proto: &HeaderValue,
    host: &HeaderValue,
) {
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(entry) => {
            entry.insert(client.clone());
        }
        Entry::Occupied(mut entry) => {
            let mut chain: Vec<u8> = Vec::new();
            for earlier in entry.iter() {
                chain.extend_from_slice(earlier.as_bytes());
                chain.extend_from_slice(b", ");
            }
            chain.extend_from_slice(client.as_bytes());
            // Joining valid header values with ", " gives a valid header
            // value; the fallback is for the impossible case only.
            entry.insert(HeaderValue::from_bytes(&chain).unwrap_or_else(|_| client.clone()));
        }
    }
    headers.insert(X_FORWARDED_PROTO, proto.clone());
    headers.insert(X_FORWARDED_HOST, host.clone());
}

/// Whether header `name` (as it came, any case) is hop-by-hop whatever `Connection`
/// says: the raw-bytes counterpart of [`strip_hop_by_hop`]'s list.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    let is = |known: &str| name.eq_ignore_ascii_case(known);
    match name.len() {
        2 => is("te"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        17 => is("transfer-encoding"),
        _ => name.len() > 6 && name.as_bytes()[..6].eq_ignore_ascii_case(b"proxy-"),
    }
}

/// What the `Connection` headers of a message say, read from their raw values.
#[derive(Default, Clone, Copy)]
pub(crate) struct ConnectionOptions {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
    /// Whether they name other headers, which are then hop-by-hop too.
    pub(crate) names_headers: bool,
}

impl ConnectionOptions {
    /// Adds the tokens of one `Connection` header value.
    pub(crate) fn add(&mut self, value: &[u8]) {
        for token in tokens(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                self.names_headers = true;
            }
        }
    }
}

/// What a message head's fields say about its framing and its connection: the fields
/// a request's and a response's head are both checked by.
#[derive(Default)]
pub(crate) struct FramingFields<'b> {
    pub(crate) connection: ConnectionOptions,
    /// How many `Content-Length` fields, and the last one's value.
    pub(crate) lengths: usize,
    pub(crate) length: Option<&'b [u8]>,
    /// The `Transfer-Encoding` value; two fields read as `,`, which is never exactly
    /// `chunked`.
    pub(crate) codings: Option<&'b [u8]>,
}

impl<'b> FramingFields<'b> {
    /// Takes note of `header` if it is one of these; whether it was.
    pub(crate) fn see(&mut self, header: &httparse::Header<'b>) -> bool {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            self.lengths += 1;
            self.length = Some(header.value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.codings = Some(if self.codings.is_some() {
                b","
            } else {
                header.value
            });
        } else if name.eq_ignore_ascii_case("connection") {
            self.connection.add(header.value);
        } else {
            return false;
        }
        true
    }
}

/// The comma-separated, trimmed, non-empty tokens of a raw header value.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&byte| byte == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// Whether a `Connection` header among `headers` names header `name`. `Host` is never
/// taken as named: losing it would be a way to reach an app's default virtual host.
pub(crate) fn named_by_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    !name.eq_ignore_ascii_case("host")
        && headers
            .iter()
            .filter(|header| header.name.eq_ignore_ascii_case("connection"))
            .any(|header| {
                tokens(header.value).any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
                HeaderValue::from_str(value).expect("test header value"),
            );
        }
        map
    }

    fn render(map: &HeaderMap) -> Vec<String> {
        let mut lines: Vec<String> = map
            .iter()
            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
            .collect();
        lines.sort();
        lines
    }

    #[track_caller]
    fn check_strip(input: &[(&str, &str)], expected: &[&str]) {
        let mut map = headers(input);
        let _close = strip_hop_by_hop(&mut map);
        assert_eq!(render(&map), expected);
    }

    #[test]
    fn hop_by_hop_headers_go() {
        check_strip(
            &[
                ("host", "web.localhost"),
                ("connection", "keep-alive, X-Secret"),
                ("connection", "close"),
                ("keep-alive", "timeout=5"),
                ("x-secret", "1"),
                ("te", "trailers"),
                ("trailer", "x-checksum"),
                ("transfer-encoding", "chunked"),
                ("proxy-authorization", "Basic eA=="),
                ("proxy-connection", "keep-alive"),
                ("upgrade", "websocket"),
                ("accept", "*/*"),
            ],
            &["accept: */*", "host: web.localhost"],
        );
    }

    #[test]
    fn close_is_reported() {
        for (lines, close) in [
            (&[("connection", "keep-alive")][..], false),
            (&[("connection", "Keep-Alive, CLOSE")][..], true),
            (
                &[("connection", "keep-alive"), ("connection", "close")][..],
                true,
            ),
            (&[("x-close", "close")][..], false),
        ] {
            assert_eq!(strip_hop_by_hop(&mut headers(lines)), close, "{lines:?}");
        }
    }

    #[test]
    fn connection_cannot_remove_host() {
        check_strip(
            &[("host", "web.localhost"), ("connection", "host")],
            &["host: web.localhost"],
        );
    }

    #[test]
    fn client_addresses_as_forwarded_for_writes_them() {
        for (ip, text) in [
            ("127.0.0.1", "127.0.0.1"),
            ("0.0.0.0", "0.0.0.0"),
            ("10.200.9.255", "10.200.9.255"),
            ("::ffff:192.168.100.1", "192.168.100.1"),
            ("::1", "::1"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            let value = forwarded_for_value(ip.parse().expect("ip"));
            assert_eq!(value.to_str().expect("text"), text);
        }
    }

    #[test]
    fn forwarded_headers_append_and_replace() {
        let mut map = headers(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil"),
        ]);
        add_forwarded(
            &mut map,
            &forwarded_for_value("::ffff:127.0.0.1".parse().expect("ip")),
            &HeaderValue::from_static("http"),
            &HeaderValue::from_static("web.localhost:8000"),
        );
        assert_eq!(
            render(&map),
            [
                "x-forwarded-for: 10.0.0.1, 10.0.0.2, 127.0.0.1",
                "x-forwarded-host: web.localhost:8000",
                "x-forwarded-proto: http",
            ]
        );
        let mut map = HeaderMap::new();
        add_forwarded(
            &mut map,
            &forwarded_for_value("::1".parse().expect("ip")),
            &HeaderValue::from_static("https"),
            &HeaderValue::from_static("web.localhost"),
        );
        assert_eq!(
            map.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes),
            Some(&b"::1"[..])
        );
    }
}
