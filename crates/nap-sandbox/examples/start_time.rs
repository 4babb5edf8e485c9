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
        "{runs} runs each, {}; load average {}",
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
    println!("                   median wall   CPU (user+sys of all processes)");
    for (name, (wall, cpu)) in [
        ("plain", plain),
        ("/bin/sh wrapper", wrapped),
        ("sandboxed", sandboxed),
    ] {
        println!("  {name:<16} {wall:>10.2?}   {cpu:>8.2?}");
    }
    println!(
        "  sandbox adds    {:>10.2?}   {:>8.2?} over the wrapper",
        sandboxed.0.saturating_sub(wrapped.0),
        sandboxed.1.saturating_sub(wrapped.1)
    );
    Ok(())
}

/// Runs `start` `runs` times: the median wall time of one run, and the CPU time per run of
/// the processes it started.
async fn measure<F, Fut>(runs: usize, start: F) -> std::io::Result<(Duration, Duration)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<std::process::ExitStatus>>,
{
    let cpu_before = children_cpu()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let begin = Instant::now();
        let status = start().await?;
        times.push(begin.elapsed());
        assert!(status.success(), "{status}");
    }
    let cpu = (children_cpu()? - cpu_before) / runs as u32;
    times.sort_unstable();
    Ok((times[times.len() / 2], cpu))
}

/// The CPU time of this process's reaped children so far (`/proc/self/stat`'s cutime and
/// cstime, in clock ticks of 10 ms).
fn children_cpu() -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 2..]
        .split(' ')
        .collect();
    let ticks: u64 = fields[13].parse().unwrap_or(0) + fields[14].parse().unwrap_or(0);
    Ok(Duration::from_millis(ticks * 10))
}
