//! One run of an instance: spawning its process, and watching it until it exits or is stopped.
//!
//! Every instance runs in the sandbox of `nap-sandbox` (unless the operator turned it off with
//! `isolation: none`). What the supervisor spawns is the sandbox's outer `/bin/sh`, which first
//! moves itself into the instance's cgroup (when there is one) and then execs bwrap, so that
//! bwrap, its init and every process of the app are in the cgroup, and no byte the app
//! allocates escapes the limit, without any code between fork and exec in the daemon:
//!
//! ```text
//! sh -c 'echo $$ > "$1/cgroup.procs" || exit 97; exec bwrap …'   (our child, group leader)
//!  └─ bwrap's init (pid 1 inside)
//!      └─ sh -c 'trap …; eval "set --; exec COMMAND"'             (pid 2 inside: the app)
//! ```
//!
//! Inside, the command runs under a small `/bin/sh` wrapper (`$2` is `exec ` for a simple
//! command, see [`execs`], and empty otherwise):
//!
//! ```sh
//! trap 'exit 143' TERM
//! eval "set --; $2$1"
//! ```
//!
//! - The trap makes the shell wait for its foreground command to die of the same SIGTERM and
//!   reap it before exiting, so the command's exit is its parent's to see. (The app itself
//!   gets the default SIGTERM disposition: a caught signal is reset by exec.)
//! - `eval` runs the command in the wrapper shell itself, with no positional parameters left.
//! - A simple command (`python3 app.py --port $PORT`) is exec'd: the app is pid 2 of the
//!   sandbox, with no shell left behind it. Lists, pipelines, `&&`, assignments and builtins
//!   keep the shell and the trap above.
//! - A SIGTERM to the group reaches the app at once; bwrap's outer process (our child) dies of
//!   it at once too, while the app may take its time: a stop therefore waits for the group and
//!   the cgroup to be empty, not only for our child (see [`supervise`]). When the app exits by
//!   itself, bwrap exits with its status (128+N for a signal), and whatever the app left
//!   behind is killed.
//!
//! With `isolation: none` the wrapper is the supervisor's child itself and joins the cgroup
//! first (`$2` is the cgroup, `$3` the `exec `):
//!
//! ```sh
//! trap 'exit 143' TERM
//! [ -z "$2" ] || echo $$ > "$2/cgroup.procs" || exit 97
//! eval "set --; $3$1"
//! ```
//!
//! Either way the instance's environment is built here and nothing of the daemon's is
//! inherited: `PATH` (the sandbox's default), `LANG=C.UTF-8`, the spec's variables, then
//! `PORT`, `NAP_APP`, `NAP_INSTANCE`, `NAP_RELEASE` and `NAP_STORAGE`.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use std::os::fd::OwnedFd;

use nap_sandbox::{AppStdin, Identity, Policy, Sandbox};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use crate::cgroup::{Cgroup, JOIN_FAILED_STATUS};
use crate::group::Group;
use crate::one_off::OneOffCgroup;
use crate::supervisor::SpawnError;
use crate::{InstanceSpec, Isolation};

/// The locale every instance gets unless its config says otherwise: UTF-8, which every
/// glibc has built in.
const LANG: &str = "C.UTF-8";

/// How long a run's output pipes get to reach end of file after its processes are gone (only
/// a process that escaped the group and the cgroup can hold them open longer).
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// How long a stop waits for the zombies of the group to be reaped: at once for those the
/// daemon adopted (see `group.rs`); init's to reap otherwise (if the daemon could not become
/// a subreaper), which some inits do only every few seconds.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// The wrapper of an unsandboxed instance (`isolation: none`), which joins the cgroup itself.
fn unsandboxed_wrapper() -> String {
    format!(
        "trap 'exit 143' TERM\n\
         [ -z \"$2\" ] || {join}\n\
         eval \"set --; $3$1\"\n",
        join = nap_sandbox::join_cgroup(2, JOIN_FAILED_STATUS)
    )
}

/// The wrapper inside the sandbox; the sandbox's outer shell has joined the cgroup.
const SANDBOXED_WRAPPER: &str = "trap 'exit 143' TERM\neval \"set --; $2$1\"\n";

/// Words that the shell runs itself: `exec WORD` would look for a program of that name.
const SHELL_WORDS: [&str; 45] = [
    "!", ".", ":", "[[", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done",
    "elif", "else", "esac", "eval", "exec", "exit", "export", "fg", "fi", "for", "getopts", "hash",
    "if", "jobs", "local", "read", "readonly", "return", "set", "shift", "source", "then", "times",
    "trap", "type", "ulimit", "umask", "unalias", "unset", "until", "wait", "while",
];

/// Whether `command` is one simple command that the wrapper can `exec`: no list, pipeline,
/// subshell, group, command substitution or background job, no leading assignment, and not a
/// shell builtin or keyword.
pub(crate) fn execs(command: &str) -> bool {
    const COMPOUND: [char; 9] = [';', '&', '|', '(', ')', '{', '}', '`', '\n'];
    let Some(first) = command.split_whitespace().next() else {
        return false;
    };
    // `"cd"` and `c\d` are still the builtin.
    let first: String = first
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '\\'))
        .collect();
    // `2>&1` and `<&3` duplicate descriptors; any other `&` is a list or a background job.
    let without_dups = command.replace(">&", ">").replace("<&", "<");
    !without_dups.contains(COMPOUND)
        && !first.contains('=')
        && !SHELL_WORDS.contains(&first.as_str())
}

/// The instance's whole environment: a sane `PATH` and locale, the spec's variables, then the
/// runtime's own (`PORT`, `NAP_APP`, `NAP_INSTANCE`, `NAP_RELEASE`), which win. Names with
/// the `NAP_` prefix are the runtime's: the spec's are dropped (the sandbox refuses the ones
/// it sets itself, such as `NAP_STORAGE`).
///
/// A one-off process (`port` is `None`) gets neither `PORT` nor `NAP_INSTANCE`: it is no
/// instance and nothing routes to it.
fn instance_env(spec: &InstanceSpec, port: Option<u16>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_owned(), nap_sandbox::DEFAULT_PATH.to_owned());
    env.insert("LANG".to_owned(), LANG.to_owned());
    for (key, value) in &spec.env {
        if !key.starts_with("NAP_") {
            env.insert(key.clone(), value.clone());
        }
    }
    if let Some(port) = port {
        env.insert("PORT".to_owned(), port.to_string());
        env.insert("NAP_INSTANCE".to_owned(), spec.index.to_string());
    }
    env.insert("NAP_APP".to_owned(), spec.app.clone());
    env.insert("NAP_RELEASE".to_owned(), spec.release.clone());
    env
}

/// Where a run's stdin comes from and its stdout goes.
pub(crate) enum RunIo {
    /// An instance: stdin from /dev/null, stdout piped.
    Instance {
        /// Its `PORT`.
        port: u16,
    },
    /// A one-off process: stdin and stdout are this socket (one end of a pair; the caller
    /// keeps the other), so that it reads its client's input and writes its output there.
    OneOff(OwnedFd),
}

impl RunIo {
    fn port(&self) -> Option<u16> {
        match self {
            RunIo::Instance { port } => Some(*port),
            RunIo::OneOff(_) => None,
        }
    }
}

/// Starts the instance's process: the leader of a new process group, stdin and stdout as
/// `stdio` says, stderr piped, in the sandbox unless isolation is off. The app's storage
/// directory is made (or kept) and given to the app's identity first.
pub(crate) fn spawn(
    spec: &InstanceSpec,
    stdio: RunIo,
    cgroup: Option<&Cgroup>,
    isolation: &Isolation,
) -> Result<Child, SpawnError> {
    match isolation {
        Isolation::Sandbox(sandbox) => spawn_sandboxed(sandbox, spec, stdio, cgroup),
        Isolation::None => spawn_unsandboxed(spec, stdio, cgroup),
    }
}

fn spawn_sandboxed(
    sandbox: &Sandbox,
    spec: &InstanceSpec,
    stdio: RunIo,
    cgroup: Option<&Cgroup>,
) -> Result<Child, SpawnError> {
    let identity = match (sandbox.runs_as_root(), spec.local.ids) {
        (false, _) => Identity::DaemonUser,
        (true, Some(ids)) => Identity::AppUser {
            uid: ids.uid,
            gid: ids.gid,
        },
        (true, None) => {
            return Err(SpawnError::NoAppUid {
                app: spec.app.clone(),
            });
        }
    };
    prepare_storage(spec, identity)?;
    let policy = Policy {
        release: spec.cwd.clone(),
        release_writable: false,
        storage: spec.local.storage.clone(),
        cache: None,
        env: instance_env(spec, stdio.port()),
        identity,
    };
    let exec = if execs(&spec.command) { "exec " } else { "" };
    let launch = sandbox
        .launch(
            &policy,
            &[
                "/bin/sh",
                "-c",
                SANDBOXED_WRAPPER,
                "sh",
                &spec.command,
                exec,
            ],
        )
        .map_err(|source| SpawnError::Sandbox {
            app: spec.app.clone(),
            index: spec.index,
            source,
        })?;
    let (app_stdin, stdout) = match stdio {
        RunIo::Instance { .. } => (AppStdin::Null, Stdio::piped()),
        RunIo::OneOff(socket) => (AppStdin::FromStdout, Stdio::from(socket)),
    };
    let mut command = match cgroup {
        Some(cgroup) => {
            let mut command = launch.command_with_stdin(&OneOffCgroup::join_prelude(), app_stdin);
            command.arg(cgroup.dir());
            command
        }
        None => launch.command_with_stdin("", app_stdin),
    };
    command
        .current_dir("/")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .process_group(0);
    launch
        .spawn(&mut command)
        .map_err(|source| SpawnError::Spawn {
            app: spec.app.clone(),
            index: spec.index,
            source,
        })
}

/// `isolation: none`: the command as a plain child with the daemon's uid, which can read and
/// signal everything the daemon can. Only the environment is the instance's own.
fn spawn_unsandboxed(
    spec: &InstanceSpec,
    stdio: RunIo,
    cgroup: Option<&Cgroup>,
) -> Result<Child, SpawnError> {
    prepare_storage(spec, Identity::DaemonUser)?;
    let spawn_error = |source| SpawnError::Spawn {
        app: spec.app.clone(),
        index: spec.index,
        source,
    };
    let mut env = instance_env(spec, stdio.port());
    let (stdin, stdout) = match stdio {
        RunIo::Instance { .. } => (Stdio::null(), Stdio::piped()),
        RunIo::OneOff(socket) => (
            Stdio::from(socket.try_clone().map_err(spawn_error)?),
            Stdio::from(socket),
        ),
    };
    env.entry("HOME".to_owned())
        .or_insert_with(|| nap_sandbox::HOME_DIR.to_owned());
    env.insert(
        nap_sandbox::STORAGE_VAR.to_owned(),
        spec.local.storage.display().to_string(),
    );
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(unsandboxed_wrapper())
        .arg("sh")
        .arg(&spec.command)
        .arg(cgroup.map(|c| c.dir().as_os_str()).unwrap_or_default())
        .arg(if execs(&spec.command) { "exec " } else { "" })
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(&env)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .process_group(0);
    command.spawn().map_err(spawn_error)
}

/// Makes the app's storage directory if it is missing and gives it to `identity` (mode
/// 0700); what is in it stays as it is.
fn prepare_storage(spec: &InstanceSpec, identity: Identity) -> Result<(), SpawnError> {
    nap_sandbox::prepare_writable_dir(&spec.local.storage, identity).map_err(|source| {
        SpawnError::Storage {
            app: spec.app.clone(),
            path: spec.local.storage.clone(),
            source,
        }
    })
}

/// How a run ended.
#[derive(Debug)]
pub(crate) struct RunEnd {
    /// `None` if waiting for the process failed (which should not happen).
    pub(crate) status: Option<ExitStatus>,
    /// Whether it ended because it was asked to stop.
    pub(crate) stopped: bool,
}

/// Waits for the run to end by itself or for a stop request, and makes sure that none of its
/// processes are left when it returns.
///
/// On a stop request the group gets SIGTERM, and SIGKILL after `stop_grace`; the function
/// also waits (up to [`REAP_WAIT`]) until every zombie of the group is reaped, so that
/// a stopped instance's process group no longer exists. When the leader exits by itself, the
/// rest of its group is killed at once, so the next run gets a free port.
pub(crate) async fn supervise(
    mut child: Child,
    group: Group,
    pumps: Vec<JoinHandle<()>>,
    stop: oneshot::Receiver<()>,
    stop_grace: Duration,
) -> RunEnd {
    let end = tokio::select! {
        status = child.wait() => {
            group.kill_stragglers().await;
            group.reap_adopted();
            RunEnd { status: status.ok(), stopped: false }
        }
        // A dropped sender means the same as a request: nobody is left to supervise this run.
        _ = stop => {
            let deadline = Instant::now() + stop_grace;
            group.signal(nix::sys::signal::Signal::SIGTERM);
            let status = match timeout(stop_grace, child.wait()).await {
                Ok(status) => status,
                Err(_elapsed) => {
                    tracing::info!(grace = ?stop_grace, "instance ignored SIGTERM, killing it");
                    group.signal(nix::sys::signal::Signal::SIGKILL);
                    child.wait().await
                }
            };
            if !group.wait_gone(deadline).await {
                group.kill_stragglers().await;
            }
            group.wait_reaped(Instant::now() + REAP_WAIT).await;
            RunEnd { status: status.ok(), stopped: true }
        }
    };
    let drain_deadline = Instant::now() + DRAIN_WAIT;
    for pump in pumps {
        let _ = tokio::time::timeout_at(drain_deadline, pump).await;
    }
    end
}

/// Says how a run ended, for the log and for health reports: `exited with status 1`,
/// `killed by SIGKILL`, `exited with status 137 (SIGKILL), out of memory (limit 64 MiB)`.
///
/// The process we wait for is the wrapper shell, which reports a command killed by signal N
/// as status 128+N; the signal's name is added for those.
pub(crate) fn describe_exit(
    status: Option<ExitStatus>,
    in_cgroup: bool,
    out_of_memory: bool,
    memory_limit: Option<u64>,
) -> String {
    let mut text = match status {
        None => "exited (status unknown)".to_owned(),
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => {
                let mut text = format!("exited with status {code}");
                if let Some(name) = code.checked_sub(128).and_then(signal_name) {
                    text.push_str(&format!(" ({name})"));
                } else if in_cgroup && code == JOIN_FAILED_STATUS {
                    text.push_str(" (could not enter its cgroup)");
                }
                text
            }
            (None, Some(signal)) => match signal_name(signal) {
                Some(name) => format!("killed by {name}"),
                None => format!("killed by signal {signal}"),
            },
            (None, None) => format!("ended ({status})"),
        },
    };
    if out_of_memory {
        text.push_str(", out of memory");
        if let Some(limit) = memory_limit {
            text.push_str(&format!(" (limit {})", human_bytes(limit)));
        }
    }
    text
}

fn signal_name(number: i32) -> Option<&'static str> {
    if number <= 0 {
        return None;
    }
    nix::sys::signal::Signal::try_from(number)
        .ok()
        .map(|signal| signal.as_str())
}

/// `64 MiB`, `1.5 GiB`, `512 B`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `500ms`, `2s`, `1.5s`, for log lines.
pub(crate) fn human_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_for_people() {
        let exited = |code: i32| Some(ExitStatus::from_raw(code << 8));
        let killed = |signal: i32| Some(ExitStatus::from_raw(signal));
        assert_eq!(
            describe_exit(exited(1), false, false, None),
            "exited with status 1"
        );
        assert_eq!(
            describe_exit(exited(137), true, true, Some(64 << 20)),
            "exited with status 137 (SIGKILL), out of memory (limit 64 MiB)"
        );
        assert_eq!(
            describe_exit(exited(97), true, false, None),
            "exited with status 97 (could not enter its cgroup)"
        );
        assert_eq!(
            describe_exit(exited(97), false, false, None),
            "exited with status 97"
        );
        assert_eq!(
            describe_exit(killed(9), false, false, None),
            "killed by SIGKILL"
        );
    }

    /// What the sandbox's outer shell runs to join the cgroup (`$1`) fails with the status
    /// that `describe_exit` explains.
    #[test]
    fn the_join_prelude_fails_with_the_status_that_is_described() {
        let prelude = OneOffCgroup::join_prelude();
        assert!(
            prelude.ends_with(&format!("exit {JOIN_FAILED_STATUS}")),
            "{prelude}"
        );
    }

    #[test]
    fn only_simple_commands_are_execd() {
        for simple in [
            "python3 server.py",
            "python3 -m http.server $PORT",
            "  gunicorn 'app:app' --bind 127.0.0.1:$PORT",
            "node index.js > /dev/null 2>&1",
            "./bin/web --name=web",
        ] {
            assert!(execs(simple), "{simple}");
        }
        for compound in [
            "",
            "   ",
            "echo hi; sleep 300",
            "cd web && python3 app.py",
            "a | b",
            "sleep 300 &",
            "sleep 300 >& /dev/null &",
            "(python3 app.py)",
            "{ python3 app.py; }",
            "python3 $(which app)",
            "python3 `which app`",
            "echo one\necho two",
            "FOO=bar python3 app.py",
            "exec python3 app.py",
            "cd web",
            "'cd' web",
            "\"exec\" python3 app.py",
            "if true; then sleep 1; fi",
            "while true",
            "! false",
        ] {
            assert!(!execs(compound), "{compound:?}");
        }
    }

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(human_duration(Duration::from_secs(2)), "2s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
    }
}
