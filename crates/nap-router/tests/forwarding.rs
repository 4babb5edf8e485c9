//! What passes through: bodies (streamed both ways) and headers.

use http_body_util::{BodyExt, Full};
use hyper::{Method, StatusCode};

use crate::support::{Backend, Router, client, fetch, pattern_byte};

#[tokio::test]
async fn a_large_request_body_streams_to_the_instance() {
    let router = Router::start().await;
    let backend = Backend::start("web").await;
    router.apps.set("web", &[backend.addr]);
    let body = vec![b'x'; 5 * 1024 * 1024];
    let request = router
        .request("web", "/length")
        .method(Method::POST)
        .body(Full::from(body))
        .unwrap();
    let (status, length) = fetch(&client(), request).await;
    assert_eq!((status, &length[..]), (StatusCode::OK, &b"5242880"[..]));
    router.stopped().await.unwrap();
}

#[tokio::test]
async fn a_large_response_streams_to_the_client() {
    let router = Router::start().await;
    let backend = Backend::start("web").await;
    router.apps.set("web", &[backend.addr]);
    let size = 20 * 1024 * 1024;
    let request = router
        .request("web", &format!("/stream?bytes={size}"))
        .body(Full::default())
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        for byte in data.iter() {
            assert_eq!(*byte, pattern_byte(offset), "byte {offset}");
            offset += 1;
        }
    }
    assert_eq!(offset, size);
    router.stopped().await.unwrap();
}

#[tokio::test]
async fn the_instance_learns_the_client_and_loses_hop_by_hop_headers() {
    let router = Router::start().await;
    let backend = Backend::start("web").await;
    router.apps.set("web", &[backend.addr]);
    let request = router
        .request("web", "/headers")
        .header("x-forwarded-for", "10.1.2.3")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "spoofed.example.com")
        .header("connection", "x-secret")
        .header("x-secret", "hop")
        .header("proxy-authorization", "Basic eDp5")
        .header("te", "trailers")
        .header("x-app-header", "kept")
        .body(Full::default())
        .unwrap();
    let (status, headers) = fetch(&client(), request).await;
    assert_eq!(status, StatusCode::OK);
    let headers = String::from_utf8(headers.to_vec()).unwrap();
    let host = format!("web.localhost:{}", router.addr.port());
    for expected in [
        "x-forwarded-for: 10.1.2.3, 127.0.0.1".to_owned(),
        "x-forwarded-proto: http".to_owned(),
        format!("x-forwarded-host: {host}"),
        format!("host: {host}"),
        "x-app-header: kept".to_owned(),
    ] {
        assert!(
            headers.lines().any(|line| line == expected),
            "{expected:?} not in\n{headers}"
        );
    }
    for gone in [
        "x-secret",
        "proxy-authorization",
        "te",
        "connection: x-secret",
    ] {
        assert!(
            !headers
                .lines()
                .any(|line| line.starts_with(&format!("{gone}:"))),
            "{gone} in\n{headers}"
        );
    }
    router.stopped().await.unwrap();
}
