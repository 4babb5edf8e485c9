//! One-off processes (`run APP CMD...`) and the memory cgroups they (and builds) run in.
//!
//! A one-off process is spawned exactly like an instance (same sandbox, same storage and uid,
//! same cgroup join before bwrap starts, see `run.rs`) but it is no instance: it has no port,
//! no log file, no restarts, and nothing routes to it. Its stdin and stdout are one end of a
//! socket pair whose other end the caller holds ([`OneOff::io`]); its stderr is a pipe.
//!
//! It must die with its client, so [`OneOff`] kills every process of it (its process group,
//! and everything in its cgroup) when it is dropped, and a pid record in the supervisor's
//! state directory lets the next daemon kill what a crashed one left (as for instances).

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::{Child, ChildStderr};
use tokio::time::Instant;

use crate::cgroup::{Cgroup, Cgroups, JOIN_FAILED_STATUS, MemoryLimits};
use crate::group::Group;
use crate::orphans::{self, Record};
use crate::run::{self, RunIo};
use crate::supervisor::SpawnError;
use crate::{InstanceSpec, procfs};

/// Why a one-off cgroup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The name cannot name a directory of its own.
    #[error("cgroup name {0:?} is empty, has '/' or a NUL byte, or starts with '.'")]
    BadName(String),
    /// The directory could not be made.
    #[error("cannot create a cgroup in {}: {source}", parent.display())]
    Create {
        /// Where it was to be made.
        parent: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The limit could not be set (the new cgroup is removed again).
    #[error("cannot set the memory limit of {}: {source}", dir.display())]
    Limit {
        /// The cgroup.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// A memory cgroup of its own for a process that is no instance: a one-off `run`, a build.
///
/// A process joins it by writing itself into the cgroup before it execs the sandbox (see
/// [`OneOffCgroup::join_prelude`]), so bwrap and every process it starts are inside and the
/// limit holds for all of them. When it is dropped, whatever is left in it is
/// killed and the cgroup is removed.
#[derive(Debug)]
pub struct OneOffCgroup {
    cgroup: Cgroup,
}

impl OneOffCgroup {
    /// A `/bin/sh` prelude that moves the shell into the cgroup whose path is `$1` (exit
    /// status 97 when it cannot): what the sandbox's outer shell runs before it execs bwrap.
    pub fn join_prelude() -> String {
        nap_sandbox::join_cgroup(1, JOIN_FAILED_STATUS)
    }

    /// Makes cgroup `NAME` (or `NAME.N` when that is taken) next to the instances' cgroups,
    /// limited to `memory_limit` bytes (no swap) when one is given. `Ok(None)` when memory
    /// limits are not enforced here (no cgroups, no delegation, `cgroups: off`): the process
    /// then runs without, as instances do.
    pub fn create(
        limits: &MemoryLimits,
        name: &str,
        memory_limit: Option<u64>,
    ) -> Result<Option<OneOffCgroup>, CgroupError> {
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\0']) {
            return Err(CgroupError::BadName(name.to_owned()));
        }
        let MemoryLimits::Enforced { version, parent } = limits else {
            return Ok(None);
        };
        let cgroups = Cgroups::new(*version, parent.clone());
        let cgroup = cgroups.create(name).map_err(|source| CgroupError::Create {
            parent: parent.clone(),
            source,
        })?;
        // From here on, dropping it removes it.
        let one_off = OneOffCgroup { cgroup };
        if let Some(bytes) = memory_limit {
            one_off
                .cgroup
                .set_memory_limit(bytes)
                .map_err(|source| CgroupError::Limit {
                    dir: one_off.cgroup.dir().to_owned(),
                    source,
                })?;
        }
        Ok(Some(one_off))
    }

    /// The cgroup's directory: what [`OneOffCgroup::join_prelude`] takes as `$1`, and what
    /// nap-build's `BuildRequest.memory_cgroup` takes.
    pub fn path(&self) -> &Path {
        self.cgroup.dir()
    }

    /// Whether the kernel's OOM killer killed a process in it.
    pub fn out_of_memory(&self) -> bool {
        self.cgroup.oom_kills().is_some_and(|kills| kills > 0)
    }

    /// SIGKILL to every process in it, until none is left (a process may fork while it is
    /// being killed) or a second has passed; then the cgroup can be removed.
    fn kill_all(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            let pids = self.cgroup.pids();
            if pids.is_empty() || std::time::Instant::now() >= deadline {
                return;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for OneOffCgroup {
    fn drop(&mut self) {
        self.kill_all();
        // A killed process leaves the cgroup a moment after it is gone from cgroup.procs.
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            match self.cgroup.remove() {
                Ok(()) => return,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(error) => {
                    tracing::warn!(dir = %self.cgroup.dir().display(), %error, "cannot remove one-off cgroup");
                    return;
                }
            }
        }
    }
}

/// The streams of a one-off process.
#[derive(Debug)]
pub struct OneOffIo {
    /// Its stdin and stdout: read its output, write its input, and shut down the writing
    /// half for its end of file.
    pub socket: tokio::net::UnixStream,
    /// Its stderr.
    pub stderr: ChildStderr,
}

/// How a one-off process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneOffEnd {
    /// Its exit status as a shell reports it: the code, or 128+N for signal N.
    pub code: i32,
    /// Whether the OOM killer killed one of its processes.
    pub out_of_memory: bool,
}

/// A running one-off process. Dropping it kills every process of it.
#[derive(Debug)]
pub struct OneOff {
    child: Child,
    group: Group,
    io: Option<OneOffIo>,
    record_path: PathBuf,
    /// Declared last: dropped (processes killed, directory removed) after the rest.
    cgroup: Option<OneOffCgroup>,
    /// Whether its processes are known to be gone.
    over: bool,
}

impl OneOff {
    /// Spawns `spec`'s command as one-off number `serial` (which names its cgroup and pid
    /// record, `APP@run-SERIAL`).
    pub(crate) fn spawn(
        spec: &InstanceSpec,
        serial: u64,
        limits: &MemoryLimits,
        isolation: &crate::Isolation,
        state_dir: &Path,
    ) -> Result<OneOff, SpawnError> {
        let spawn_error = |source| SpawnError::Spawn {
            app: spec.app.clone(),
            index: 0,
            source,
        };
        crate::validate(spec).map_err(|reason| spawn_error(io::Error::other(reason)))?;
        let stem = format!("{}@run-{serial}", spec.app);
        let cgroup = match OneOffCgroup::create(limits, &stem, spec.memory) {
            Ok(cgroup) => cgroup,
            Err(error) => {
                tracing::warn!(%error, "cannot make a cgroup for the one-off process; running without memory limit");
                None
            }
        };
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(spawn_error)?;
        ours.set_nonblocking(true).map_err(spawn_error)?;
        let socket = tokio::net::UnixStream::from_std(ours).map_err(spawn_error)?;
        let mut child = run::spawn(
            spec,
            RunIo::OneOff(theirs.into()),
            cgroup.as_ref().map(|c| &c.cgroup),
            isolation,
        )?;
        let stderr = child.stderr.take().ok_or_else(|| {
            spawn_error(io::Error::other("the one-off process has no stderr pipe"))
        })?;
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| spawn_error(io::Error::other("the new process was already reaped")))?;
        let record_path = orphans::record_path(state_dir, &stem);
        let record = Record {
            app: spec.app.clone(),
            index: 0,
            release: spec.release.clone(),
            serial,
            pid: pgid,
            pgid,
            start_time: procfs::stat(pgid).map_or(0, |stat| stat.start_time),
            cgroup: cgroup.as_ref().map(|c| c.path().to_owned()),
        };
        if let Err(error) = orphans::write_record(&record_path, &record) {
            tracing::warn!(%error, path = %record_path.display(), "cannot write pid record");
        }
        Ok(OneOff {
            child,
            group: Group {
                pgid: Some(pgid),
                cgroup: cgroup.as_ref().map(|c| c.cgroup.clone()),
            },
            io: Some(OneOffIo { socket, stderr }),
            record_path,
            cgroup,
            over: false,
        })
    }

    /// Its streams (once; `None` after).
    pub fn io(&mut self) -> Option<OneOffIo> {
        self.io.take()
    }

    /// The pid of its first process, which is also its process group id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether its memory limit is enforced (it runs in a cgroup of its own).
    pub fn memory_enforced(&self) -> bool {
        self.cgroup.is_some()
    }

    /// Waits for it to exit, then kills whatever it left behind (a background child of an
    /// unsandboxed run; in the sandbox, the kernel already did when the app exited).
    pub async fn wait(&mut self) -> OneOffEnd {
        let status = self.child.wait().await.ok();
        self.group.kill_stragglers().await;
        self.group.wait_reaped(Instant::now() + REAP_WAIT).await;
        self.over = true;
        OneOffEnd {
            code: status.map_or(1, shell_code),
            out_of_memory: self
                .cgroup
                .as_ref()
                .is_some_and(OneOffCgroup::out_of_memory),
        }
    }

    /// Kills every process of it and waits until they are gone.
    pub async fn kill(&mut self) {
        self.group.signal(Signal::SIGKILL);
        let _ = self.child.wait().await;
        self.group.kill_stragglers().await;
        self.group.wait_reaped(Instant::now() + REAP_WAIT).await;
        self.over = true;
    }
}

impl Drop for OneOff {
    fn drop(&mut self) {
        if !self.over {
            // The client left: its processes go at once. The group id is still ours (its
            // leader is our unreaped child, or a member is alive), so this hits no one else.
            self.group.signal(Signal::SIGKILL);
            let _ = self.child.start_kill();
        }
        if let Err(error) = orphans::remove_record(&self.record_path) {
            tracing::warn!(%error, path = %self.record_path.display(), "cannot delete pid record");
        }
    }
}

/// How long a finished one-off waits for init to reap the zombies of its group.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// An exit status as a shell reports it.
fn shell_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CgroupMode;

    #[test]
    fn names_that_are_no_directory_of_their_own_are_refused() {
        let limits = MemoryLimits::Enforced {
            version: crate::CgroupVersion::V2,
            parent: PathBuf::from("/nonexistent"),
        };
        for name in ["", ".", "..", "a/b", "a\0b", ".hidden"] {
            assert!(
                matches!(
                    OneOffCgroup::create(&limits, name, None),
                    Err(CgroupError::BadName(_))
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn without_enforced_limits_there_is_no_cgroup() {
        let limits = MemoryLimits::NotEnforced {
            reason: "test".into(),
        };
        assert!(matches!(
            OneOffCgroup::create(&limits, "build-1", Some(1 << 20)),
            Ok(None)
        ));
    }

    /// Where cgroups work (CI runs as root): the limit is set, a process joins by the
    /// prelude, and dropping the cgroup kills it and removes the directory.
    #[tokio::test]
    async fn a_cgroup_is_limited_joined_and_removed_with_what_is_left_in_it() {
        let (_, limits) = Cgroups::detect(CgroupMode::Auto).await;
        if let MemoryLimits::NotEnforced { reason } = &limits {
            println!("memory cgroups do not work here ({reason}); nothing to try");
            return;
        }
        let name = format!("one-off-test-{}", std::process::id());
        let cgroup = OneOffCgroup::create(&limits, &name, Some(32 << 20))
            .expect("create")
            .expect("enforced");
        let dir = cgroup.path().to_owned();
        let limit_file = ["memory.max", "memory.limit_in_bytes"]
            .iter()
            .map(|file| dir.join(file))
            .find(|path| path.exists())
            .expect("a limit file");
        let limit = std::fs::read_to_string(&limit_file).expect("limit");
        assert_eq!(limit.trim(), (32u64 << 20).to_string());
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{}\nexec sleep 300", OneOffCgroup::join_prelude()))
            .arg("sh")
            .arg(&dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let pid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .expect("pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cgroup.cgroup.pids().contains(&pid) {
            assert!(Instant::now() < deadline, "the process never joined");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!cgroup.out_of_memory());
        drop(cgroup);
        let status = child.wait().await.expect("wait");
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
        assert!(!dir.exists(), "{} is removed", dir.display());
    }
}
