//! Fields that belong to one connection stay with it, and the forwarding
//! fields come from the router, not from the client.

use crate::support::raw::{Answer, Wire, echo_target, run_cases};

use super::{finish, request, web};

/// The hop-by-hop fields of a request, and those its `Connection` names,
/// stay with the router; the rest reaches the instance. `Connection: host`
/// cannot take the Host away.
#[tokio::test]
async fn hop_by_hop_request_fields_are_not_forwarded() {
    let (router, instance) = web(echo_target).await;
    let mut wire = Wire::connect(&router).await;
    wire.send(&request(
        "GET /hop HTTP/1.1",
        "Connection: keep-alive, X-Listed, x-other, Host\r\nX-Listed: 1\r\nX-Other: 2\r\nX-Kept: 3\r\n\
         Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Checksum\r\nProxy-Authorization: Basic eDp5\r\n\
         Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\n",
        "",
    ))
    .await;
    let response = wire.response(false).await;
    assert_eq!(response.status, 200);
    finish(router, &instance).await;
    let seen = &instance.requests()[0];
    assert_eq!(seen.head.all("x-kept"), ["3"]);
    assert_eq!(seen.head.all("host"), ["web.localhost"]);
    for gone in [
        "connection",
        "x-listed",
        "x-other",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert_eq!(
            seen.head.all(gone),
            Vec::<&str>::new(),
            "{gone} reached the instance"
        );
    }
}

/// The same for a response: the client does not see the instance's
/// hop-by-hop fields.
#[tokio::test]
async fn hop_by_hop_response_fields_are_not_forwarded() {
    let (router, instance) = web(|_| {
        Answer::bytes(
            "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
             X-Kept: 2\r\nContent-Length: 2\r\n\r\nok",
        )
    })
    .await;
    let mut wire = Wire::connect(&router).await;
    wire.send(&request("GET / HTTP/1.1", "", "")).await;
    let response = wire.response(false).await;
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    assert_eq!(response.head.all("x-kept"), ["2"]);
    for gone in ["x-secret", "keep-alive"] {
        assert_eq!(
            response.head.all(gone),
            Vec::<&str>::new(),
            "{gone} reached the client"
        );
    }
    assert!(
        response
            .head
            .all("connection")
            .iter()
            .all(|value| !value.to_ascii_lowercase().contains("x-secret")),
        "{response:?}"
    );
    finish(router, &instance).await;
}

/// `client_fields` (each ending in CRLF) on a request; the instance sees
/// exactly `forwarded_for` as the one `X-Forwarded-For`, `http` as the one
/// `X-Forwarded-Proto` and the Host as the one `X-Forwarded-Host`.
pub async fn check_forwarded(client_fields: &'static str, forwarded_for: &'static str) {
    let (router, instance) = web(echo_target).await;
    let mut wire = Wire::connect(&router).await;
    wire.send(&request("GET /who HTTP/1.1", client_fields, ""))
        .await;
    assert_eq!(wire.response(false).await.status, 200);
    finish(router, &instance).await;
    let seen = &instance.requests()[0];
    assert_eq!(seen.head.all("x-forwarded-for"), [forwarded_for]);
    assert_eq!(seen.head.all("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.head.all("x-forwarded-host"), ["web.localhost"]);
}

/// The instance learns the peer's address as the last `X-Forwarded-For`
/// entry whatever the client wrote (what proxies in front of the router
/// wrote stays before it); the client cannot set the protocol or host.
#[tokio::test]
async fn forwarded_fields_come_from_the_connection() {
    let case = |name: &str, fields: &'static str, forwarded_for: &'static str| {
        (name.to_owned(), check_forwarded(fields, forwarded_for))
    };
    run_cases([
        case("none from the client", "", "127.0.0.1"),
        case("one from the client", "X-Forwarded-For: 10.9.9.9\r\n", "10.9.9.9, 127.0.0.1"),
        case("two from the client", "X-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\n", "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"),
        case("one in odd case", "x-FORWARDED-for: 10.9.9.9\r\n", "10.9.9.9, 127.0.0.1"),
        case("listed in Connection", "Connection: X-Forwarded-For\r\nX-Forwarded-For: 10.9.9.9\r\n", "127.0.0.1"),
        case("the client's protocol and host", "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example.com\r\n", "127.0.0.1"),
        case("the client's protocol and host, listed in Connection", "Connection: X-Forwarded-Proto, X-Forwarded-Host\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example.com\r\n", "127.0.0.1"),
    ])
    .await;
}
