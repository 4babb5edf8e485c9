//! What clients see when there is nothing to route to.

use hyper::{Request, StatusCode};

use crate::support::{Router, client, dead_addr, fetch, get, raw};

#[tokio::test]
async fn unknown_app_is_404() {
    let router = Router::start().await;
    let (status, body) = get(&client(), &router, "ghost", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "404 Not Found: no app named ghost\n");
    router.stopped().await.unwrap();
}

#[tokio::test]
async fn app_without_a_live_instance_is_502() {
    let router = Router::start().await;
    router.apps.set("idle", &[]);
    router.apps.set("dead", &[dead_addr(), dead_addr()]);
    let client = client();
    let (status, body) = get(&client, &router, "idle", "/").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::BAD_GATEWAY,
            "502 Bad Gateway: idle has no running instance\n"
        )
    );
    let (status, body) = get(&client, &router, "dead", "/").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::BAD_GATEWAY,
            "502 Bad Gateway: dead did not answer\n"
        )
    );
    router.stopped().await.unwrap();
}

#[tokio::test]
async fn host_that_names_no_app_is_404() {
    let router = Router::start().await;
    router.apps.set("web", &[dead_addr()]);
    let client = client();
    let port = router.addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("a.web.localhost:{port}"),
        "web.example.com".to_owned(),
        "web.localhost:x".to_owned(),
        "[::1]".to_owned(),
    ] {
        let request = Request::get(format!("http://{}/", router.addr))
            .header("host", &host)
            .body(Default::default())
            .unwrap();
        let (status, body) = fetch(&client, request).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "Host: {host}");
        assert_eq!(
            &body[..],
            b"404 Not Found: no app here; apps are at http://APP.localhost/\n"
        );
    }
    // HTTP/1.0 allows no Host at all.
    let response = raw(&router, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.0 404 "), "{response}");
    // Two Hosts are no Host.
    let response = raw(&router, b"GET / HTTP/1.1\r\nHost: web.localhost\r\nHost: web.localhost\r\nConnection: close\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 404 "), "{response}");
    router.stopped().await.unwrap();
}

#[tokio::test]
async fn garbage_gets_an_error_and_the_router_stays_up() {
    let router = Router::start().await;
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\xff\xfe\xfd\r\n\r\n",
        &[b'a'; 1 << 20][..],
    ] {
        let response = raw(&router, garbage).await;
        assert!(response.is_empty() || response.starts_with("HTTP/1.1 4"), "{response}");
    }
    let (status, _) = get(&client(), &router, "web", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    router.stopped().await.unwrap();
}
