//! Upgrades (WebSockets and the like): the bytes that follow the handshake
//! on either side belong to the tunnel, and only an upgrade the client asked
//! for is one.

use crate::support::raw::{Answer, Reply, Wire, echo_target, run_cases};

use super::{finish, request, web};

const SWITCHING: &str =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

/// The client's first tunnel bytes come right behind its handshake and the
/// instance's right behind its 101, each in the same write: a router that has
/// read them along with a head must pass them on, first.
#[tokio::test]
async fn bytes_read_with_the_handshake_go_through_the_tunnel() {
    let (router, instance) = web(|seen| match seen.target.as_str() {
        "/socket" => Answer::bytes(format!("{SWITCHING}server-first"))
            .then_echo("client-first".len())
            .then_close(),
        _ => echo_target(seen),
    })
    .await;
    let mut wire = Wire::connect(&router).await;
    let handshake = request(
        "GET /socket HTTP/1.1",
        "Upgrade: websocket\r\nConnection: Upgrade\r\n",
        "client-first",
    );
    wire.send(&handshake).await;
    match wire.reply(false).await {
        Reply::Whole(response) => {
            assert_eq!(response.head.line, "HTTP/1.1 101 Switching Protocols");
            assert_eq!(response.head.get("upgrade"), Some("websocket"));
        }
        other => panic!("no 101 but {other:?}"),
    }
    assert_eq!(
        String::from_utf8_lossy(&wire.rest().await),
        "server-firstclient-first"
    );
    // The tunnel lasts until both sides have closed.
    drop(wire);
    finish(router, &instance).await;
    let seen = instance.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].head.get("upgrade"), Some("websocket"));
    assert!(
        seen[0]
            .head
            .get("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("upgrade")),
        "{seen:?}"
    );
}

/// A 101 to a request that asked for no upgrade is no answer: 502, and the
/// instance connection, which has left HTTP, is not used again.
async fn check_unasked_switch(fields: &'static str) {
    let (router, instance) = web(|_| Answer::bytes(format!("{SWITCHING}tunnel bytes"))).await;
    for path in ["/1", "/2"] {
        let mut wire = Wire::connect(&router).await;
        wire.send(&request(&format!("GET {path} HTTP/1.1"), fields, ""))
            .await;
        let response = wire.response(false).await;
        assert_eq!(
            (response.head.line.as_str(), response.text().as_str()),
            (
                "HTTP/1.1 502 Bad Gateway",
                "502 Bad Gateway: web switched protocols unasked\n"
            )
        );
    }
    assert_eq!(instance.summaries(), ["GET /1", "GET /2"]);
    assert_eq!(
        instance.connections(),
        2,
        "a switched connection was used again"
    );
    finish(router, &instance).await;
}

#[tokio::test]
async fn a_switch_nobody_asked_for_is_502() {
    let case = |name: &str, fields: &'static str| (name.to_owned(), check_unasked_switch(fields));
    run_cases([
        case("no Upgrade", ""),
        case(
            "Upgrade without Connection: upgrade",
            "Upgrade: websocket\r\n",
        ),
    ])
    .await;
}
