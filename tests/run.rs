//! `run APP CMD...` (issue 14): a one-off process in the app's running release, over real
//! ssh and `nap run`, in the real sandbox, killed with its client.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Nap, SERVER_PY, User, server_profile, text};

/// Allocates (and touches) 256 MiB: far over the app's 64M.
const HOG_PY: &str = "data = b'x' * (256 << 20)\nprint(len(data))\n";

/// The command lines of every process on the host.
fn host_command_lines() -> Vec<(u32, String)> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&bytes).replace('\0', " ");
            lines.push((pid, line.trim().to_owned()));
        }
    }
    lines
}

/// Host processes whose command line is exactly `line`.
fn processes_running(line: &str) -> Vec<u32> {
    host_command_lines()
        .into_iter()
        .filter(|(_, l)| l == line)
        .map(|(pid, _)| pid)
        .collect()
}

/// Waits (up to 20 s) until `done` holds; panics with `what` otherwise. Polls /proc and
/// files: there is nothing to wait on for processes that are not the test's children.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid records of one-off runs the daemon keeps (`DATA/run/APP@run-N.json`).
fn one_off_records(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("run"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains("@run-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn run_streams_output_returns_its_status_and_sees_only_its_own_app() {
    let nap = Nap::start();
    let bob = nap.user("bob", "ed25519", false);
    let mallory = nap.user("mallory", "ed25519", false);
    let web = bob.repo(
        "web",
        &[
            ("server.py", SERVER_PY),
            ("hog.py", HOG_PY),
            ("profile", &server_profile("memory: 64M\n")),
        ],
    );
    bob.deploy(&web, "web");
    let output = bob.ssh(&["config:set", "web", "GREETING=hi-from-config"]);
    assert!(output.status.success(), "{:?}", text(&output));

    // Output on both streams, a config var, the release, the exit status as ssh's.
    let output = bob.ssh(&[
        "run",
        "web",
        "echo out; echo err >&2; echo $GREETING $NAP_APP $NAP_RELEASE ${PORT:-noport}; exit 7",
    ]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(7), "{stdout}\n{stderr}");
    assert_eq!(stdout, "out\nhi-from-config web v2 noport\n");
    assert_eq!(stderr.trim(), "err");

    // Its storage, writable and the app's own: the host sees the file.
    let output = bob.ssh(&[
        "run",
        "web",
        "echo kept > $NAP_STORAGE/note && cat $NAP_STORAGE/note && pwd",
    ]);
    assert_eq!(text(&output).0, "kept\n/app\n", "{:?}", text(&output));
    let kept = std::fs::read_to_string(nap.data.join("storage/web/note")).expect("note");
    assert_eq!(kept, "kept\n");

    // stdin from the ssh channel reaches the command, and its end of file too.
    let output = bob.ssh_with_input(&["run", "web", "tr a-z A-Z"], "hello\nworld\n");
    assert!(output.status.success(), "{:?}", text(&output));
    assert_eq!(text(&output).0, "HELLO\nWORLD\n");

    // Nothing of nap's data, no other app, none of the app's running instances.
    let data = nap.data.display().to_string();
    let probe = format!(
        "test -e {data} && echo SEES-DATA; ls /storage; \
         cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -c 'server[.]py'; true"
    );
    let output = bob.ssh(&["run", "web", &probe]);
    let (stdout, stderr) = text(&output);
    assert!(!stdout.contains("SEES-DATA"), "{stdout}{stderr}");
    assert_eq!(
        stdout, "note\n0\n",
        "only its own storage, no instance: {stderr}"
    );
    assert!(
        nap.ps("web")[0].pid.is_some(),
        "the instance runs beside the one-off process"
    );

    // `nap run` on the host: the same, as the operator.
    let output = nap.cli(&["run", "web", "echo $NAP_APP; exit 3"]);
    assert_eq!(output.status.code(), Some(3), "{:?}", text(&output));
    assert_eq!(text(&output).0, "web\n");

    // Who may not touch the app learns nothing; bad calls say how to call.
    let output = mallory.ssh(&["run", "web", "cat $NAP_STORAGE/note"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("app web belongs to another user"),
        "{stderr}"
    );
    let output = bob.ssh(&["run", "nosuch", "true"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).1.contains("app nosuch does not exist"),
        "{:?}",
        text(&output)
    );
    let output = bob.ssh(&["run", "web"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).1.contains("usage: run APP CMD..."),
        "{:?}",
        text(&output)
    );
    let output = bob.ssh(&["help"]);
    assert!(
        text(&output).0.contains("run APP CMD..."),
        "{:?}",
        text(&output)
    );

    // The app's memory limit holds for a one-off process too (where cgroups work).
    let enforced = nap.ps("web")[0].limit_enforced;
    let output = bob.ssh(&["run", "web", "python3 hog.py"]);
    let (stdout, stderr) = text(&output);
    if enforced {
        assert_eq!(output.status.code(), Some(137), "{stdout}{stderr}");
        assert!(
            stderr.contains("run: out of memory (limit 64.0M)"),
            "{stderr}"
        );
    } else {
        println!("memory cgroups do not work here: the hog ran unlimited ({stderr})");
        assert!(output.status.success(), "{stdout}{stderr}");
    }
    assert!(one_off_records(&nap.data).is_empty());
}

/// `ssh run web COMMAND` in the background, once it has printed `started`.
fn start_run(user: &User, command: &str) -> Child {
    let mut ssh = user
        .ssh_command(&["run", "web", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut line = String::new();
    BufReader::new(ssh.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "started\n", "{command}");
    ssh
}

#[test]
fn every_process_of_a_run_dies_with_its_client() {
    let nap = Nap::start();
    let bob = nap.user("bob", "ed25519", false);
    bob.deploy(&bob.app_repo("web", &server_profile("")), "web");

    // A command that forks a child and waits; unique sleeps name its processes on the host.
    let mut ssh = start_run(&bob, "sleep 31337 & echo started; sleep 31338");
    // The shell echoes before it has started the second sleep.
    wait_until("both of the run's processes run on the host", || {
        processes_running("sleep 31337").len() == 1 && processes_running("sleep 31338").len() == 1
    });
    assert_eq!(one_off_records(&nap.data).len(), 1);

    ssh.kill().expect("kill ssh");
    ssh.wait().expect("reap ssh");
    wait_until("the run's processes are gone", || {
        processes_running("sleep 31337").is_empty() && processes_running("sleep 31338").is_empty()
    });
    wait_until("the run's pid record is gone", || {
        one_off_records(&nap.data).is_empty()
    });
    // The app's instance was not touched.
    assert_eq!(nap.ps("web")[0].state, "up");

    // A run does not outlive its app: destroy ends it (its storage and uid are going).
    let mut ssh = start_run(&bob, "echo started; sleep 31340");
    let output = bob.ssh(&["destroy", "web", "--force"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let status = ssh.wait().expect("ssh ends");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut ssh.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("run: stopped: web was destroyed"),
        "{stderr}"
    );
    assert!(processes_running("sleep 31340").is_empty());
}

/// Also `isolation: none`: the run is not sandboxed, and says so.
#[test]
fn a_run_past_the_time_limit_is_stopped_and_an_unsandboxed_run_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("nap.yaml");
    std::fs::write(&config, "run_timeout_secs: 1\n").expect("config");
    let config = config.to_str().expect("utf-8");
    let nap = Nap::start_with(&["--config", config, "--isolation", "none"]);
    let bob = nap.user("bob", "ed25519", false);
    bob.deploy(&bob.app_repo("web", &server_profile("")), "web");

    let output = bob.ssh_with_input(&["run", "web", "cat"], "plain\n");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, "plain\n");
    assert!(stderr.contains("this run is not sandboxed"), "{stderr}");

    let output = bob.ssh(&["run", "web", "echo begun; sleep 31339"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(124), "{stdout}{stderr}");
    assert_eq!(stdout, "begun\n");
    assert!(
        stderr.contains("run: stopped after 1s (the server's run_timeout_secs)"),
        "{stderr}"
    );
    assert!(processes_running("sleep 31339").is_empty());
    assert!(one_off_records(&nap.data).is_empty());
}
