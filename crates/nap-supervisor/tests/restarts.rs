//! Restarting instances that exit, with backoff.

use std::time::Duration;

use nap_supervisor::InstanceState;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::{Fixture, SERVER_PY, http_get_eventually, log_lines};

/// A killed instance comes back on the same port: the port belongs to the instance until it
/// is stopped, so the router's table stays right across restarts.
#[tokio::test]
async fn a_killed_instance_is_restarted_on_the_same_port() {
    let fixture = Fixture::with(|config| config.backoff_min = Duration::from_millis(50)).await;
    fixture.write("server.py", SERVER_PY);
    let started = fixture.start("web", 1, "python3 server.py").await;
    http_get_eventually(started.port).await;

    let pid = i32::try_from(started.pid).expect("pid");
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9");
    let status = fixture
        .wait_for_status(&started.id, "a restart", |s| {
            s.restarts == 1 && s.pid.is_some()
        })
        .await;
    assert_ne!(status.pid, Some(started.pid));
    assert_eq!(status.port, started.port);
    assert_eq!(
        http_get_eventually(started.port).await,
        "web 1 v1 - leaked=0\n"
    );

    let log = log_lines(&fixture.supervisor.log_path("web", 1));
    assert!(
        log.iter().any(|line| line.starts_with(&format!(
            "-- nap: v1 pid {} killed by SIGKILL, restarting in 50ms",
            started.pid
        ))),
        "{log:#?}"
    );
    fixture.supervisor.shutdown().await;
}

#[tokio::test]
async fn a_crash_loop_backs_off_exponentially_up_to_the_maximum() {
    let fixture = Fixture::with(|config| {
        config.backoff_min = Duration::from_millis(10);
        config.backoff_max = Duration::from_millis(40);
    })
    .await;
    let started = fixture.start("crashy", 1, "echo crashing; exit 3").await;
    fixture
        .wait_for_status(&started.id, "four restarts", |s| s.restarts >= 4)
        .await;
    fixture.supervisor.stop(&started.id).await.expect("stop");

    let delays: Vec<String> = log_lines(&fixture.supervisor.log_path("crashy", 1))
        .iter()
        .filter_map(|line| {
            line.split_once(", restarting in ")
                .map(|(_, d)| d.to_owned())
        })
        .collect();
    assert_eq!(delays[..4], ["10ms", "20ms", "40ms", "40ms"]);
}

#[tokio::test]
async fn a_crashed_instance_waits_in_backoff_and_is_not_restarted_once_stopped() {
    let fixture = Fixture::with(|config| config.backoff_min = Duration::from_secs(600)).await;
    let started = fixture.start("crashy", 1, "exit 3").await;
    let status = fixture
        .wait_for_status(&started.id, "backoff", |s| {
            s.state == InstanceState::Backoff
        })
        .await;
    assert_eq!((status.pid, status.restarts), (None, 0));
    fixture.supervisor.stop(&started.id).await.expect("stop");
    assert!(fixture.supervisor.list().await.is_empty());
    let log = log_lines(&fixture.supervisor.log_path("crashy", 1));
    assert_eq!(log.last().map(String::as_str), Some("-- nap: stopped v1"));
}

#[tokio::test]
async fn an_instance_that_cannot_even_be_spawned_again_is_crashed() {
    let fixture = Fixture::with(|config| {
        config.backoff_min = Duration::from_millis(10);
        config.backoff_max = Duration::from_millis(10);
    })
    .await;
    let release_dir = fixture.app_dir().join("release");
    std::fs::create_dir(&release_dir).expect("release dir");
    let mut spec = fixture.spec("gone", 1, "exit 1");
    spec.cwd = release_dir.clone();
    let started = fixture.supervisor.start(spec).await.expect("start");
    // The release directory disappears: restarts cannot chdir into it.
    std::fs::remove_dir(&release_dir).expect("remove release dir");
    let status = fixture
        .wait_for_status(&started.id, "crashed", |s| {
            s.state == InstanceState::Crashed
        })
        .await;
    assert_eq!(status.pid, None);
    fixture.supervisor.stop(&started.id).await.expect("stop");
    let log = log_lines(&fixture.supervisor.log_path("gone", 1));
    assert!(
        log.iter()
            .any(|line| line.starts_with("-- nap: cannot start v1: ")),
        "{log:#?}"
    );
}
