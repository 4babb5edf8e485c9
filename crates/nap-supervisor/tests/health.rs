//! `wait_healthy`: accepting on $PORT (from the start), or alive at the end of the grace period
//! and listening nowhere.

use std::time::Duration;

use nap_supervisor::{HealthPolicy, InstanceState};

use crate::util::{Fixture, SERVER_PY};

/// Long enough for python to start and bind its port.
const GRACE: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_server_on_its_port_is_healthy() {
    let fixture = Fixture::new().await;
    fixture.write("server.py", SERVER_PY);
    let started = fixture.start("web", 1, "python3 server.py").await;
    assert_eq!(
        fixture.status(&started.id).await.map(|s| s.state),
        Some(InstanceState::Starting)
    );
    fixture
        .supervisor
        .wait_healthy(&started.id, GRACE)
        .await
        .expect("healthy");
    assert_eq!(
        fixture.status(&started.id).await.map(|s| s.state),
        Some(InstanceState::Up)
    );
    fixture.supervisor.shutdown().await;
}

#[tokio::test]
async fn a_server_is_healthy_once_it_accepts_without_waiting_out_the_grace() {
    let fixture = Fixture::new().await;
    fixture.write("server.py", SERVER_PY);
    let started = fixture.start("web", 1, "python3 server.py").await;
    // An hour's grace: only the accepted connection can end this wait. The outer timeout
    // turns a regression into a failure instead of a hung test.
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        fixture
            .supervisor
            .wait_healthy(&started.id, Duration::from_secs(3600)),
    )
    .await
    .expect("healthy once the port accepts, not after the grace");
    waited.expect("healthy");
    assert_eq!(
        fixture.status(&started.id).await.map(|s| s.state),
        Some(InstanceState::Up)
    );
    fixture.supervisor.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_listens_nowhere_is_healthy() {
    let fixture = Fixture::new().await;
    let started = fixture.start("worker", 1, "echo working; sleep 300").await;
    fixture
        .supervisor
        .wait_healthy(&started.id, Duration::from_millis(300))
        .await
        .expect("healthy");
    fixture.supervisor.shutdown().await;
}

#[tokio::test]
async fn an_app_that_exits_is_unhealthy_at_once_with_its_last_lines() {
    let fixture = Fixture::with(|config| config.backoff_min = Duration::from_secs(600)).await;
    let command = "echo starting; echo 'config missing' >&2; exit 1";
    let started = fixture.start("web", 1, command).await;
    // The grace period is long: the answer must come when the process exits, not after it.
    let unhealthy = fixture
        .supervisor
        .wait_healthy(&started.id, Duration::from_secs(3600))
        .await
        .expect_err("an exited app is not healthy");
    assert_eq!(unhealthy.reason, "exited with status 1");
    let mut lines = unhealthy.last_lines.clone();
    lines.sort();
    assert_eq!(lines, ["config missing", "starting"]);

    let status = fixture.status(&started.id).await.expect("listed");
    assert_eq!(status.state, InstanceState::Backoff);
    assert_eq!(status.pid, None);
    // An instance waiting for its restart stops at once.
    fixture.supervisor.stop(&started.id).await.expect("stop");
    assert!(fixture.supervisor.list().await.is_empty());
}

#[tokio::test]
async fn an_app_listening_on_another_port_is_unhealthy() {
    let fixture = Fixture::new().await;
    fixture.write(
        "elsewhere.py",
        "import socket, time\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.1', 0))\n\
         s.listen()\n\
         print('listening on', s.getsockname()[1], flush=True)\n\
         time.sleep(300)\n",
    );
    let started = fixture.start("web", 1, "python3 elsewhere.py").await;
    let unhealthy = fixture
        .supervisor
        .wait_healthy(&started.id, GRACE)
        .await
        .expect_err("listening elsewhere is not healthy");
    let other_port = unhealthy
        .last_lines
        .iter()
        .find_map(|line| line.strip_prefix("listening on "))
        .expect("the app said where it listens");
    assert_eq!(
        unhealthy.reason,
        format!("listening on {other_port}, not on $PORT ({})", started.port)
    );
    fixture.supervisor.shutdown().await;
}

#[tokio::test]
async fn an_unknown_or_stopped_instance_is_not_healthy() {
    let fixture = Fixture::new().await;
    let started = fixture.start("worker", 1, "sleep 300").await;
    // join! polls in order, so the health check is under way before the stop is asked for.
    let (health, stopped) = tokio::join!(
        fixture
            .supervisor
            .wait_healthy(&started.id, Duration::from_secs(3600)),
        fixture.supervisor.stop(&started.id),
    );
    stopped.expect("stop");
    let unhealthy = health.expect_err("stopped");
    assert_eq!(unhealthy.reason, "stopped");

    let unknown = fixture
        .supervisor
        .wait_healthy(&started.id, Duration::from_secs(1))
        .await
        .expect_err("unknown");
    assert!(unknown.reason.starts_with("no such instance"), "{unknown}");
}

/// A server that opens its port only after the grace period, but before the boot timeout.
const SLOW_SERVER_PY: &str = "import os, socket, time\n\
     time.sleep(1.5)\n\
     s = socket.socket()\n\
     s.bind(('127.0.0.1', int(os.environ['PORT'])))\n\
     s.listen()\n\
     print('up', flush=True)\n\
     time.sleep(300)\n";

#[tokio::test]
async fn a_slow_starter_gets_the_boot_timeout_and_then_listens() {
    let fixture = Fixture::new().await;
    fixture.write("slow.py", SLOW_SERVER_PY);
    let started = fixture.start("slow", 1, "python3 slow.py").await;
    let policy = HealthPolicy {
        grace: Duration::from_millis(200),
        boot_timeout: Duration::from_secs(60),
    };
    let healthy = fixture
        .supervisor
        .wait_healthy(&started.id, policy)
        .await
        .expect("healthy once it listens");
    assert!(healthy.listening, "it accepted on its port");

    // With no boot time past the grace, the same app is a worker at the end of the grace.
    let started = fixture.start("slow", 2, "python3 slow.py").await;
    let healthy = fixture
        .supervisor
        .wait_healthy(&started.id, Duration::from_millis(200))
        .await
        .expect("alive for the grace");
    assert!(!healthy.listening);
    fixture.supervisor.shutdown().await;
}

#[tokio::test]
async fn a_worker_is_healthy_at_the_boot_deadline_and_says_it_does_not_listen() {
    let fixture = Fixture::new().await;
    let started = fixture.start("worker", 1, "sleep 300").await;
    let policy = HealthPolicy {
        grace: Duration::from_millis(100),
        boot_timeout: Duration::from_millis(400),
    };
    let healthy = fixture
        .supervisor
        .wait_healthy(&started.id, policy)
        .await
        .expect("a worker");
    assert!(!healthy.listening);
    fixture.supervisor.shutdown().await;
}

#[tokio::test]
async fn an_exit_after_the_grace_but_before_the_boot_deadline_is_unhealthy() {
    let fixture = Fixture::with(|config| config.backoff_min = Duration::from_secs(600)).await;
    let started = fixture
        .start("quitter", 1, "sleep 0.5; echo giving up; exit 4")
        .await;
    let policy = HealthPolicy {
        grace: Duration::from_millis(100),
        boot_timeout: Duration::from_secs(3600),
    };
    let unhealthy = fixture
        .supervisor
        .wait_healthy(&started.id, policy)
        .await
        .expect_err("it exited while booting");
    assert_eq!(unhealthy.reason, "exited with status 4");
    assert_eq!(unhealthy.last_lines, ["giving up"]);
    fixture.supervisor.shutdown().await;
}
