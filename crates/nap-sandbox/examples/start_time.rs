//! How much the sandbox adds to starting a process: the median time from spawn to exit of
//! `/usr/bin/true`, plain, under a `/bin/sh` wrapper as instances start today, and in the
//! sandbox (as root with an app uid, otherwise nap's uid in a user namespace).
//!
//! `cargo run --release -p nap-sandbox --example start_time [RUNS]`

use std::process::Stdio;
use std::time::{Duration, Instant};

use nap_sandbox::{Identity, Policy, Protected, Sandbox, SandboxOptions};
use tokio::process::Command;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args().nth(1).map_or(Ok(200), |n| n.parse())?;
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let release = data_dir.join("release");
    let storage = data_dir.join("storage");
    std::fs::create_dir_all(&release)?;
    let sandbox = Sandbox::probe(&SandboxOptions {
        bwrap: None,
        ro_paths: Vec::new(),
        protected: Protected {
            control_socket: data_dir.join("nap.sock"),
            data_dir,
            home: None,
        },
        state_dir: dir.path().join("state"),
    })
    .await?;
    let identity = if sandbox.runs_as_root() {
        Identity::AppUser {
            uid: 200_000,
            gid: 200_000,
        }
    } else {
        Identity::DaemonUser
    };
    nap_sandbox::prepare_writable_dir(&storage, identity)?;
    let policy = Policy {
        release,
        release_writable: false,
        storage,
        cache: None,
        env: [("PORT".to_owned(), "20000".to_owned())].into(),
        identity,
    };
    let launch = sandbox.launch(&policy, &["/usr/bin/true"])?;

    let plain = measure(runs, || async {
        Command::new("/usr/bin/true").status().await
    })
    .await?;
    let wrapped = measure(runs, || async {
        Command::new("/bin/sh")
            .args(["-c", "exec /usr/bin/true"])
            .status()
            .await
    })
    .await?;
    let sandboxed = measure(runs, || async {
        let mut command = launch.command("");
        command.stdout(Stdio::null());
        launch.spawn(&mut command)?.wait().await
    })
    .await?;
    println!(
        "{runs} runs each, {}; load average {}; median start to exit of /usr/bin/true:",
        if sandbox.runs_as_root() {
            "as root (app uid via setpriv)"
        } else {
            "as an ordinary user (user namespace)"
        },
        std::fs::read_to_string("/proc/loadavg")?
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (name, wall) in [
        ("plain", plain),
        ("/bin/sh wrapper", wrapped),
        ("sandboxed", sandboxed),
    ] {
        println!("  {name:<16} {wall:>10.2?}");
    }
    println!(
        "  sandbox adds     {:>10.2?} over the wrapper",
        sandboxed.saturating_sub(wrapped)
    );
    Ok(())
}

/// Runs `start` `runs` times and returns the median wall time of one run.
async fn measure<F, Fut>(runs: usize, start: F) -> std::io::Result<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<std::process::ExitStatus>>,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let begin = Instant::now();
        let status = start().await?;
        times.push(begin.elapsed());
        assert!(status.success(), "{status}");
    }
    times.sort_unstable();
    Ok(times[times.len() / 2])
}
