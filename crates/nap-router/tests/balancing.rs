//! Round robin over an app's instances.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use hyper::{Request, StatusCode};
use nap_router::Options;

use crate::support::{Backend, Router, client, get, raw};

#[tokio::test]
async fn thirty_requests_over_three_instances_are_ten_each() {
    let router = Router::start().await;
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    router.apps.set(
        "web",
        &backends
            .iter()
            .map(|backend| backend.addr)
            .collect::<Vec<_>>(),
    );
    let client = client();
    let mut served = BTreeMap::new();
    for _ in 0..30 {
        let (status, name) = get(&client, &router, "web", "/").await;
        assert_eq!(status, StatusCode::OK);
        *served.entry(name).or_insert(0) += 1;
    }
    assert_eq!(
        served,
        BTreeMap::from([
            ("a".to_owned(), 10),
            ("b".to_owned(), 10),
            ("c".to_owned(), 10)
        ])
    );
    // One after the other, the requests reuse one connection per instance.
    for backend in &backends {
        assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
    }
    router.stopped().await.unwrap();
}

/// Clients that open a connection per request land on any of the router's
/// worker threads; the turns are still exact over all of them.
#[tokio::test]
async fn requests_on_new_connections_take_turns_too() {
    let router = Router::start_with(Options {
        workers: 4,
        ..Options::default()
    })
    .await;
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let addrs: Vec<_> = backends.iter().map(|backend| backend.addr).collect();
    router.apps.set("web", &addrs);
    let mut served = BTreeMap::new();
    for _ in 0..60 {
        let response = raw(
            &router,
            b"GET / HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        let (_, name) = response.split_once("\r\n\r\n").expect("a body");
        *served.entry(name.to_owned()).or_insert(0) += 1;
    }
    assert_eq!(
        served,
        BTreeMap::from([
            ("a".to_owned(), 20),
            ("b".to_owned(), 20),
            ("c".to_owned(), 20)
        ])
    );
    router.stopped().await.unwrap();
}

#[tokio::test]
async fn apps_take_turns_separately() {
    let router = Router::start().await;
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    router.apps.set("one", &[a.addr, b.addr]);
    router.apps.set("two", &[c.addr]);
    let client = client();
    let mut seen = Vec::new();
    for app in ["one", "two", "one", "two", "one"] {
        seen.push(get(&client, &router, app, "/").await.1);
    }
    assert_eq!(seen, ["a", "c", "b", "c", "a"]);
    router.stopped().await.unwrap();
}

#[tokio::test]
async fn host_case_port_and_trailing_dot_do_not_matter() {
    let router = Router::start().await;
    let backend = Backend::start("web").await;
    router.apps.set("web", &[backend.addr]);
    let client = client();
    for host in [
        "WEB.LocalHost",
        "web.localhost.",
        "web.localhost:1",
        "Web.localhost.:8000",
    ] {
        let request = Request::get(format!("http://{}/", router.addr))
            .header("host", host)
            .body(Default::default())
            .unwrap();
        let (status, body) = crate::support::fetch(&client, request).await;
        assert_eq!(
            (status, &body[..]),
            (StatusCode::OK, &b"web"[..]),
            "Host: {host}"
        );
    }
    router.stopped().await.unwrap();
}
