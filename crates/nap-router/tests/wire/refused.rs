//! Requests the router refuses: ambiguous or malformed framing, refused
//! before the instance gets a whole request, and never read on past.

use crate::support::raw::{Reply, Wire, echo_target, run_cases};

use super::{SMUGGLED, finish, request, web};

/// How much of a refused request may have reached the instance.
#[derive(Clone, Copy, Debug)]
pub enum Reached {
    /// Not a byte: the head itself is refused.
    Nothing,
    /// No whole request: the head was fine, the body went wrong after some
    /// of it had been passed on (a router that streams cannot take back what
    /// it sent, but it must not finish the request).
    NoWholeRequest,
}

/// `request`, with [`SMUGGLED`] right behind it in the same write, is
/// refused: the client gets one response, whose status line is one of
/// `statuses`, and then the router closes the connection; the instance gets
/// no whole request (and with [`Reached::Nothing`], not a byte).
pub async fn check_refused(request: Vec<u8>, statuses: &'static [&'static str], reached: Reached) {
    let (router, instance) = web(echo_target).await;
    let mut wire = Wire::connect(&router).await;
    wire.send(&[request, SMUGGLED.to_vec()].concat()).await;
    match wire.reply(false).await {
        Reply::Whole(response) => assert!(
            statuses.contains(&response.head.line.as_str()),
            "expected {statuses:?}, got {response:?}"
        ),
        other => panic!("expected {statuses:?}, got {other:?}"),
    }
    wire.closed().await;
    finish(router, &instance).await;
    assert_eq!(
        instance.summaries(),
        Vec::<String>::new(),
        "reached the instance"
    );
    if let Reached::Nothing = reached {
        assert_eq!(
            instance.bytes(),
            (0, 0),
            "bytes (all, of no whole request) reached the instance"
        );
    }
}

/// A table row for [`check_refused`].
pub fn refused(
    name: &str,
    request: Vec<u8>,
    statuses: &'static [&'static str],
    reached: Reached,
) -> (String, impl Future<Output = ()> + Send + 'static) {
    (name.to_owned(), check_refused(request, statuses, reached))
}

pub const BAD_REQUEST: &[&str] = &["HTTP/1.1 400 Bad Request"];
pub const TOO_LARGE: &[&str] = &["HTTP/1.1 431 Request Header Fields Too Large"];
/// A transfer coding the router does not know (RFC 9112 §6.1: 501).
pub const NOT_IMPLEMENTED: &[&str] = &["HTTP/1.1 501 Not Implemented"];

/// `count` fields `X-Field-N: N`, Host not counted.
pub fn many_fields(count: usize) -> String {
    (0..count)
        .map(|n| format!("X-Field-{n}: {n}\r\n"))
        .collect()
}

/// Requests whose framing is ambiguous or malformed, refused before they
/// reach the instance, and never read on past (RFC 9112 §6.3, §11.2).
#[tokio::test]
async fn ambiguous_or_malformed_heads_are_refused() {
    use Reached::Nothing;
    let post = "POST /bad HTTP/1.1";
    run_cases([
        refused(
            "two different Content-Lengths",
            request(post, "Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a Content-Length list",
            request(post, "Content-Length: 5, 5\r\n", "hello"),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a Content-Length that is no number",
            request(post, "Content-Length: abc\r\n", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a negative Content-Length",
            request(post, "Content-Length: -1\r\n", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a signed Content-Length",
            request(post, "Content-Length: +5\r\n", "hello"),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a hexadecimal Content-Length",
            request(post, "Content-Length: 0x5\r\n", "hello"),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a Content-Length past u64",
            request(post, "Content-Length: 18446744073709551616\r\n", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a Content-Length far past u64",
            request(post, "Content-Length: 99999999999999999999999999\r\n", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "Transfer-Encoding chunked, gzip",
            request(post, "Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "Transfer-Encoding gzip",
            request(post, "Transfer-Encoding: gzip\r\n", "0\r\n\r\n"),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "Transfer-Encoding xchunked",
            request(post, "Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
            NOT_IMPLEMENTED,
            Nothing,
        ),
        refused(
            "Transfer-Encoding identity",
            request(post, "Transfer-Encoding: identity\r\n", "0\r\n\r\n"),
            NOT_IMPLEMENTED,
            Nothing,
        ),
        refused(
            "Transfer-Encoding in HTTP/1.0",
            request(
                "POST /bad HTTP/1.0",
                "Transfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "an obs-fold with a space",
            request("GET /bad HTTP/1.1", "X-Folded: a\r\n b\r\n", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "an obs-fold with a tab",
            request("GET /bad HTTP/1.1", "X-Folded: a\r\n\tb\r\n", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a space before the colon",
            request(post, "Content-Length : 5\r\n", "hello"),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a tab before the colon",
            request("GET /bad HTTP/1.1", "X-Name\t: value\r\n", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a NUL in a field value",
            request("GET /bad HTTP/1.1", "X-Value: a\0b\r\n", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a CR in a field value",
            request("GET /bad HTTP/1.1", "X-Value: a\rb\r\n", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a space in the target",
            request("GET /a b HTTP/1.1", "", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a NUL in the target",
            request("GET /a\0b HTTP/1.1", "", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a field name that is no token",
            request("GET /bad HTTP/1.1", "X(Name): value\r\n", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "a field line without a colon",
            request("GET /bad HTTP/1.1", "X-Name value\r\n", ""),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "101 fields",
            request("GET /bad HTTP/1.1", &many_fields(100), ""),
            TOO_LARGE,
            Nothing,
        ),
    ])
    .await;
}

/// Chunked request bodies that go wrong: a name and the body.
pub const BAD_CHUNKS: &[(&str, &str)] = &[
    ("a negative chunk size", "-1\r\nx\r\n0\r\n\r\n"),
    (
        "a chunk size with 0x",
        "0x10\r\n0123456789abcdef\r\n0\r\n\r\n",
    ),
    (
        "a chunk size past u64",
        "10000000000000000\r\nx\r\n0\r\n\r\n",
    ),
    ("chunk data without its CRLF", "5\r\nhelloXX0\r\n\r\n"),
    ("a chunk size line with a bare LF", "5\nhello\r\n0\r\n\r\n"),
];

/// A table row for a POST with the chunked `body`, refused with one of
/// `statuses` after its head may have gone on.
pub fn refused_chunks(
    name: &str,
    body: &str,
    statuses: &'static [&'static str],
) -> (String, impl Future<Output = ()> + Send + 'static) {
    let head = "Transfer-Encoding: chunked\r\n";
    let request = request("POST /bad HTTP/1.1", head, body);
    refused(name, request, statuses, Reached::NoWholeRequest)
}

/// Chunked request bodies that go wrong after their head has gone on to the
/// instance: it never gets a whole request, the router never reads on past
/// the bad chunk, and the client's connection closes. The rule is a 400
/// (`wire_pending` pins it); today's router answers 502, as its instance
/// connection broke.
#[tokio::test]
async fn malformed_chunked_bodies_never_make_a_whole_request() {
    const REFUSED: &[&str] = &["HTTP/1.1 400 Bad Request", "HTTP/1.1 502 Bad Gateway"];
    run_cases(
        BAD_CHUNKS
            .iter()
            .map(|(name, body)| refused_chunks(name, body, REFUSED)),
    )
    .await;
}

/// A bad request behind good ones on the same connection: the good ones are
/// answered, the bad one is refused, and nothing behind it is read.
#[tokio::test]
async fn a_bad_request_behind_good_ones_ends_the_connection() {
    let (router, instance) = web(echo_target).await;
    let mut wire = Wire::connect(&router).await;
    let requests = [
        request("GET /1 HTTP/1.1", "", ""),
        request("POST /2 HTTP/1.1", "Content-Length: 3\r\n", "two"),
        request(
            "POST /bad HTTP/1.1",
            "Content-Length: 1\r\nContent-Length: 2\r\n",
            "xy",
        ),
        SMUGGLED.to_vec(),
    ];
    wire.send(&requests.concat()).await;
    for path in ["/1", "/2"] {
        let response = wire.response(false).await;
        assert_eq!((response.status, response.text().as_str()), (200, path));
    }
    assert_eq!(wire.response(false).await.head.line, BAD_REQUEST[0]);
    wire.closed().await;
    finish(router, &instance).await;
    assert_eq!(instance.summaries(), ["GET /1", "POST /2"]);
}
