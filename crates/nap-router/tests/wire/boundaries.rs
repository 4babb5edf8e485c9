//! Many and large messages on one connection: whatever buffers the router
//! reads into, messages that straddle their ends come out intact and in
//! order.

use crate::support::raw::{Answer, Wire, echo_target};

use super::{finish, request, web};

/// Chunk sizes around the usual buffer sizes (8 KiB, 64 KiB) and beyond.
const ODD_SIZES: &[usize] = &[1, 2, 7, 8191, 8192, 8193, 65535, 65536, 65537, 200_000, 3];

/// `len` bytes of text that do not repeat with any buffer size.
fn text(len: usize, seed: usize) -> String {
    (0..len)
        .map(|index| char::from(b'a' + ((index * 7 + seed) % 26) as u8))
        .collect()
}

/// The chunks of `sizes` (those of size 0 left out) as a chunked body (an
/// extension on every other chunk size line, a trailer at the end), and the
/// body they carry.
fn chunked(sizes: &[usize]) -> (String, String) {
    let mut framed = String::new();
    let mut plain = String::new();
    for (index, &size) in sizes.iter().enumerate() {
        // A chunk of none would be the last one.
        if size == 0 {
            continue;
        }
        let data = text(size, index);
        let extension = if index % 2 == 1 { ";n=v" } else { "" };
        framed.push_str(&format!("{size:x}{extension}\r\n{data}\r\n"));
        plain.push_str(&data);
    }
    framed.push_str("0\r\nX-Trailer: t\r\n\r\n");
    (framed, plain)
}

/// Hundreds of requests in one write, with bodies of all sizes and both
/// framings: each is answered, in order, and reaches the instance whole.
#[tokio::test]
async fn hundreds_of_pipelined_requests_are_answered_in_order() {
    let (router, instance) = web(echo_target).await;
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for n in 0..300 {
        let path = format!("/{n}");
        let body = text(n * 37 % 5000, n);
        let bytes = match n % 3 {
            0 => request(&format!("GET {path} HTTP/1.1"), "", ""),
            1 => request(
                &format!("POST {path} HTTP/1.1"),
                &format!("Content-Length: {}\r\n", body.len()),
                &body,
            ),
            _ => {
                let (framed, _) = chunked(&[body.len() / 2 + 1, body.len() / 2]);
                request(
                    &format!("POST {path} HTTP/1.1"),
                    "Transfer-Encoding: chunked\r\n",
                    &framed,
                )
            }
        };
        requests.extend(bytes);
        let body = match n % 3 {
            0 => String::new(),
            1 => body,
            _ => text(body.len() / 2 + 1, 0) + &text(body.len() / 2, 1),
        };
        let method = if n % 3 == 0 { "GET" } else { "POST" };
        expected.push((format!("{method} {path}"), body));
    }
    let mut wire = Wire::connect(&router).await;
    wire.send(&requests).await;
    for n in 0..300 {
        let response = wire.response(false).await;
        assert_eq!((response.status, response.text()), (200, format!("/{n}")));
    }
    drop(wire);
    finish(router, &instance).await;
    let seen: Vec<(String, String)> = instance
        .requests()
        .iter()
        .map(|seen| {
            (
                seen.summary(),
                String::from_utf8_lossy(&seen.body).into_owned(),
            )
        })
        .collect();
    assert_eq!(seen.len(), expected.len());
    for (seen, expected) in seen.iter().zip(&expected) {
        assert!(
            seen == expected,
            "{} arrived with a body of {} bytes",
            seen.0,
            seen.1.len()
        );
    }
}

/// A chunked request body in chunks of odd sizes reaches the instance whole.
#[tokio::test]
async fn a_chunked_request_body_of_odd_chunks_arrives_whole() {
    let (router, instance) = web(echo_target).await;
    let (framed, plain) = chunked(ODD_SIZES);
    let mut wire = Wire::connect(&router).await;
    wire.send(&request(
        "POST /odd HTTP/1.1",
        "Transfer-Encoding: chunked\r\n",
        &framed,
    ))
    .await;
    let response = wire.response(false).await;
    assert_eq!((response.status, response.text().as_str()), (200, "/odd"));
    drop(wire);
    finish(router, &instance).await;
    let seen = instance.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].body == plain.as_bytes(),
        "{} bytes arrived",
        seen[0].body.len()
    );
}

/// A chunked response body in chunks of odd sizes reaches the client whole,
/// and the next response on the connection after it.
#[tokio::test]
async fn a_chunked_response_body_of_odd_chunks_arrives_whole() {
    let (framed, plain) = chunked(ODD_SIZES);
    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let reply = format!("{head}{framed}");
    let (router, instance) = web(move |seen| match seen.target.as_str() {
        "/odd" => Answer::bytes(reply.clone()),
        _ => echo_target(seen),
    })
    .await;
    let mut wire = Wire::connect(&router).await;
    wire.send(
        &[
            request("GET /odd HTTP/1.1", "", ""),
            request("GET /next HTTP/1.1", "", ""),
        ]
        .concat(),
    )
    .await;
    let response = wire.response(false).await;
    assert_eq!(response.status, 200);
    assert!(
        response.text() == plain,
        "{} bytes arrived",
        response.body.len()
    );
    let next = wire.response(false).await;
    assert_eq!((next.status, next.text().as_str()), (200, "/next"));
    drop(wire);
    finish(router, &instance).await;
}
