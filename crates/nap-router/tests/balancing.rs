//! Round robin over an app's instances.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use hyper::{Request, StatusCode};

use crate::support::{Backend, Router, client, get};

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
