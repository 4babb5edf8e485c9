//! `Local`: the supervisor as nap's `Runtime`, as the daemon drives it: the addresses it
//! pushes to the router, and the logs it reads back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nap_runtime::{HealthPolicy, LogRequest, Runtime, UpAddresses};
use nap_supervisor::Local;
use tokio::sync::watch;

use crate::util::{Fixture, PATIENCE, SERVER_PY};

/// Waits (on the channel, not a timer) until the pushed snapshot satisfies `check`.
async fn wait_for_snapshot(
    up: &mut watch::Receiver<Arc<UpAddresses>>,
    what: &str,
    check: impl Fn(&UpAddresses) -> bool,
) {
    let seen = tokio::time::timeout(PATIENCE, up.wait_for(|book| check(book)))
        .await
        .map(|seen| seen.map(|_| ()));
    match seen {
        Ok(seen) => seen.expect("the supervisor is running"),
        Err(_) => panic!("the snapshot never showed {what}: {:?}", up.borrow()),
    }
}

#[tokio::test]
async fn the_addresses_of_instances_that_are_up_are_pushed_on_every_change() {
    let fixture = Fixture::with(|config| config.backoff_min = Duration::from_secs(600)).await;
    fixture.write("server.py", SERVER_PY);
    let local = Local::new(fixture.supervisor.clone());
    let mut up = local.up_addresses();
    assert!(up.borrow().is_empty());

    let web = local
        .start(fixture.spec("web", 1, "python3 server.py"))
        .await
        .expect("start");
    // Starting is not up: the router must not send traffic to it yet.
    assert!(up.borrow().is_empty(), "{:?}", up.borrow());
    let healthy = local
        .wait_healthy(&web.id, HealthPolicy::grace(Duration::from_secs(60)))
        .await
        .expect("healthy");
    assert!(healthy.listening);
    let expected: Vec<SocketAddr> = vec![web.address];
    wait_for_snapshot(&mut up, "web up", |book| book.get("web") == Some(&expected)).await;

    // An instance that exits leaves the rotation as it exits.
    let crashy = local
        .start(fixture.spec("crashy", 1, "sleep 2; exit 1"))
        .await
        .expect("start");
    local
        .wait_healthy(&crashy.id, Duration::from_millis(100).into())
        .await
        .expect("a worker for now");
    wait_for_snapshot(&mut up, "crashy up", |book| book.contains_key("crashy")).await;
    wait_for_snapshot(&mut up, "crashy gone", |book| !book.contains_key("crashy")).await;
    assert_eq!(up.borrow().get("web"), Some(&expected));

    // A stop takes it out before its process is gone.
    local.stop(&web.id).await.expect("stop");
    assert!(up.borrow().is_empty(), "{:?}", up.borrow());
    // Stopping what is gone already is fine.
    local.stop(&web.id).await.expect("already gone");
    local.shutdown().await;
}

#[tokio::test]
async fn an_instance_that_stays_up_counts_as_up_without_a_health_check() {
    let fixture = Fixture::with(|config| config.stable_after = Duration::from_millis(300)).await;
    let local = Local::new(fixture.supervisor.clone());
    let mut up = local.up_addresses();
    let worker = local
        .start(fixture.spec("worker", 1, "sleep 300"))
        .await
        .expect("start");
    // Nobody asks for its health: the stable timer alone makes it up.
    wait_for_snapshot(&mut up, "the worker up", |book| {
        book.get("worker") == Some(&vec![worker.address])
    })
    .await;
    local.shutdown().await;
}

/// Waits until `path` has a line ending in `text`; then lets the millisecond clock move on,
/// so that the next line anyone writes has a later timestamp.
async fn wait_until_logged(path: &std::path::Path, text: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .any(|line| line.ends_with(&format!(" {text}")))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{text} never logged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
}

#[tokio::test]
async fn logs_merge_the_instances_in_time_order_and_follow_new_lines() {
    let fixture = Fixture::new().await;
    let local = Local::new(fixture.supervisor.clone());
    // The two instances take turns, on files the test creates once it has seen the line
    // before: one (1), two (2), three (1).
    let wait_for = |file: &str| format!("while [ ! -e {file} ]; do sleep 0.01; done");
    let first = local
        .start(fixture.spec(
            "chat",
            1,
            &format!("echo one; {}; echo three; sleep 300", wait_for("b")),
        ))
        .await
        .expect("start");
    let second = local
        .start(fixture.spec(
            "chat",
            2,
            &format!("{}; echo two; sleep 300", wait_for("a")),
        ))
        .await
        .expect("start");
    let log = |index: u32| fixture.supervisor.log_path("chat", index);
    wait_until_logged(&log(1), "one").await;
    fixture.write("a", "");
    wait_until_logged(&log(2), "two").await;
    fixture.write("b", "");
    wait_until_logged(&log(1), "three").await;
    let request = |lines: usize, instance: Option<u32>, follow: bool| LogRequest {
        app: "chat".into(),
        lines,
        instance,
        follow,
    };
    let texts = |lines: Vec<nap_runtime::LogLine>| -> Vec<String> {
        lines
            .into_iter()
            .filter(|line| !line.text.starts_with("-- nap: "))
            .map(|line| format!("{}:{}", line.index, line.text))
            .collect()
    };
    let mut all = Vec::new();
    let mut lines = local.logs(request(100, None, false)).await.expect("logs");
    while let Some(line) = lines.recv().await {
        all.push(line);
    }
    assert_eq!(texts(all), ["1:one", "2:two", "1:three"]);

    let mut only_two = Vec::new();
    let mut lines = local
        .logs(request(100, Some(2), false))
        .await
        .expect("logs");
    while let Some(line) = lines.recv().await {
        only_two.push(line);
    }
    assert_eq!(texts(only_two), ["2:two"]);

    // Following: the last line, then what comes next.
    let mut lines = local.logs(request(1, Some(1), true)).await.expect("logs");
    let last = tokio::time::timeout(PATIENCE, lines.recv())
        .await
        .expect("the last line")
        .expect("a line");
    assert_eq!(last.text, "three");
    let third = local
        .start(fixture.spec("chat", 1, "echo four; sleep 300"))
        .await
        .expect("start");
    let mut fresh = Vec::new();
    while !fresh.iter().any(|text: &String| text == "four") {
        let line = tokio::time::timeout(PATIENCE, lines.recv())
            .await
            .expect("a new line while following")
            .expect("still following");
        fresh.push(line.text);
    }
    drop(lines);
    for id in [&first.id, &second.id, &third.id] {
        local.stop(id).await.expect("stop");
    }

    let refused = local
        .logs(LogRequest {
            app: "../etc".into(),
            ..request(1, None, false)
        })
        .await;
    assert!(refused.is_err());
    local.shutdown().await;
}
