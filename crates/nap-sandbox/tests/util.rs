//! Fixtures: a fake nap data directory outside `/tmp`, a probed sandbox, sandboxed runs that
//! are killed (group and all) when a test ends, and re-running a test as an unprivileged
//! user.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nap_sandbox::{Identity, Launch, Policy, Protected, Sandbox, SandboxOptions};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

/// How long any one step of a test may take before the test fails (and its processes die).
pub const STEP: Duration = Duration::from_secs(30);

/// Set in the environment of a test re-run as an unprivileged user.
const CHILD_VAR: &str = "NAP_SANDBOX_TEST_UNPRIVILEGED";

/// The uid (and gid) an unprivileged re-run gets: nobody's in particular.
pub const UNPRIVILEGED_UID: u32 = 61000;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether this process is a test re-run as an unprivileged user.
pub fn is_unprivileged_rerun() -> bool {
    std::env::var_os(CHILD_VAR).is_some()
}

/// Runs `body` the way this process may: as root with a per-app uid and then, re-running this
/// very test as [`UNPRIVILEGED_UID`], with the daemon's uid in a user namespace. Without root
/// only the second happens (in this process).
pub async fn in_both_modes<F, Fut>(test: &str, body: F)
where
    F: Fn(Fixture) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    in_both_modes_with(test, &[], body).await;
}

/// [`in_both_modes`], with variables for the unprivileged re-run.
pub async fn in_both_modes_with<F, Fut>(test: &str, child_env: &[(&str, &str)], body: F)
where
    F: Fn(Fixture) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if is_root() && !is_unprivileged_rerun() {
        eprintln!("{test}: as root, with a uid per app");
        body(Fixture::new().await).await;
        eprintln!("{test}: again as uid {UNPRIVILEGED_UID}, in a user namespace");
        rerun_unprivileged(test, child_env).await;
    } else {
        body(Fixture::new().await).await;
    }
}

/// Re-runs test `test` (`module::name`) of this binary as [`UNPRIVILEGED_UID`] and fails if it
/// fails there.
pub async fn rerun_unprivileged(test: &str, child_env: &[(&str, &str)]) {
    let mut wrapper: Vec<String> = [
        "setpriv",
        &format!("--reuid={UNPRIVILEGED_UID}"),
        &format!("--regid={UNPRIVILEGED_UID}"),
        "--clear-groups",
        "--",
    ]
    .map(str::to_owned)
    .to_vec();
    wrapper.extend(self_command(test));
    let output = Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .env(CHILD_VAR, "1")
        .env("HOME", "/nonexistent")
        .envs(child_env.iter().copied())
        .current_dir("/")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(STEP * 4, output)
        .await
        .expect("the unprivileged re-run finishes")
        .expect("setpriv runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} failed as uid {UNPRIVILEGED_UID} (or did not run):\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The command line that runs only test `test` of this binary, output shown.
pub fn self_command(test: &str) -> Vec<String> {
    let exe = std::env::current_exe().expect("the test binary has a path");
    vec![
        exe.display().to_string(),
        "--exact".to_owned(),
        test.to_owned(),
        "--nocapture".to_owned(),
        "--test-threads=1".to_owned(),
    ]
}

/// Declares a test that runs in both modes (see [`in_both_modes`]).
#[macro_export]
macro_rules! both_modes {
    ($(#[$meta:meta])* async fn $name:ident($fixture:ident: $fixture_type:ty) $body:block) => {
        $(#[$meta])*
        #[tokio::test]
        async fn $name() {
            $crate::util::in_both_modes(
                concat!(module_path!(), "::", stringify!($name)).trim_start_matches("tests::"),
                |$fixture: $fixture_type| async move $body,
            )
            .await;
        }
    };
}

/// A fake nap installation in a temp dir outside `/tmp` (the sandbox has a `/tmp` of its own,
/// so a data directory under the host's `/tmp` would be hidden whatever the sandbox binds):
/// a data directory with the secrets nap keeps, a listening control socket, one app's release
/// tree and storage, and a daemon home.
pub struct Fixture {
    pub root: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub home: PathBuf,
    pub control_socket: PathBuf,
    pub release: PathBuf,
    pub storage: PathBuf,
    sandbox: Option<Sandbox>,
    pub identity: Identity,
    _socket: UnixListener,
}

/// Files of the data directory, each holding its own name as a marker an app must never read.
pub const SECRET_FILES: [&str; 5] = [
    "users.json",
    "host_key",
    "secret",
    "apps/zz-other-app/config.json",
    "repos/zz-other-app.git/config",
];

/// The marker written into every secret file.
pub fn secret_marker(file: &str) -> String {
    format!("SECRET-OF-NAP {file}")
}

impl Fixture {
    pub async fn new() -> Fixture {
        let mut fixture = Fixture::new_unprobed();
        fixture.sandbox = Some(
            Sandbox::probe(&SandboxOptions {
                bwrap: None,
                ro_paths: Vec::new(),
                protected: Protected {
                    data_dir: fixture.data_dir.clone(),
                    home: Some(fixture.home.clone()),
                    control_socket: fixture.control_socket.clone(),
                },
                state_dir: fixture.state_dir(),
            })
            .await
            .expect("a sandbox can be made on this host"),
        );
        fixture
    }

    /// The fixture's files, without probing for a sandbox.
    pub fn new_unprobed() -> Fixture {
        let root = tempfile::Builder::new()
            .prefix("nap-sandbox-test.")
            .tempdir_in("/var/tmp")
            .expect("temp dir in /var/tmp");
        let data_dir = root.path().join("data");
        let home = root.path().join("home");
        for file in SECRET_FILES {
            write(&data_dir.join(file), &secret_marker(file));
        }
        write(&home.join(".ssh/id_ed25519"), &secret_marker("home key"));
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod data dir");
        let control_socket = data_dir.join("nap.sock");
        let socket = UnixListener::bind(&control_socket).expect("listen on nap.sock");

        let release = data_dir.join("apps/myapp/releases/v1");
        write(&release.join("app.txt"), "the app's own file\n");
        std::fs::set_permissions(&release, std::fs::Permissions::from_mode(0o755))
            .expect("chmod release");
        let identity = if is_root() {
            Identity::AppUser {
                uid: next_app_uid(),
                gid: next_app_uid(),
            }
        } else {
            Identity::DaemonUser
        };
        let storage = data_dir.join("storage/myapp");
        nap_sandbox::prepare_writable_dir(&storage, identity).expect("storage");

        Fixture {
            root,
            data_dir,
            home,
            control_socket,
            release,
            storage,
            sandbox: None,
            identity,
            _socket: socket,
        }
    }

    /// Where the fixture's sandbox keeps its state (its /etc copies).
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("sandbox")
    }

    /// The fixture's probed sandbox.
    pub fn sandbox(&self) -> &Sandbox {
        self.sandbox.as_ref().expect("a probed fixture")
    }

    /// The policy of the fixture's app, with `env`.
    pub fn policy(&self, env: &[(&str, &str)]) -> Policy {
        Policy {
            release: self.release.clone(),
            release_writable: false,
            storage: self.storage.clone(),
            cache: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            identity: self.identity,
        }
    }

    /// Runs `script` under `/bin/sh -c` in the sandbox of `policy` and waits for it.
    pub async fn sh_with(&self, policy: &Policy, script: &str) -> Finished {
        self.start(policy, &["/bin/sh", "-c", script])
            .await
            .finish()
            .await
    }

    /// Runs `script` in the fixture's sandbox with a small environment.
    pub async fn sh(&self, script: &str) -> Finished {
        self.sh_with(&self.policy(&[("PORT", "20000")]), script)
            .await
    }

    /// Starts `command` in the sandbox of `policy`.
    pub async fn start(&self, policy: &Policy, command: &[&str]) -> Running {
        self.start_after(policy, command, "", &[]).await
    }

    /// Starts `command` in the sandbox of `policy`, the outer shell first running `prelude`
    /// with `prelude_args` as its `$1`...
    pub async fn start_after(
        &self,
        policy: &Policy,
        command: &[&str],
        prelude: &str,
        prelude_args: &[&Path],
    ) -> Running {
        let launch = self
            .sandbox()
            .launch(policy, command)
            .expect("a valid policy");
        let mut outer = launch.command(prelude);
        outer.args(prelude_args);
        Running::spawn(&launch, outer)
    }
}

/// A uid for the next fixture's app, different for every fixture of every test process.
fn next_app_uid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    200_000 + (std::process::id() % 1000) * 50 + NEXT.fetch_add(1, Ordering::Relaxed) % 50
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A started sandbox. Its process group is SIGKILLed before bwrap's outer process is reaped
/// (so the group id cannot have been reused by then), also when the test panics.
pub struct Running {
    child: Option<Child>,
    pub pgid: i32,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

/// How a sandboxed run ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Asserts a zero exit status, showing the output otherwise.
    pub fn ok(self) -> Finished {
        assert!(self.status.success(), "sandboxed run failed: {self:#?}");
        self
    }

    /// The exit code (bwrap passes the app's on, 128 + N for a signal).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }
}

impl Running {
    pub fn spawn(launch: &Launch, mut command: Command) -> Running {
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = launch.spawn(&mut command).expect("spawn the sandbox");
        let pgid = child.id().expect("a pid") as i32;
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut buffer = Vec::new();
            let _ = stderr.read_to_end(&mut buffer).await;
            buffer
        });
        Running {
            child: Some(child),
            pgid,
            stdout,
            stderr: Some(stderr),
        }
    }

    /// The pid of bwrap's outer process (and the process group's id).
    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// The next line the sandbox prints (without the newline).
    pub async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(STEP, self.stdout.read_line(&mut line))
            .await
            .expect("a line in time")
            .expect("read stdout");
        assert!(read > 0, "the sandbox ended before printing a line");
        line.trim_end_matches('\n').to_owned()
    }

    /// Sends `signal` to the sandbox's process group.
    pub fn signal_group(&self, signal: Signal) {
        killpg(Pid::from_raw(self.pgid), signal).expect("signal the group");
    }

    /// Kills the sandbox's process group and waits for it as [`Running::finish`] does.
    pub async fn kill(self) -> Finished {
        self.signal_group(Signal::SIGKILL);
        self.finish().await
    }

    /// Waits until every process of the sandbox has closed its stdout and stderr (they all
    /// share them: that is, until they are gone), then kills what is left of the group and
    /// reaps bwrap's outer process.
    pub async fn finish(mut self) -> Finished {
        let mut rest = String::new();
        if tokio::time::timeout(STEP, self.stdout.read_to_string(&mut rest))
            .await
            .is_err()
        {
            let left: Vec<String> = host_processes()
                .into_iter()
                .filter(|p| p.pgrp == self.pgid)
                .map(|p| {
                    format!(
                        "{} {} {}",
                        p.pid,
                        p.state,
                        String::from_utf8_lossy(&p.cmdline)
                    )
                })
                .collect();
            panic!("the sandbox did not end in time; its group: {left:#?}");
        }
        let stderr = tokio::time::timeout(STEP, self.stderr.take().expect("once"))
            .await
            .expect("stderr ends in time")
            .expect("stderr reader");
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        let mut child = self.child.take().expect("once");
        let status = tokio::time::timeout(STEP, child.wait())
            .await
            .expect("bwrap is reaped in time")
            .expect("wait for bwrap");
        Finished {
            status,
            stdout: rest,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
            let _ = child.start_kill();
        }
    }
}

/// One process as `/proc` shows it to the test.
#[derive(Debug, Clone)]
pub struct HostProcess {
    pub pid: i32,
    pub state: char,
    pub pgrp: i32,
    pub pid_namespace: Option<PathBuf>,
    pub cmdline: Vec<u8>,
}

/// Every process of the host (as far as this process may look).
pub fn host_processes() -> Vec<HostProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = after.split_whitespace().collect();
            Some(HostProcess {
                pid,
                state: fields.first()?.chars().next()?,
                pgrp: fields.get(2)?.parse().ok()?,
                pid_namespace: std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok(),
                cmdline: std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default(),
            })
        })
        .collect()
}

/// The live (not zombie) processes of process group `pgid`.
pub fn live_group_members(pgid: i32) -> Vec<HostProcess> {
    host_processes()
        .into_iter()
        .filter(|p| p.pgrp == pgid && p.state != 'Z' && p.state != 'X')
        .collect()
}

/// The live processes in PID namespace `namespace`.
pub fn live_in_namespace(namespace: &Path) -> Vec<HostProcess> {
    host_processes()
        .into_iter()
        .filter(|p| p.pid_namespace.as_deref() == Some(namespace))
        .filter(|p| p.state != 'Z' && p.state != 'X')
        .collect()
}

/// A port below 32768 that nothing listens on right now.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 21000 + (std::process::id() % 200) * 50;
    for _ in 0..50 {
        let port = (base + NEXT.fetch_add(1, Ordering::Relaxed) % 50) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port near {base}");
}

/// `argv` as the words of a `/proc/PID/cmdline`.
pub fn cmdline_words(cmdline: &[u8]) -> Vec<OsString> {
    use std::os::unix::ffi::OsStringExt;
    cmdline
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| OsString::from_vec(w.to_vec()))
        .collect()
}
