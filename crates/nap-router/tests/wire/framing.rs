//! Well-framed requests and responses: passed on intact, in order, with the
//! connection kept or closed as the client and HTTP say.

use crate::support::Router;
use crate::support::raw::{Answer, Instance, Reply, Wire, echo_target, ok, run_cases};

use super::refused::many_fields;
use super::{finish, request, web};

/// A router on `web` whose instance answers a few paths its own way, for the
/// framing cases; everything else gets its target back.
async fn framing_router() -> (Router, Instance) {
    web(|seen| match seen.target.as_str() {
        "/204" => Answer::bytes("HTTP/1.1 204 No Content\r\n\r\n"),
        "/304" => Answer::bytes("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n"),
        "/until-close" => Answer::bytes("HTTP/1.1 200 OK\r\n\r\nuntil close").then_close(),
        "/chunked" => Answer::bytes(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        ),
        "/early" => Answer::bytes(
            "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        )
        .then_write(ok("ok")),
        _ => echo_target(seen),
    })
    .await
}

/// What the client connection does after the expected responses.
#[derive(Clone, Copy, Debug)]
pub enum After {
    /// It stays open and serves another request.
    Open,
    /// The router closes it.
    Closed,
    /// As the last response's framing says: closed if it ran until close,
    /// open otherwise.
    AsFramed,
}

/// `request` (one or several pipelined) gets `answers` (status line, body)
/// in order, after which the connection does what `after` says, and the
/// instance sees exactly `reached` (`METHOD target`, body).
pub async fn check_passes(
    request: Vec<u8>,
    answers: &[(&str, &str)],
    reached: &[(&str, &str)],
    after: After,
) {
    let (router, instance) = framing_router().await;
    let mut wire = Wire::connect(&router).await;
    wire.send(&request).await;
    let mut last = None;
    for (status, body) in answers {
        let response = wire.response(false).await;
        assert_eq!(
            (response.head.line.as_str(), response.text().as_str()),
            (*status, *body),
            "{response:?}"
        );
        last = Some(response);
    }
    let last = last.expect("a case expects a response");
    let open = match after {
        After::Open => true,
        After::Closed => false,
        After::AsFramed => !last.until_close,
    };
    let mut expected: Vec<(String, String)> = reached
        .iter()
        .map(|(summary, body)| ((*summary).to_owned(), (*body).to_owned()))
        .collect();
    if open {
        // An HTTP/1.0 client knows the connection persists only if told so.
        if last.head.line.starts_with("HTTP/1.0 ") {
            let connection = last.head.get("connection").unwrap_or_default();
            assert!(connection.eq_ignore_ascii_case("keep-alive"), "{last:?}");
        }
        wire.send(b"GET /after HTTP/1.1\r\nHost: web.localhost\r\n\r\n")
            .await;
        let response = wire.response(false).await;
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "/after"),
            "{response:?}"
        );
        expected.push(("GET /after".to_owned(), String::new()));
    } else {
        wire.closed().await;
    }
    finish(router, &instance).await;
    let requests = instance.requests();
    for seen in &requests {
        assert_eq!(
            seen.version, "HTTP/1.1",
            "the router speaks HTTP/1.1 to instances"
        );
    }
    let seen: Vec<(String, String)> = requests
        .iter()
        .map(|seen| {
            (
                seen.summary(),
                String::from_utf8_lossy(&seen.body).into_owned(),
            )
        })
        .collect();
    assert_eq!(seen, expected, "what reached the instance");
}

/// A table row for [`check_passes`].
pub fn passes(
    name: &str,
    request: Vec<u8>,
    answers: &'static [(&'static str, &'static str)],
    reached: &'static [(&'static str, &'static str)],
    after: After,
) -> (String, impl Future<Output = ()> + Send + 'static) {
    (
        name.to_owned(),
        check_passes(request, answers, reached, after),
    )
}

/// Well-framed requests and responses pass through intact, each answered in
/// order, with the connection kept or closed as the client and HTTP say.
#[tokio::test]
async fn correct_framing_passes_through() {
    use After::{AsFramed, Closed, Open};
    const OK: &str = "HTTP/1.1 200 OK";
    run_cases([
        passes(
            "a Content-Length body",
            request("POST /cl HTTP/1.1", "Content-Length: 11\r\n", "hello world"),
            &[(OK, "/cl")],
            &[("POST /cl", "hello world")],
            Open,
        ),
        passes(
            "Content-Length 0",
            request("POST /empty HTTP/1.1", "Content-Length: 0\r\n", ""),
            &[(OK, "/empty")],
            &[("POST /empty", "")],
            Open,
        ),
        passes(
            "a chunked body",
            request(
                "POST /in HTTP/1.1",
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            ),
            &[(OK, "/in")],
            &[("POST /in", "hello world")],
            Open,
        ),
        passes(
            "a chunked body with an extension and a trailer",
            request(
                "POST /in HTTP/1.1",
                "Transfer-Encoding: chunked\r\n",
                "5;name=value\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n",
            ),
            &[(OK, "/in")],
            &[("POST /in", "hello")],
            Open,
        ),
        passes(
            "chunked in capitals",
            request(
                "POST /in HTTP/1.1",
                "Transfer-Encoding: Chunked\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
            &[(OK, "/in")],
            &[("POST /in", "hello")],
            Open,
        ),
        passes(
            "an empty chunked body",
            request(
                "POST /in HTTP/1.1",
                "Transfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            &[(OK, "/in")],
            &[("POST /in", "")],
            Open,
        ),
        passes(
            "pipelined requests",
            [
                request("GET /1 HTTP/1.1", "", ""),
                request("POST /2 HTTP/1.1", "Content-Length: 3\r\n", "two"),
                request(
                    "POST /3 HTTP/1.1",
                    "Transfer-Encoding: chunked\r\n",
                    "5\r\nthree\r\n0\r\n\r\n",
                ),
                request("GET /4 HTTP/1.1", "", ""),
            ]
            .concat(),
            &[(OK, "/1"), (OK, "/2"), (OK, "/3"), (OK, "/4")],
            &[
                ("GET /1", ""),
                ("POST /2", "two"),
                ("POST /3", "three"),
                ("GET /4", ""),
            ],
            Open,
        ),
        passes(
            "HTTP/1.0",
            request("GET /old HTTP/1.0", "", ""),
            &[("HTTP/1.0 200 OK", "/old")],
            &[("GET /old", "")],
            Closed,
        ),
        passes(
            "HTTP/1.0 with keep-alive",
            request("GET /old HTTP/1.0", "Connection: keep-alive\r\n", ""),
            &[("HTTP/1.0 200 OK", "/old")],
            &[("GET /old", "")],
            Open,
        ),
        passes(
            "HTTP/1.0 and a chunked response",
            request("GET /chunked HTTP/1.0", "", ""),
            &[("HTTP/1.0 200 OK", "hello world")],
            &[("GET /chunked", "")],
            Closed,
        ),
        passes(
            "HTTP/1.0 and a response until close",
            request("GET /until-close HTTP/1.0", "", ""),
            &[("HTTP/1.0 200 OK", "until close")],
            &[("GET /until-close", "")],
            Closed,
        ),
        passes(
            "a chunked response",
            request("GET /chunked HTTP/1.1", "", ""),
            &[(OK, "hello world")],
            &[("GET /chunked", "")],
            Open,
        ),
        passes(
            "a response until close",
            request("GET /until-close HTTP/1.1", "", ""),
            &[(OK, "until close")],
            &[("GET /until-close", "")],
            AsFramed,
        ),
        passes(
            "a 204 has no body",
            [
                request("GET /204 HTTP/1.1", "", ""),
                request("GET /next HTTP/1.1", "", ""),
            ]
            .concat(),
            &[("HTTP/1.1 204 No Content", ""), (OK, "/next")],
            &[("GET /204", ""), ("GET /next", "")],
            Open,
        ),
        passes(
            "a 304 has no body",
            [
                request("GET /304 HTTP/1.1", "", ""),
                request("GET /next HTTP/1.1", "", ""),
            ]
            .concat(),
            &[("HTTP/1.1 304 Not Modified", ""), (OK, "/next")],
            &[("GET /304", ""), ("GET /next", "")],
            Open,
        ),
        passes(
            "a 1xx before the response",
            request("GET /early HTTP/1.1", "", ""),
            &[(OK, "ok")],
            &[("GET /early", "")],
            Open,
        ),
        passes(
            "Connection: close",
            [
                request("GET /last HTTP/1.1", "Connection: close\r\n", ""),
                request("GET /never HTTP/1.1", "", ""),
            ]
            .concat(),
            &[(OK, "/last")],
            &[("GET /last", "")],
            Closed,
        ),
        passes(
            "100 fields",
            request("GET /many HTTP/1.1", &many_fields(99), ""),
            &[(OK, "/many")],
            &[("GET /many", "")],
            Open,
        ),
        passes(
            "whitespace around a Content-Length",
            request("POST /ows HTTP/1.1", "Content-Length: \t 3 \r\n", "ows"),
            &[(OK, "/ows")],
            &[("POST /ows", "ows")],
            Open,
        ),
        passes(
            "a 60 KiB head",
            request(
                "GET /big HTTP/1.1",
                &format!("X-Big: {}\r\n", "b".repeat(60 * 1024)),
                "",
            ),
            &[(OK, "/big")],
            &[("GET /big", "")],
            Open,
        ),
    ])
    .await;
}

/// A HEAD's response has a `Content-Length` and no body: the response to the
/// request behind it starts right after the head.
#[tokio::test]
async fn a_head_response_has_no_body() {
    let (router, instance) = framing_router().await;
    let mut wire = Wire::connect(&router).await;
    wire.send(
        &[
            request("HEAD /head HTTP/1.1", "", ""),
            request("GET /next HTTP/1.1", "", ""),
        ]
        .concat(),
    )
    .await;
    let head = wire.response(true).await;
    assert_eq!(head.head.line, "HTTP/1.1 200 OK");
    assert_eq!(head.head.get("content-length"), Some("5"), "{head:?}");
    let next = wire.response(false).await;
    assert_eq!((next.status, next.text().as_str()), (200, "/next"));
    finish(router, &instance).await;
    assert_eq!(instance.summaries(), ["HEAD /head", "GET /next"]);
}

/// `Expect: 100-continue`: the client hears 100 before it sends the body,
/// and the body then reaches the instance.
#[tokio::test]
async fn expect_100_continue_gets_a_100_first() {
    let (router, instance) = web(echo_target).await;
    let mut wire = Wire::connect(&router).await;
    wire.send(&request(
        "POST /upload HTTP/1.1",
        "Content-Length: 5\r\nExpect: 100-continue\r\n",
        "",
    ))
    .await;
    match wire.reply(false).await {
        Reply::Whole(response) => assert_eq!(response.head.line, "HTTP/1.1 100 Continue"),
        other => panic!("no 100 Continue but {other:?}"),
    }
    wire.send(b"hello").await;
    let response = wire.response(false).await;
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "/upload")
    );
    finish(router, &instance).await;
    let seen = instance.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].summary().as_str(), &seen[0].body[..]),
        ("POST /upload", &b"hello"[..])
    );
}

/// An absolute-form target is routed by its authority, which becomes the
/// instance's Host (RFC 9112 §3.2.2), and the instance gets the path.
#[tokio::test]
async fn an_absolute_form_target_sets_the_host() {
    let (router, instance) = web(echo_target).await;
    let mut wire = Wire::connect(&router).await;
    wire.send(b"GET http://web.localhost/abs?q=1 HTTP/1.1\r\nHost: other.localhost\r\n\r\n")
        .await;
    let response = wire.response(false).await;
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "/abs?q=1")
    );
    finish(router, &instance).await;
    let seen = instance.requests();
    assert_eq!(seen[0].head.all("host"), ["web.localhost"]);
}

/// Field values are passed on as bytes, beyond ASCII too (RFC 9110 §5.5
/// allows obs-text), both ways.
#[tokio::test]
async fn field_values_beyond_ascii_pass_through_as_bytes() {
    let (router, instance) = web(|_| {
        Answer::bytes("HTTP/1.1 200 OK\r\nX-Reply: crème brûlée\r\nContent-Length: 2\r\n\r\nok")
    })
    .await;
    let mut wire = Wire::connect(&router).await;
    wire.send(&request("GET / HTTP/1.1", "X-Name: café\r\n", ""))
        .await;
    let response = wire.response(false).await;
    assert_eq!(response.head.all("x-reply"), ["crème brûlée"]);
    finish(router, &instance).await;
    assert_eq!(instance.requests()[0].head.all("x-name"), ["café"]);
}
