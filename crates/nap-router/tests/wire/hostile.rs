//! Instances that answer with what no client should get: the client gets a
//! 502 or a closed connection, never a response that is not the instance's
//! real one, and the instance connection is not used again.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::support::raw::{Answer, Reply, Wire, ok, run_cases};

use super::{BAD_GATEWAY, finish, request, web};

/// What a client gets when an instance's response goes wrong.
#[derive(Clone, Copy, Debug)]
pub enum Hostile {
    /// The router's 502 page, as nothing of the response had been passed on.
    BadGateway,
    /// No whole response: the 502 page, or the router closes the connection
    /// before a response is whole (with nothing of it, or part of it). The
    /// body goes wrong right behind the head, and a router may or may not
    /// have passed the head on already.
    NeverWhole,
}

/// An instance answers each request with `reply` (and closes if `close`):
/// the client of a first request gets `expected`, and the instance
/// connection is not used again, so a second client's request reaches the
/// instance on a connection of its own.
pub async fn check_hostile(reply: &'static [u8], close: bool, expected: Hostile) {
    let (router, instance) = web(move |_| {
        let answer = Answer::bytes(reply);
        if close { answer.then_close() } else { answer }
    })
    .await;
    let mut wire = Wire::connect(&router).await;
    wire.send(&request("GET /1 HTTP/1.1", "", "")).await;
    match (wire.reply(false).await, expected) {
        (Reply::Whole(response), Hostile::BadGateway | Hostile::NeverWhole) => assert_eq!(
            (response.head.line.as_str(), response.text().as_str()),
            ("HTTP/1.1 502 Bad Gateway", BAD_GATEWAY)
        ),
        (Reply::Closed | Reply::Cut(_), Hostile::NeverWhole) => {}
        (other, expected) => panic!("expected {expected:?}, got {other:?}"),
    }
    let mut second = Wire::connect(&router).await;
    second.send(&request("GET /2 HTTP/1.1", "", "")).await;
    let _ = second.reply(false).await;
    assert_eq!(instance.summaries(), ["GET /1", "GET /2"]);
    assert_eq!(
        instance.connections(),
        2,
        "the instance connection was used again"
    );
    drop((wire, second));
    finish(router, &instance).await;
}

/// A table row for [`check_hostile`].
pub fn hostile(
    name: &str,
    reply: &'static [u8],
    close: bool,
    expected: Hostile,
) -> (String, impl Future<Output = ()> + Send + 'static) {
    (name.to_owned(), check_hostile(reply, close, expected))
}

/// Responses that are ambiguous or malformed never reach a client as if they
/// were fine; what reaches the client is clean (the reader asserts it: CRLF
/// lines, token names, no CR, LF or NUL in a value), so an instance cannot
/// split a response or inject fields.
#[tokio::test]
async fn hostile_responses_do_not_reach_the_client() {
    use Hostile::{BadGateway, NeverWhole};
    run_cases([
        hostile("two different Content-Lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", false, BadGateway),
        hostile("a Content-Length that is no number", b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok", false, BadGateway),
        hostile("a negative Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", false, BadGateway),
        hostile("an obs-fold", b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok", false, BadGateway),
        hostile("a CR in a field value", b"HTTP/1.1 200 OK\r\nX-Value: a\rSet-Cookie: session=stolen\r\nContent-Length: 2\r\n\r\nok", false, BadGateway),
        hostile("a NUL in a field value", b"HTTP/1.1 200 OK\r\nX-Value: a\0b\r\nContent-Length: 2\r\n\r\nok", false, BadGateway),
        hostile("a space before the colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", false, BadGateway),
        hostile("a status that is no number", b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok", false, BadGateway),
        hostile("no HTTP at all", b"SSH-2.0-OpenSSH_9.6\r\n\r\n", true, BadGateway),
        hostile("a malformed chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n", false, NeverWhole),
        hostile("chunk data without its CRLF", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n", false, NeverWhole),
        hostile("a close in the middle of a Content-Length body", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", true, NeverWhole),
        hostile("a close in the middle of a chunked body", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", true, NeverWhole),
        hostile("a close before the last chunk's CRLF", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", true, NeverWhole),
    ])
    .await;
}

/// A response head of a megabyte is no response.
#[tokio::test]
async fn a_huge_response_head_is_502() {
    let huge: &'static [u8] = format!(
        "HTTP/1.1 200 OK\r\nX-Huge: {}\r\nContent-Length: 2\r\n\r\nok",
        "h".repeat(1 << 20)
    )
    .into_bytes()
    .leak();
    check_hostile(huge, false, Hostile::BadGateway).await;
}

/// An instance sends `first` (a head and some of its body), and once the
/// client has it, `then` (and closes if `close`): the body goes wrong after
/// the head reached the client, so the router closes the client's connection
/// with the body unfinished, and the client cannot take what follows for a
/// response.
pub async fn check_cut(first: &'static str, then: &'static str, close: bool) {
    let go = Arc::new(Notify::new());
    let answer_go = go.clone();
    let (router, instance) = web(move |_| {
        let answer = Answer::bytes(first).then_wait(&answer_go).then_write(then);
        if close { answer.then_close() } else { answer }
    })
    .await;
    let mut wire = Wire::connect(&router).await;
    wire.send(&request("GET /1 HTTP/1.1", "", "")).await;
    wire.wait_for(b"hello").await;
    go.notify_one();
    match wire.reply(false).await {
        Reply::Cut(Some(head)) => assert_eq!(head.line, "HTTP/1.1 200 OK"),
        other => panic!("expected a cut body, got {other:?}"),
    }
    finish(router, &instance).await;
    assert_eq!(instance.summaries(), ["GET /1"]);
}

/// Bodies that go wrong after the client has the head and some of the body.
#[tokio::test]
async fn a_response_body_gone_wrong_midway_closes_the_client_connection() {
    const CHUNKED: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    const SMUGGLED_RESPONSE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled";
    let case = |name: &str, first: &'static str, then: &'static str, close: bool| {
        (name.to_owned(), check_cut(first, then, close))
    };
    run_cases([
        case(
            "a malformed chunk size",
            CHUNKED,
            "zz\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
            false,
        ),
        case(
            "a negative chunk size",
            CHUNKED,
            "-1\r\nx\r\n0\r\n\r\n",
            false,
        ),
        case(
            "a chunk size over 16 hex digits",
            CHUNKED,
            "10000000000000000\r\nx\r\n0\r\n\r\n",
            false,
        ),
        case(
            "chunk data without its CRLF",
            CHUNKED,
            "2\r\nokXX0\r\n\r\n",
            false,
        ),
        case("a close before the last chunk", CHUNKED, "", true),
        case(
            "a close before the last chunk's CRLF",
            CHUNKED,
            "0\r\n",
            true,
        ),
        case(
            "a close in the middle of a Content-Length body",
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello",
            "",
            true,
        ),
        case(
            "more body than the Content-Length, then a close",
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello",
            SMUGGLED_RESPONSE,
            true,
        ),
    ])
    .await;
}

/// An instance that sends more than its `Content-Length` (here a whole second
/// response, in the same write): the extra bytes are no answer to the
/// client's next request on the same connection, which gets its own.
#[tokio::test]
async fn body_bytes_past_the_content_length_are_no_second_response() {
    let (router, instance) =
        web(|seen| Answer::bytes([ok(&seen.target), ok("smuggled")].concat())).await;
    let mut wire = Wire::connect(&router).await;
    for path in ["/first", "/second", "/third"] {
        wire.send(&request(&format!("GET {path} HTTP/1.1"), "", ""))
            .await;
        let response = wire.response(false).await;
        assert_eq!((response.status, response.text().as_str()), (200, path));
    }
    finish(router, &instance).await;
    assert_eq!(
        instance.summaries(),
        ["GET /first", "GET /second", "GET /third"]
    );
}

/// The same, with the extra response arriving on the instance connection
/// after the exchange is over, while the router keeps it idle for the next
/// request: a connection with unasked-for bytes on it is not used again.
#[tokio::test]
async fn bytes_on_an_idle_instance_connection_are_no_response() {
    let (go, wrote) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (answer_go, answer_wrote) = (go.clone(), wrote.clone());
    let (router, instance) = web(move |seen| {
        Answer::bytes(ok(&seen.target))
            .then_wait(&answer_go)
            .then_write(ok("smuggled"))
            .then_signal(&answer_wrote)
    })
    .await;
    let mut wire = Wire::connect(&router).await;
    for path in ["/first", "/second"] {
        wire.send(&request(&format!("GET {path} HTTP/1.1"), "", ""))
            .await;
        let response = wire.response(false).await;
        assert_eq!((response.status, response.text().as_str()), (200, path));
        // The response is through; now the instance speaks unasked.
        go.notify_one();
        wrote.notified().await;
    }
    finish(router, &instance).await;
    assert_eq!(instance.summaries(), ["GET /first", "GET /second"]);
    assert_eq!(
        instance.connections(),
        2,
        "the connection with stray bytes was used again"
    );
}

/// An instance answers each request with `reply`, a good response after
/// which it keeps the connection open although it may not be used again:
/// the client of each of two requests gets `ok`, and the second reaches the
/// instance on a connection of its own.
pub async fn check_not_used_again(reply: &'static str) {
    let (router, instance) = web(move |_| Answer::bytes(reply)).await;
    let mut wire = Wire::connect(&router).await;
    for path in ["/1", "/2"] {
        wire.send(&request(&format!("GET {path} HTTP/1.1"), "", ""))
            .await;
        let response = wire.response(false).await;
        assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    }
    assert_eq!(instance.summaries(), ["GET /1", "GET /2"]);
    assert_eq!(
        instance.connections(),
        2,
        "the instance connection was used again"
    );
    drop(wire);
    finish(router, &instance).await;
}

/// What an instance says about its connection holds for that connection, not
/// the client's: after `Connection: close` or an HTTP/1.0 response the
/// router does not send it another request (which a hostile instance could
/// answer as it likes), and the client's connection goes on.
#[tokio::test]
async fn a_connection_the_instance_said_it_closes_is_not_used_again() {
    let case = |name: &str, reply: &'static str| (name.to_owned(), check_not_used_again(reply));
    run_cases([
        case(
            "Connection: close",
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        ),
        case(
            "Connection: close among other tokens",
            "HTTP/1.1 200 OK\r\nConnection: X-Other, Close\r\nContent-Length: 2\r\n\r\nok",
        ),
        case(
            "an HTTP/1.0 response",
            "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
    ])
    .await;
}

/// Status lines that are odd but valid pass: `status` reaches the client.
async fn check_status(reply: &'static str, status: u16) {
    let (router, instance) = web(move |_| Answer::bytes(reply)).await;
    let mut wire = Wire::connect(&router).await;
    wire.send(&request("GET / HTTP/1.1", "", "")).await;
    let response = wire.response(false).await;
    assert_eq!((response.status, response.text().as_str()), (status, "ok"));
    drop(wire);
    finish(router, &instance).await;
}

#[tokio::test]
async fn odd_but_valid_status_lines_pass() {
    let case =
        |name: &str, reply: &'static str, status| (name.to_owned(), check_status(reply, status));
    run_cases([
        case(
            "no reason phrase",
            "HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok",
            200,
        ),
        case(
            "an unregistered status",
            "HTTP/1.1 299 Custom\r\nContent-Length: 2\r\n\r\nok",
            299,
        ),
        case(
            "a reason with spaces",
            "HTTP/1.1 404 Not Here At All\r\nContent-Length: 2\r\n\r\nok",
            404,
        ),
    ])
    .await;
}
