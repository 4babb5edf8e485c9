//! WebSockets (any `Upgrade`) pass through as bytes.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{Router, read_head};

/// A WebSocket server by hand: answers the handshake with 101 (echoing the
/// key, so the client can see the handshake arrived whole), then echoes bytes.
async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the echo server");
    let addr = listener.local_addr().expect("echo server address");
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("echo accept");
        let head = read_head(&mut stream)
            .await
            .expect("handshake head")
            .to_ascii_lowercase();
        let key = head
            .lines()
            .find_map(|line| line.strip_prefix("sec-websocket-key: "))
            .unwrap_or("none")
            .to_owned();
        if !head.contains("\r\nupgrade: websocket\r\n")
            || !head.contains("\r\nconnection: upgrade\r\n")
        {
            stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await
                .expect("answer 400");
            return;
        }
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {key}\r\n\r\n"
        );
        stream
            .write_all(answer.as_bytes())
            .await
            .expect("answer 101");
        let (mut reader, mut writer) = stream.split();
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
    });
    (addr, task)
}

#[tokio::test]
async fn websocket_handshake_and_bytes_pass_through() {
    let router = Router::start().await;
    let (backend, backend_task) = echo_server().await;
    router.apps.set("chat", &[backend]);

    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(
            b"GET /socket HTTP/1.1\r\nHost: chat.localhost\r\nUpgrade: websocket\r\n\
              Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: c2VjcmV0\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut stream).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(
        head.contains("\r\nsec-websocket-accept: c2vjcmv0\r\n"),
        "{head}"
    );

    for message in [
        b"hello".to_vec(),
        b"through the router".to_vec(),
        vec![42u8; 256 * 1024],
    ] {
        stream.write_all(&message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        stream.read_exact(&mut echoed).await.unwrap();
        assert!(
            echoed == message,
            "{} bytes did not come back",
            message.len()
        );
    }
    // Closing the client's side closes the instance's.
    drop(stream);
    backend_task.await.unwrap();
    router.stopped().await.unwrap();
}
