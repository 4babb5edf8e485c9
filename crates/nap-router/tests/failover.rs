//! Instances that die: the next one answers, as long as that is safe.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::{Method, StatusCode};
use tokio::task::JoinSet;

use crate::support::{Backend, Python, Router, client, dead_addr, fetch, hang_up_server, request};

/// Four clients send 50 requests each; when 60 are done, one of the three
/// instances is killed with SIGKILL while the others are mid-request, and
/// stays listed as a stale entry. Nobody may notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_instance_costs_no_request() {
    let router = Router::start().await;
    let one = Python::start("one").await;
    let two = Python::start("two").await;
    let three = Python::start("three").await;
    router.apps.set("web", &[one.addr, two.addr, three.addr]);
    let victim = Arc::new(tokio::sync::Mutex::new(two));
    let done = Arc::new(AtomicUsize::new(0));
    let client = client();
    let mut clients = JoinSet::new();
    for _ in 0..4 {
        let (client, victim, done, addr) =
            (client.clone(), victim.clone(), done.clone(), router.addr);
        clients.spawn(async move {
            let mut served = Vec::new();
            for _ in 0..50 {
                let answer = client
                    .request(request(addr, "web", "/").body(Full::default()).unwrap())
                    .await;
                match answer {
                    Ok(response) if response.status() == StatusCode::OK => {
                        match response.into_body().collect().await {
                            Ok(body) => served
                                .push(Ok(String::from_utf8(body.to_bytes().to_vec()).unwrap())),
                            Err(error) => served.push(Err(format!("body: {error:?}"))),
                        }
                    }
                    Ok(response) => served.push(Err(format!("status {}", response.status()))),
                    Err(error) => served.push(Err(format!("{error:?}"))),
                }
                if done.fetch_add(1, Ordering::SeqCst) + 1 == 60 {
                    victim.lock().await.kill().await;
                }
            }
            served
        });
    }
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for answers in clients.join_all().await {
        for answer in answers {
            *served
                .entry(answer.unwrap_or_else(|error| format!("failed: {error}")))
                .or_default() += 1;
        }
    }
    assert_eq!(served.values().sum::<usize>(), 200);
    assert!(
        served
            .keys()
            .all(|name| ["one", "two", "three"].contains(&name.as_str())),
        "{served:?}"
    );
    // At most 60 (and whatever was in flight) can have reached `two`.
    assert!(served["two"] < 70, "{served:?}");
    drop((one, three));
    router.stopped().await.unwrap();
}

/// A refused connection leaves the request untouched, so even a body too
/// large to keep goes to the next instance.
#[tokio::test]
async fn refused_instance_is_skipped_even_for_a_large_body() {
    let router = Router::start().await;
    let good = Backend::start("good").await;
    router.apps.set("web", &[dead_addr(), good.addr]);
    let request = router
        .request("web", "/length")
        .method(Method::POST)
        .body(Full::from(vec![1u8; 5 << 20]))
        .unwrap();
    let (status, body) = fetch(&client(), request).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"5242880"[..]));
    router.stopped().await.unwrap();
}

/// An instance that hangs up after reading a request may have acted on it:
/// only idempotent requests with a kept body go on to the next instance.
#[tokio::test]
async fn hang_up_after_the_request_retries_only_idempotent_requests() {
    let router = Router::start().await;
    let (hang_up, _hang_up_task) = hang_up_server().await;
    let good = Backend::start("good").await;
    let client = client();
    for (app, method, body, expected) in [
        ("get", Method::GET, "", StatusCode::OK),
        ("put", Method::PUT, "a small body", StatusCode::OK),
        ("delete", Method::DELETE, "", StatusCode::OK),
        (
            "post",
            Method::POST,
            "a small body",
            StatusCode::BAD_GATEWAY,
        ),
        ("patch", Method::PATCH, "", StatusCode::BAD_GATEWAY),
    ] {
        // A new app's first turn goes to its first instance.
        router.apps.set(app, &[hang_up, good.addr]);
        let request = router
            .request(app, "/length")
            .method(method)
            .body(Full::from(body))
            .unwrap();
        let (status, answer) = fetch(&client, request).await;
        assert_eq!(status, expected, "{app}");
        if status == StatusCode::OK {
            assert_eq!(answer, body.len().to_string(), "{app}");
        } else {
            assert_eq!(
                answer,
                format!("502 Bad Gateway: {app} did not answer\n"),
                "{app}"
            );
        }
    }
    router.stopped().await.unwrap();
}
