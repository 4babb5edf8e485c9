//! Headers the router removes (hop-by-hop) and adds (`X-Forwarded-*`).

use std::net::IpAddr;

use hyper::header::{
    CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION,
    TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
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

/// Whether a `Connection` header lists `token` (case-insensitive).
pub(crate) fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|listed| listed.eq_ignore_ascii_case(token))
}

/// Whether these are the headers of an upgrade request (WebSocket and the
/// like): an `Upgrade` header that `Connection` marks as meant for us.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) && connection_has(headers, "upgrade")
}

/// Removes the hop-by-hop headers: `Connection` and every header it lists,
/// `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` and all
/// `Proxy-*`. They describe one connection, and the router has two; hyper
/// frames each side's bodies itself.
///
/// With `keep_upgrade` (an upgrade handshake) the `Upgrade` header survives and
/// `Connection: upgrade` is set again, because the handshake is exactly what
/// has to reach the other side.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let upgrade = if keep_upgrade {
        headers.get(UPGRADE).cloned()
    } else {
        None
    };
    // `Connection: host` must not make the instance lose the Host: that
    // would be a way to reach an app's default virtual host.
    let listed: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .filter(|name| *name != HOST)
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        KEEP_ALIVE,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
    for name in [PROXY_AUTHENTICATE, PROXY_AUTHORIZATION] {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
    if let Some(upgrade) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade);
    }
}

/// Tells the instance who asked: appends the client's address to
/// `X-Forwarded-For` (keeping what proxies in front of us wrote there) and
/// sets `X-Forwarded-Proto: http` and `X-Forwarded-Host` (the original Host),
/// replacing whatever the client claimed for those two.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, host: HeaderValue) {
    let client = client.to_canonical().to_string();
    let mut chain: Vec<u8> = Vec::new();
    for earlier in headers.get_all(X_FORWARDED_FOR) {
        chain.extend_from_slice(earlier.as_bytes());
        chain.extend_from_slice(b", ");
    }
    chain.extend_from_slice(client.as_bytes());
    // Joining valid header values with ", " gives a valid header value; the
    // fallback is for the impossible case only.
    let chain = HeaderValue::from_bytes(&chain)
        .or_else(|_| HeaderValue::from_str(&client))
        .unwrap_or(HeaderValue::from_static("unknown"));
    headers.insert(X_FORWARDED_FOR, chain);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    headers.insert(X_FORWARDED_HOST, host);
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
    fn check_strip(input: &[(&str, &str)], keep_upgrade: bool, expected: &[&str]) {
        let mut map = headers(input);
        strip_hop_by_hop(&mut map, keep_upgrade);
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
            false,
            &["accept: */*", "host: web.localhost"],
        );
    }

    #[test]
    fn connection_cannot_remove_host() {
        check_strip(
            &[("host", "web.localhost"), ("connection", "host")],
            false,
            &["host: web.localhost"],
        );
    }

    #[test]
    fn upgrade_handshake_survives_when_asked() {
        check_strip(
            &[
                ("host", "web.localhost"),
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", "x"),
            ],
            true,
            &[
                "connection: upgrade",
                "host: web.localhost",
                "sec-websocket-key: x",
                "upgrade: websocket",
            ],
        );
    }

    #[test]
    fn upgrade_needs_both_headers() {
        assert!(is_upgrade(&headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket")
        ])));
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&headers(&[("connection", "upgrade")])));
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
            "::ffff:127.0.0.1".parse().expect("ip"),
            HeaderValue::from_static("web.localhost:8000"),
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
            "::1".parse().expect("ip"),
            HeaderValue::from_static("web.localhost"),
        );
        assert_eq!(
            map.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes),
            Some(&b"::1"[..])
        );
    }
}
