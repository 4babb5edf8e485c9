//! The cases of `wire` whose rule the router's former HTTP/1.1 path (hyper's)
//! did not follow, and the hand-framed one does; each case says what hyper did
//! instead.

use crate::support::raw::{Wire, echo_target, run_cases};
use crate::wire::hostile::{Hostile, hostile};
use crate::wire::refused::{BAD_CHUNKS, BAD_REQUEST, Reached, TOO_LARGE, refused, refused_chunks};
use crate::wire::{finish, request, web};

/// Heads hyper reads in a way of its own rather than refusing them.
#[tokio::test]
async fn ambiguous_heads_are_refused() {
    use Reached::Nothing;
    let post = "POST /bad HTTP/1.1";
    run_cases([
        // hyper lets Transfer-Encoding win and closes after the response,
        // but the instance gets the request.
        refused(
            "Content-Length and Transfer-Encoding",
            request(
                post,
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "Transfer-Encoding and Content-Length",
            request(
                post,
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                "0\r\n\r\n",
            ),
            BAD_REQUEST,
            Nothing,
        ),
        // hyper takes two equal lengths for one.
        refused(
            "two equal Content-Lengths",
            request(post, "Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            BAD_REQUEST,
            Nothing,
        ),
        // hyper only looks at the last coding.
        refused(
            "Transfer-Encoding chunked twice",
            request(
                post,
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "Transfer-Encoding chunked, chunked",
            request(post, "Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "Transfer-Encoding gzip, chunked",
            request(post, "Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            &["HTTP/1.1 501 Not Implemented"],
            Nothing,
        ),
        // httparse takes a bare LF for a line end.
        refused(
            "bare LF line ends",
            b"GET /bad HTTP/1.1\nHost: web.localhost\n\n".to_vec(),
            BAD_REQUEST,
            Nothing,
        ),
        refused(
            "one bare LF",
            b"GET /bad HTTP/1.1\r\nHost: web.localhost\nX-A: b\r\n\r\n".to_vec(),
            BAD_REQUEST,
            Nothing,
        ),
        // hyper's limit is about 400 KiB.
        refused(
            "a head over 64 KiB",
            request(
                "GET /bad HTTP/1.1",
                &format!("X-Big: {}\r\n", "b".repeat(64 * 1024)),
                "",
            ),
            TOO_LARGE,
            Nothing,
        ),
    ])
    .await;
}

/// Chunked request bodies that go wrong after the head has gone on: 400, where
/// today's router says 502 (its instance connection broke) or, for leading
/// zeros, takes the size.
#[tokio::test]
async fn malformed_chunked_bodies_are_refused() {
    let cases = BAD_CHUNKS
        .iter()
        .map(|(name, body)| refused_chunks(name, body, BAD_REQUEST));
    // hyper only refuses a size that overflows.
    let leading_zeros = "00000000000000001\r\nx\r\n0\r\n\r\n";
    let long = refused_chunks(
        "a chunk size over 16 hex digits",
        leading_zeros,
        BAD_REQUEST,
    );
    run_cases(cases.chain([long])).await;
}

/// Responses hyper's client reads in a way of its own.
#[tokio::test]
async fn ambiguous_responses_are_502() {
    use Hostile::BadGateway;
    run_cases([
        // hyper lets Transfer-Encoding win, passes the Content-Length on,
        // finds the body shorter than that and closes the client's
        // connection without a word; the instance connection, in step by
        // its chunks, goes back to the pool.
        hostile("Content-Length and Transfer-Encoding", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false, BadGateway),
    ])
    .await;
}

/// A client that closes its sending side once the request is out (as
/// `printf ... | nc` does) still gets its answer, and then the close, as
/// nginx does. hyper takes the end of the client's sending side for the end
/// of the connection and closes it without an answer.
#[tokio::test]
async fn a_client_that_half_closes_gets_its_answer() {
    let (router, instance) = web(echo_target).await;
    let mut wire = Wire::connect(&router).await;
    wire.send(&request("GET /half HTTP/1.1", "", "")).await;
    wire.half_close().await;
    let response = wire.response(false).await;
    assert_eq!((response.status, response.text().as_str()), (200, "/half"));
    wire.closed().await;
    finish(router, &instance).await;
    assert_eq!(instance.summaries(), ["GET /half"]);
}
