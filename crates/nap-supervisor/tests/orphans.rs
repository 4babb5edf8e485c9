//! A new supervisor stops the instances that a crashed daemon left running.

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};
use std::time::Duration;

use crate::util::{Fixture, group_is_gone};
use nap_supervisor::Config;
use nap_supervisor::Supervisor;

/// Field 22 of /proc/PID/stat.
fn start_time(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name = &stat[stat.rfind(')').expect("name") + 1..];
    after_name
        .split_whitespace()
        .nth(19)
        .expect("field 22")
        .parse()
        .expect("number")
}

fn sleeper(group: u32) -> Child {
    let mut command = Command::new("sleep");
    command
        .arg("300")
        .process_group(i32::try_from(group).expect("pgid"));
    command.spawn().expect("spawn sleep")
}

/// A record as the supervisor writes it (see the docs of the orphans module).
fn record(app: &str, serial: u64, pid: u32, start_time: u64) -> String {
    format!(
        r#"{{"app":"{app}","index":1,"release":"v3","serial":{serial},"pid":{pid},"pgid":{pid},"start_time":{start_time},"cgroup":null}}"#
    )
}

#[tokio::test]
async fn instances_left_by_a_crashed_daemon_are_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");
    fs::create_dir_all(&state_dir).expect("state dir");

    // An orphan: a process group of two, as an instance would be.
    let mut leader = sleeper(0);
    let mut member = sleeper(leader.id());
    fs::write(
        state_dir.join("web@1-7.json"),
        record("web", 7, leader.id(), start_time(leader.id())),
    )
    .expect("record");
    // A record whose pid now belongs to another process (a later start time): left alone.
    let mut stranger = sleeper(0);
    fs::write(
        state_dir.join("web@2-8.json"),
        record("web", 8, stranger.id(), start_time(stranger.id()) + 1),
    )
    .expect("record");
    // A record of a process that is long gone.
    fs::write(
        state_dir.join("web@3-9.json"),
        record("web", 9, 999_999_999, 1),
    )
    .expect("record");
    fs::write(state_dir.join("junk@1-1.json"), "not json").expect("record");

    let mut config = Config::new(30000..30010, dir.path().join("logs"), state_dir.clone());
    config.stop_grace = Duration::from_secs(2);
    let supervisor = Supervisor::new(config).await.expect("supervisor");

    let status = leader.wait().expect("wait");
    assert_eq!(
        status.signal(),
        Some(nix::sys::signal::Signal::SIGTERM as i32)
    );
    member.wait().expect("wait");
    assert!(group_is_gone(leader.id()));
    assert!(
        stranger.try_wait().expect("try_wait").is_none(),
        "the stranger was killed"
    );
    assert!(
        fs::read_dir(&state_dir)
            .expect("state dir")
            .next()
            .is_none(),
        "records remain"
    );

    // New serials do not repeat the old ones, so record names never clash.
    let fixture_dir = dir.path().join("app");
    fs::create_dir_all(&fixture_dir).expect("app dir");
    let started = supervisor
        .start(nap_supervisor::InstanceSpec {
            app: "web".to_owned(),
            index: 1,
            release: "v4".to_owned(),
            command: "sleep 300".to_owned(),
            cwd: fixture_dir,
            env: Vec::new(),
            memory: None,
            local: nap_supervisor::LocalApp {
                storage: dir.path().join("storage"),
                ids: None,
            },
        })
        .await
        .expect("start");
    assert!(started.id.serial() > 9);
    supervisor.shutdown().await;
    stranger.kill().expect("kill");
    stranger.wait().expect("wait");
}

#[tokio::test]
async fn a_running_instance_has_a_pid_record_until_it_is_stopped() {
    let fixture = Fixture::new().await;
    let started = fixture.start("web", 1, "sleep 300").await;
    let path = fixture
        .config
        .state_dir
        .join(format!("web@1-{}.json", started.id.serial()));
    let record: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).expect("record")).expect("json");
    assert_eq!(record["pid"], started.pid);
    assert_eq!(record["pgid"], started.pid);
    assert_eq!(record["start_time"], start_time(started.pid));
    assert_eq!(record["release"], "v1");
    fixture.supervisor.stop(&started.id).await.expect("stop");
    assert!(!path.exists());
}
