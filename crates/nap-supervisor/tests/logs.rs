//! Instance logs: timestamped lines, lifecycle events, rotation.

use std::time::Duration;

use crate::util::{Fixture, is_timestamped, log_lines};

#[tokio::test]
async fn output_is_logged_with_timestamps_and_rotated_past_the_cap() {
    let fixture = Fixture::with(|config| {
        config.log_max_bytes = 4096;
        config.backoff_min = Duration::from_secs(600);
    })
    .await;
    // 200 lines of about 60 bytes: more than twice the cap.
    let command = "i=0; while [ $i -lt 200 ]; do echo \"line $i $(printf '%040d' 0)\"; \
                   i=$((i+1)); done; echo bye >&2";
    let started = fixture.start("chatty", 2, command).await;
    // The app exits when done; its output is all written by the time that is reported.
    let unhealthy = fixture
        .supervisor
        .wait_healthy(&started.id, Duration::from_secs(3600))
        .await
        .expect_err("it exits");
    assert_eq!(unhealthy.reason, "exited with status 0");
    assert_eq!(unhealthy.last_lines.len(), 20);

    let path = fixture.supervisor.log_path("chatty", 2);
    assert_eq!(path, fixture.config.logs_dir.join("chatty/chatty@2.log"));
    let old = path.with_extension("log.1");
    let old_lines = log_lines(&old);
    let lines = log_lines(&path);
    assert!(std::fs::metadata(&path).expect("log").len() <= 4096 + 100);
    assert!(std::fs::metadata(&old).expect("old log").len() > 4096);
    assert!(!path.with_extension("log.2").exists());
    let all: Vec<&String> = old_lines.iter().chain(&lines).collect();
    assert!(all.iter().any(|l| l.starts_with("line 199 0000")));
    assert!(all.iter().any(|l| l.as_str() == "bye"));
    assert!(
        lines.iter().any(|l| l.starts_with("-- nap: v1 pid ")
            && l.ends_with(" exited with status 0, restarting in 600s")),
        "{lines:#?}"
    );

    // Timestamps never go backwards, so logs of several instances can be merged by sorting.
    let text = std::fs::read_to_string(&old).expect("old log")
        + &std::fs::read_to_string(&path).expect("log");
    let stamps: Vec<&str> = text.lines().map(|line| &line[..24]).collect();
    assert!(text.lines().all(is_timestamped));
    assert!(stamps.windows(2).all(|pair| pair[0] <= pair[1]));
    fixture.supervisor.shutdown().await;
}

#[tokio::test]
async fn the_log_records_start_and_stop() {
    let fixture = Fixture::new().await;
    let started = fixture.start("worker", 1, "echo hello; sleep 300").await;
    fixture
        .supervisor
        .wait_healthy(&started.id, Duration::from_millis(300))
        .await
        .expect("healthy");
    fixture.supervisor.stop(&started.id).await.expect("stop");
    // The shell reports its foreground command's death by signal ("Terminated" from dash);
    // that line is the shell's, not the supervisor's, and depends on which sh this is.
    let lines: Vec<String> = log_lines(&fixture.supervisor.log_path("worker", 1))
        .into_iter()
        .filter(|line| line != "Terminated")
        .collect();
    assert_eq!(
        lines,
        [
            format!(
                "-- nap: started v1 pid {} port {}",
                started.pid, started.port
            ),
            "hello".to_owned(),
            "-- nap: stopping v1".to_owned(),
            // The process the supervisor started is the sandbox's bwrap, which dies of the
            // stop's SIGTERM (the app inside got it too and was waited for).
            format!("-- nap: v1 pid {} killed by SIGTERM", started.pid),
            "-- nap: stopped v1".to_owned(),
        ]
    );
}
