//! Starting, listing and stopping instances.

use std::collections::BTreeSet;
use std::time::Duration;

use nap_supervisor::{InstanceState, StartError, StopError};

use crate::util::{Fixture, SERVER_PY, group_is_gone, http_get_eventually, port_is_free};

#[tokio::test]
async fn three_instances_get_their_own_ports_and_environment() {
    let fixture = Fixture::new().await;
    fixture.write("server.py", SERVER_PY);
    assert!(
        std::env::vars().any(|(key, _)| key.starts_with("CARGO")),
        "the leak check needs cargo's variables in the test's environment"
    );

    let mut started = Vec::new();
    for index in 1..=3 {
        let mut spec = fixture.spec("web", index, "python3 server.py");
        spec.env
            .push(("GREETING".to_owned(), format!("hello{index}")));
        started.push(fixture.supervisor.start(spec).await.expect("start"));
    }
    let ports: BTreeSet<u16> = started.iter().map(|s| s.port).collect();
    assert_eq!(ports.len(), 3, "ports must differ: {started:?}");
    assert!(ports.iter().all(|p| fixture.config.ports.contains(p)));

    for instance in &started {
        fixture
            .supervisor
            .wait_healthy(&instance.id, Duration::from_millis(500))
            .await
            .expect("a server on $PORT is healthy");
    }
    for instance in &started {
        let body = http_get_eventually(instance.port).await;
        let index = instance.id.index();
        assert_eq!(body, format!("web {index} v1 hello{index} leaked=0\n"));
    }

    let list = fixture.supervisor.list().await;
    assert_eq!(list.len(), 3);
    for (status, instance) in list.iter().zip(&started) {
        assert_eq!(status.id, instance.id);
        assert_eq!(
            (status.app.as_str(), status.index),
            ("web", instance.id.index())
        );
        assert_eq!(status.release, "v1");
        assert_eq!(status.state, InstanceState::Up);
        assert_eq!(status.port, instance.port);
        assert_eq!(status.pid, Some(instance.pid));
        assert_eq!(status.restarts, 0);
        assert!(status.memory_used.is_some_and(|bytes| bytes > 0));
        assert_eq!((status.memory_limit, status.limit_enforced), (None, false));
    }

    fixture.supervisor.shutdown().await;
    assert!(fixture.supervisor.list().await.is_empty());
    for instance in &started {
        assert!(
            group_is_gone(instance.pid),
            "{} left processes",
            instance.id
        );
        assert!(port_is_free(instance.port));
    }
    let after = fixture
        .supervisor
        .start(fixture.spec("web", 4, "true"))
        .await;
    assert!(matches!(after, Err(StartError::ShuttingDown)), "{after:?}");
}

#[tokio::test]
async fn stop_kills_the_whole_process_group_and_frees_the_port() {
    let fixture = Fixture::with(|config| config.stop_grace = Duration::from_secs(1)).await;
    fixture.write("server.py", SERVER_PY);
    // Background children of the shell, and one that ignores SIGTERM.
    let command = "sleep 300 & sh -c 'trap \"\" TERM; sleep 301' & python3 server.py";
    let started = fixture.start("web", 1, command).await;
    http_get_eventually(started.port).await;
    assert!(!port_is_free(started.port));

    fixture.supervisor.stop(&started.id).await.expect("stop");
    assert!(
        group_is_gone(started.pid),
        "the process group is still there"
    );
    assert!(port_is_free(started.port));
    assert!(fixture.supervisor.list().await.is_empty());
    let again = fixture.supervisor.stop(&started.id).await;
    assert!(
        matches!(again, Err(StopError::UnknownInstance { .. })),
        "{again:?}"
    );
    assert!(
        std::fs::read_dir(&fixture.config.state_dir)
            .expect("state dir")
            .next()
            .is_none(),
        "the pid record is deleted"
    );
}

#[tokio::test]
async fn a_port_is_never_handed_out_twice_and_is_reused_after_stop() {
    let fixture = Fixture::with(|config| {
        config.ports = config.ports.start..config.ports.start + 1;
    })
    .await;
    let first = fixture.start("worker", 1, "sleep 300").await;
    let second = fixture
        .supervisor
        .start(fixture.spec("worker", 2, "sleep 300"))
        .await;
    assert!(
        matches!(second, Err(StartError::NoFreePort { .. })),
        "{second:?}"
    );

    fixture.supervisor.stop(&first.id).await.expect("stop");
    let third = fixture
        .supervisor
        .start(fixture.spec("worker", 2, "sleep 300"))
        .await
        .expect("the freed port is handed out again");
    assert_eq!(third.port, first.port);
    fixture.supervisor.shutdown().await;
}

#[tokio::test]
async fn two_releases_of_one_instance_run_side_by_side() {
    let fixture = Fixture::new().await;
    fixture.write("server.py", SERVER_PY);
    let old = fixture
        .supervisor
        .start(fixture.spec("web", 1, "python3 server.py"))
        .await
        .expect("start v1");
    let mut spec = fixture.spec("web", 1, "python3 server.py");
    spec.release = "v2".to_owned();
    let new = fixture.supervisor.start(spec).await.expect("start v2");
    assert_ne!(old.id, new.id);
    assert_ne!(old.port, new.port);
    assert_eq!(http_get_eventually(old.port).await, "web 1 v1 - leaked=0\n");
    assert_eq!(http_get_eventually(new.port).await, "web 1 v2 - leaked=0\n");

    fixture.supervisor.stop(&old.id).await.expect("stop v1");
    assert_eq!(http_get_eventually(new.port).await, "web 1 v2 - leaked=0\n");
    let list = fixture.supervisor.list().await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].release, "v2");
    fixture.supervisor.shutdown().await;
}

#[tokio::test]
async fn bad_specs_are_refused_before_anything_runs() {
    let fixture = Fixture::new().await;
    let mut missing_cwd = fixture.spec("web", 1, "true");
    missing_cwd.cwd = fixture.dir.path().join("nope");
    let mut bad_env = fixture.spec("web", 1, "true");
    bad_env.env.push(("A=B".to_owned(), "c".to_owned()));
    for spec in [
        missing_cwd,
        bad_env,
        fixture.spec("../web", 1, "true"),
        fixture.spec("web", 1, "  "),
    ] {
        let result = fixture.supervisor.start(spec.clone()).await;
        assert!(
            matches!(result, Err(StartError::InvalidSpec { .. })),
            "{spec:?}: {result:?}"
        );
    }
    assert!(fixture.supervisor.list().await.is_empty());
}

#[tokio::test]
async fn a_simple_command_is_the_process_itself_and_a_list_keeps_its_shell() {
    // In the sandbox the instance's process group is bwrap, its init and then the command;
    // without, the command alone. Either way a simple command leaves no shell behind.
    for sandboxed in [true, false] {
        let fixture = if sandboxed {
            Fixture::new().await
        } else {
            Fixture::unsandboxed_with(|_| {}).await
        };
        let simple = fixture.start("worker", 1, "sleep 300").await;
        let list = fixture.start("worker", 2, "echo starting; sleep 300").await;
        for started in [&simple, &list] {
            fixture
                .supervisor
                .wait_healthy(&started.id, Duration::from_millis(100))
                .await
                .expect("healthy");
        }
        // The wrapper shell runs first, then execs: wait for that, with a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while group_commands(simple.pid) != ["sleep"] && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            group_commands(simple.pid),
            ["sleep"],
            "exec'd, no shell in between (sandboxed: {sandboxed})"
        );
        assert_eq!(
            group_commands(list.pid),
            ["sh", "sleep"],
            "a list runs in the wrapper shell (sandboxed: {sandboxed})"
        );
        fixture.supervisor.shutdown().await;
    }
}

/// The command names of the live members of process group `pgid`, bwrap's own left out,
/// sorted.
fn group_commands(pgid: u32) -> Vec<String> {
    let mut commands: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let live = !matches!(fields.first(), Some(&"Z") | Some(&"X"));
            (live && fields.get(2)? == &pgid.to_string() && name != "bwrap")
                .then(|| name.to_owned())
        })
        .collect();
    commands.sort();
    commands
}
