//! The etcd client against a real etcd.

use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::{Etcd, eventually};

#[tokio::test]
async fn finds_the_json_gateway_of_the_installed_etcd() {
    let etcd = Etcd::start();
    let client = etcd.client();
    let version = client.version().await.expect("version");
    let prefix = client.api_prefix().await.expect("prefix");
    println!("etcd {version}: v3 JSON gateway at {prefix}/");
    assert!(
        etcd.version.contains(&version),
        "{} vs {version}",
        etcd.version
    );
    let minor: u32 = version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .expect("3.x");
    let expected = match minor {
        2 => "/v3alpha",
        3 => "/v3beta",
        _ => "/v3",
    };
    assert_eq!(prefix, expected);
}

#[tokio::test]
async fn put_with_a_lease_and_read_by_prefix() {
    let etcd = Etcd::start();
    let client = etcd.client();
    let lease = client.grant(Duration::from_secs(30)).await.expect("lease");
    assert_eq!(lease.ttl, Duration::from_secs(30));
    client
        .put(
            "/nap/apps/web/instances/v1-1-20001",
            "10.0.0.1:20001",
            Some(lease.id),
        )
        .await
        .expect("put");
    client
        .put(
            "/nap/apps/web/instances/v1-2-20002",
            "10.0.0.2:20002",
            Some(lease.id),
        )
        .await
        .expect("put");
    client
        .put("/nap/apps/web/instances/junk", "not an address", None)
        .await
        .expect("put");
    client
        .put(
            "/nap/apps/webx/instances/v1-1-20003",
            "10.0.0.3:20003",
            None,
        )
        .await
        .expect("put");
    client
        .put("/nap/apps/wea", "outside", None)
        .await
        .expect("put");

    let found = client.range_prefix("/nap/apps/web/").await.expect("range");
    let keys: Vec<&str> = found.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/nap/apps/web/instances/junk",
            "/nap/apps/web/instances/v1-1-20001",
            "/nap/apps/web/instances/v1-2-20002"
        ]
    );
    assert_eq!(found[1].lease, Some(lease.id));
    assert_eq!(found[0].lease, None);
    let got = client
        .get("/nap/apps/web/instances/v1-2-20002")
        .await
        .expect("get")
        .expect("there");
    assert_eq!(got.value, "10.0.0.2:20002");
    assert_eq!(client.get("/nap/apps/none").await.expect("get"), None);
    assert_eq!(
        client.range_prefix("/nothing/").await.expect("empty range"),
        Vec::new()
    );

    let instances = client.instances("web").await.expect("instances");
    let expected: Vec<SocketAddr> = vec![
        "10.0.0.1:20001".parse().expect("addr"),
        "10.0.0.2:20002".parse().expect("addr"),
    ];
    assert_eq!(instances, expected, "junk is skipped; webx is another app");
    assert!(client.instances("nothing").await.expect("none").is_empty());

    // Revoking the lease removes its keys at once.
    client.revoke(lease.id).await.expect("revoke");
    assert_eq!(
        client.instances("web").await.expect("instances"),
        Vec::new()
    );
    assert_eq!(
        client.keep_alive(lease.id).await.expect("keep-alive"),
        None,
        "the lease is gone"
    );
    assert_eq!(
        client
            .delete("/nap/apps/web/instances/junk")
            .await
            .expect("delete"),
        1
    );
    assert_eq!(
        client
            .delete("/nap/apps/web/instances/junk")
            .await
            .expect("delete"),
        0
    );
    assert_eq!(client.delete_prefix("/nap/apps/").await.expect("delete"), 2);
}

#[tokio::test]
async fn keys_vanish_when_their_lease_expires_and_stay_while_kept_alive() {
    let etcd = Etcd::start();
    let client = etcd.client();
    let kept = client.grant(Duration::from_secs(2)).await.expect("lease");
    let left = client.grant(Duration::from_secs(2)).await.expect("lease");
    client
        .put("/nap/apps/a/instances/kept", "127.0.0.1:1", Some(kept.id))
        .await
        .expect("put");
    client
        .put("/nap/apps/a/instances/left", "127.0.0.1:2", Some(left.id))
        .await
        .expect("put");
    let gone = eventually(Duration::from_secs(15), || async {
        let ttl = client.keep_alive(kept.id).await.expect("keep-alive");
        assert!(ttl.is_some(), "the kept lease is alive");
        let left = client.get("/nap/apps/a/instances/left").await.expect("get");
        tokio::time::sleep(Duration::from_millis(400)).await;
        left.is_none().then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the key of the lease that was not kept alive expired"
    );
    assert!(
        client
            .get("/nap/apps/a/instances/kept")
            .await
            .expect("get")
            .is_some(),
        "kept alive"
    );
    assert_eq!(client.keep_alive(left.id).await.expect("keep-alive"), None);
    assert_eq!(
        client.instances("a").await.expect("instances"),
        vec!["127.0.0.1:1".parse::<SocketAddr>().expect("addr")]
    );
}

#[tokio::test]
async fn errors_say_what_etcd_said() {
    let etcd = Etcd::start();
    let client = etcd.client();
    let error = client
        .put("/k", "v", Some(12345))
        .await
        .expect_err("no such lease");
    assert!(
        error.to_string().contains("requested lease not found"),
        "{error}"
    );
    let nowhere =
        nap_fleet::EtcdClient::new(&[format!("http://127.0.0.1:{}", crate::harness::free_port())])
            .expect("endpoint");
    let error = nowhere.version().await.expect_err("nothing listens");
    assert!(error.to_string().contains("cannot talk to etcd"), "{error}");
    assert!(nap_fleet::EtcdClient::new(&["unix:///x"]).is_err());
    assert!(nap_fleet::EtcdClient::new::<&str>(&[]).is_err());
}
