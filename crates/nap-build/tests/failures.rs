//! Builds that fail or hang, the release phase, and a tree with nothing to build.

use std::time::Duration;

use nap_build::{BuildError, Detected};

use crate::util::{Fixture, live_processes_with, shows};

#[tokio::test]
async fn a_failing_build_command_returns_its_last_lines_and_sees_the_config_vars() {
    let fx = Fixture::new().await;
    let release = fx.release(&[("app.txt", "x")]);
    let mut request = fx.request(&release, &[("GREETING", "hi there")]);
    request.build_command = Some(
        "echo \"$GREETING\"; for i in $(seq 1 30); do echo line $i; done; echo oops >&2; exit 3"
            .to_owned(),
    );
    let (result, lines) = fx.build(&request).await;
    assert_eq!(lines[0], "-----> Building (build command)");
    assert!(shows(&lines, "hi there"), "{lines:#?}");
    let Err(BuildError::Failed {
        code,
        last_lines,
        detected,
        ..
    }) = result
    else {
        panic!("the build must fail: {result:?}");
    };
    assert_eq!(code, 3);
    assert_eq!(
        detected,
        Detected::Command(request.build_command.clone().expect("set"))
    );
    assert_eq!(last_lines.len(), nap_build::LAST_LINES);
    assert_eq!(last_lines.last().map(String::as_str), Some("oops"));
    assert_eq!(last_lines.first().map(String::as_str), Some("line 12"));
}

#[tokio::test]
async fn a_build_that_hangs_is_killed_at_its_time_limit_with_every_process() {
    let fx = Fixture::new().await;
    let release = fx.release(&[("app.txt", "x")]);
    let marker = format!("nap-build-hang-{}", std::process::id());
    let mut request = fx.request(&release, &[]);
    // A child in the background that leaves the process group, and one that waits.
    request.build_command = Some(format!(
        "echo started; setsid sh -c 'sleep 1000' {marker} & sh -c 'sleep 1000' {marker}"
    ));
    request.time_limit = Duration::from_secs(3);
    let (result, lines) = fx.build(&request).await;
    let Err(error @ BuildError::TimedOut { .. }) = result else {
        panic!("the build must time out: {result:?} {lines:#?}");
    };
    assert_eq!(
        error.to_string(),
        "the build (build command) of myapp took longer than 3s and was stopped"
    );
    assert_eq!(error.last_lines(), ["started"]);
    assert_eq!(live_processes_with(&marker), Vec::<String>::new());
}

#[tokio::test]
async fn a_dropped_build_leaves_no_process() {
    let fx = Fixture::new().await;
    let release = fx.release(&[("app.txt", "x")]);
    let marker = format!("nap-build-dropped-{}", std::process::id());
    let mut request = fx.request(&release, &[]);
    request.build_command = Some(format!("echo started; sh -c 'sleep 1000' {marker}"));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let mut started_tx = Some(started_tx);
    let mut sink = move |line: &str| {
        if line == "       started"
            && let Some(tx) = started_tx.take()
        {
            let _ = tx.send(());
        }
    };
    let sandbox = fx.sandbox.clone();
    let build = async move { nap_build::build(&sandbox, &request, &mut sink).await };
    tokio::select! {
        result = build => panic!("the build ended: {result:?}"),
        _ = started_rx => {}
    }
    // The build future is dropped here, as when the pusher disconnects. The kill is a
    // SIGKILL of the sandbox's init, which the kernel completes before the sandbox's last
    // process is gone; wait for that on the processes themselves, not a clock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !live_processes_with(&marker).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            live_processes_with(&marker)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_release_phase_sees_a_read_only_tree_and_writable_storage() {
    let fx = Fixture::new().await;
    let release = fx.release(&[("app.txt", "x")]);
    let (code, lines) = fx
        .run_in(
            &release,
            "touch /app/new 2>/dev/null && echo wrote-app; echo migrated > /storage/m; \
             echo done; exit 4",
        )
        .await;
    assert_eq!(code, 4);
    assert_eq!(lines, ["-----> Running the release command", "       done"]);
    assert!(!release.join("new").exists());
    assert_eq!(
        std::fs::read_to_string(fx.storage.join("m")).expect("storage"),
        "migrated\n"
    );
}

#[tokio::test]
async fn a_tree_with_nothing_to_build_is_left_alone() {
    let fx = Fixture::new().await;
    let release = fx.release(&[("app.txt", "x")]);
    let (result, lines) = fx.build(&fx.request(&release, &[])).await;
    assert_eq!(
        result.expect("nothing to build").detected,
        Detected::Nothing
    );
    assert!(lines.is_empty(), "{lines:#?}");
}

#[tokio::test]
async fn a_cgroup_that_cannot_be_joined_stops_the_build_before_it_starts() {
    let fx = Fixture::new().await;
    let release = fx.release(&[("app.txt", "x")]);
    let mut request = fx.request(&release, &[]);
    request.build_command = Some("touch /app/ran".to_owned());
    let missing = fx.storage.with_file_name("no-such-cgroup");
    request.memory_cgroup = Some(missing.clone());
    let (result, lines) = fx.build(&request).await;
    let Err(BuildError::Start {
        source: nap_build::StartError::CgroupJoin { cgroup },
        ..
    }) = result
    else {
        panic!("the build must not start: {result:?} {lines:#?}");
    };
    assert_eq!(cgroup, missing);
    assert!(!release.join("ran").exists(), "nothing ran");
}
