//! Running one sandboxed command to its end: output streamed line by line, a time limit, and
//! the whole process group killed when the limit passes or the caller goes away.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nap_sandbox::{Policy, Sandbox};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;

/// How many of the last lines an error carries.
pub const LAST_LINES: usize = 20;

/// A line longer than this is passed on in pieces: an app printing without newlines must not
/// make the daemon buffer without bound.
const MAX_LINE: usize = 4096;

/// How long the processes of a killed build may take to be gone.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// What the indented output lines start with (Heroku's and Dokku's seven spaces).
pub const INDENT: &str = "       ";

/// The exit status the outer shell uses when it cannot join the caller's cgroup.
pub const CGROUP_JOIN_FAILED: i32 = 97;

/// Where one line of a build's output goes: to the pusher, already formatted.
pub type Sink<'a> = &'a mut (dyn FnMut(&str) + Send);

/// How a sandboxed command ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// It exited (with its code, or 128 + the signal that killed it).
    Exited {
        code: i32,
        first_line: Option<String>,
        last_lines: Vec<String>,
    },
    /// The time limit passed; every process of it has been killed.
    TimedOut { last_lines: Vec<String> },
}

/// Why a sandboxed command could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The policy or command is not one the sandbox takes.
    #[error(transparent)]
    Launch(#[from] nap_sandbox::LaunchError),
    /// The sandbox's process could not be started.
    #[error("cannot start the sandbox: {0}")]
    Spawn(#[source] std::io::Error),
    /// The outer shell could not join the memory cgroup the caller gave.
    #[error("cannot join the memory cgroup {}", cgroup.display())]
    CgroupJoin {
        /// The cgroup directory.
        cgroup: PathBuf,
    },
}

/// Kills the process group when dropped unless it has been reaped: the guard that makes a
/// vanished caller (a dropped future) leave no process behind.
struct GroupGuard {
    child: Option<Child>,
    pgid: i32,
}

impl GroupGuard {
    fn kill(&self) {
        // SIGKILL of the group kills bwrap's init, and with it every process of the sandbox's
        // PID namespace, even one that left the group.
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.kill();
            let _ = child.start_kill();
        }
    }
}

/// Runs `command` under `policy`, in `cgroup` when given (a memory cgroup the caller made
/// and limited), passing each line of its output (stdout and stderr, in order) to `sink`
/// indented by [`INDENT`], for at most `time_limit`.
pub(crate) async fn run<S: AsRef<OsStr>>(
    sandbox: &Sandbox,
    policy: &Policy,
    command: &[S],
    cgroup: Option<&Path>,
    time_limit: Duration,
    sink: Sink<'_>,
) -> Result<Ended, StartError> {
    let launch = sandbox.launch(policy, command)?;
    // The cgroup first, while the shell's stderr still goes nowhere: a failure to join is
    // then told by its exit status alone, with no line of output. Then one pipe for both
    // streams, so the lines keep the order they were written in.
    let mut prelude = String::new();
    if cgroup.is_some() {
        prelude.push_str(&nap_sandbox::join_cgroup(1, CGROUP_JOIN_FAILED));
        prelude.push('\n');
    }
    prelude.push_str("exec 2>&1\n");
    let mut outer = launch.command(&prelude);
    if let Some(cgroup) = cgroup {
        outer.arg(cgroup);
    }
    outer
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = launch.spawn(&mut outer).map_err(StartError::Spawn)?;
    let Some(pgid) = child.id() else {
        return Err(StartError::Spawn(std::io::Error::other(
            "the sandbox ended before it had a pid",
        )));
    };
    let stdout = child.stdout.take();
    let mut guard = GroupGuard {
        child: Some(child),
        pgid: pgid as i32,
    };
    let mut lines = Lines::default();
    let mut timed_out = false;
    if let Some(stdout) = stdout {
        let mut reader = BufReader::new(stdout);
        let mut partial = Vec::new();
        timed_out =
            tokio::time::timeout(time_limit, lines.read_all(&mut reader, &mut partial, sink))
                .await
                .is_err();
        if timed_out {
            guard.kill();
            // The pipe closes when the last process of the sandbox is gone: wait for that
            // (bounded, in case the kernel is slow), so that no process outlives the return.
            let drained =
                tokio::time::timeout(KILL_GRACE, lines.read_all(&mut reader, &mut partial, sink))
                    .await;
            if drained.is_err() {
                tracing::warn!(pgid, "a killed build's output did not close in time");
            }
        }
    }
    let mut child = guard
        .child
        .take()
        .expect("the guard holds the child until here");
    // Every process of the sandbox shared the pipe; it is closed, so they are gone (or were
    // just killed). The group is killed once more before bwrap's outer process is reaped,
    // while its pid cannot have been reused yet, in case something inside closed its stdout
    // and lingers.
    guard.kill();
    let status = child.wait().await.map_err(StartError::Spawn)?;
    if timed_out {
        return Ok(Ended::TimedOut {
            last_lines: lines.last(),
        });
    }
    let code = exit_code(status);
    if cgroup.is_some() && code == CGROUP_JOIN_FAILED && lines.first.is_none() {
        return Err(StartError::CgroupJoin {
            cgroup: cgroup.map(Path::to_owned).unwrap_or_default(),
        });
    }
    Ok(Ended::Exited {
        code,
        first_line: lines.first.clone(),
        last_lines: lines.last(),
    })
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// The lines read so far: the first one and the last [`LAST_LINES`].
#[derive(Default)]
struct Lines {
    first: Option<String>,
    last: VecDeque<String>,
}

impl Lines {
    fn last(&self) -> Vec<String> {
        self.last.iter().cloned().collect()
    }

    /// Reads `reader` to its end; `line` holds a line read in part (kept across a cancel).
    async fn read_all<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut BufReader<R>,
        line: &mut Vec<u8>,
        sink: Sink<'_>,
    ) {
        loop {
            let buffer = match reader.fill_buf().await {
                Ok(buffer) => buffer,
                Err(error) => {
                    tracing::debug!(%error, "reading a build's output");
                    break;
                }
            };
            if buffer.is_empty() {
                break;
            }
            let room = MAX_LINE - line.len();
            let take = buffer.len().min(room);
            let (used, complete) = match buffer[..take].iter().position(|&b| b == b'\n') {
                Some(newline) => {
                    line.extend_from_slice(&buffer[..newline]);
                    (newline + 1, true)
                }
                None => {
                    line.extend_from_slice(&buffer[..take]);
                    (take, line.len() == MAX_LINE)
                }
            };
            reader.consume(used);
            if complete {
                self.push(line, sink);
                line.clear();
            }
        }
        if !line.is_empty() {
            self.push(line, sink);
            line.clear();
        }
    }

    fn push(&mut self, line: &[u8], sink: Sink<'_>) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        sink(&format!("{INDENT}{text}"));
        if self.first.is_none() {
            self.first = Some(text.to_owned());
        }
        if self.last.len() == LAST_LINES {
            self.last.pop_front();
        }
        self.last.push_back(text.to_owned());
    }
}
