//! Draining: an instance taken out of rotation gets no new request, not even
//! from routes that still list it or on a connection kept open to it, and
//! the requests already on their way to it finish.

use nap_router::{Options, Traffic};
use tokio::task::JoinSet;

use crate::support::{Backend, Router, client, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_instance_takes_no_new_request_and_its_request_in_flight_finishes() {
    let traffic = Traffic::new();
    let router = Router::start_with(Options {
        traffic: traffic.clone(),
        ..Options::default()
    })
    .await;
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
    router.apps.set("web", &[old.addr]);
    let client = client();
    // A connection to the old instance is kept in the router's pool.
    assert_eq!(get(&client, &router, "web", "/").await.1, "old");

    // A request that the old instance holds until told.
    let held = tokio::spawn({
        let (client, request) = (client.clone(), router.request("web", "/hold"));
        async move {
            let response = client
                .request(request.body(Default::default()).expect("request"))
                .await
                .expect("the held request is answered");
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("body")
                .to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    });
    old.arrived().await;
    assert_eq!(traffic.in_flight(old.addr), 1);

    // Out of rotation while the routes still list it (the daemon publishes
    // routes without it first; these requests show that routes read before
    // that cannot reach it either).
    router.apps.set("web", &[old.addr, new.addr]);
    traffic.retire(&[old.addr]);
    let idle = tokio::spawn({
        let traffic = traffic.clone();
        let addr = old.addr;
        async move { traffic.until_idle(&[addr]).await }
    });
    let mut requests = JoinSet::new();
    for _ in 0..20 {
        let (client, request) = (client.clone(), router.request("web", "/"));
        requests.spawn(async move {
            let response = client
                .request(request.body(Default::default()).expect("request"))
                .await
                .expect("answered");
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("body")
                .to_bytes();
            String::from_utf8_lossy(&body).into_owned()
        });
    }
    for answer in requests.join_all().await {
        assert_eq!(answer, "new", "a retired instance answered");
    }
    assert!(
        !idle.is_finished(),
        "the drain ended with a request in flight"
    );
    assert_eq!(traffic.in_flight(old.addr), 1);

    // The request in flight finishes, and with it the drain.
    old.release();
    let (status, body) = held.await.expect("held request");
    assert_eq!((status.as_u16(), body.as_str()), (200, "old"));
    idle.await
        .expect("the drain ends once nothing is in flight");
    assert_eq!(traffic.in_flight(old.addr), 0);

    // Once forgotten, a new instance on that address is in rotation.
    traffic.forget(&[old.addr]);
    router.apps.set("web", &[old.addr]);
    assert_eq!(get(&client, &router, "web", "/").await.1, "old");
}
