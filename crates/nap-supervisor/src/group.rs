//! Killing an instance: its process group plus whatever else is in its cgroup.
//!
//! The processes here are not (all) children of the daemon, so there is nothing to wait on
//! for them: "gone" is checked by reading `/proc` every few milliseconds, only inside the
//! bounded window of a stop.
//!
//! One of them always outlives its parent: bwrap's outer process exits as soon as its init
//! has reported the app's status, without waiting for init, which is left a zombie. The
//! supervisor makes the daemon a child subreaper ([`adopt_orphans`]), so such zombies become
//! the daemon's children, and a stop reaps them ([`Group::reap_adopted`]) instead of waiting
//! for the host's init, which some inits do only every few seconds. (When nap is a
//! container's first process, the orphans were always its own, and went unreaped.)

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::time::{Instant, sleep, sleep_until};

use crate::cgroup::Cgroup;
use crate::procfs;

/// How often `/proc` is read while waiting for processes to go.
const POLL: Duration = Duration::from_millis(20);

/// The processes of one instance.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// The process group id (the pid of the first process); `None` when only the cgroup is
    /// known to be the instance's.
    pub(crate) pgid: Option<i32>,
    pub(crate) cgroup: Option<Cgroup>,
}

impl Group {
    /// Sends `signal` to the process group and to every process of the cgroup (a process may
    /// have left the group with `setsid`, but it cannot leave the cgroup).
    pub(crate) fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid() {
            match killpg(pgid, signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(error) => tracing::warn!(%pgid, %error, "cannot signal process group"),
            }
        }
        if let Some(cgroup) = &self.cgroup {
            for pid in cgroup.pids() {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
    }

    /// The group id to signal. 0 and 1 (and negative numbers) never name an instance's group
    /// and would make `killpg` hit the daemon's own group or init.
    fn pgid(&self) -> Option<Pid> {
        self.pgid.filter(|&pgid| pgid > 1).map(Pid::from_raw)
    }

    fn live_group_members(&self) -> Vec<procfs::Stat> {
        match self.pgid() {
            Some(pgid) => procfs::live_group_members(pgid.as_raw()),
            None => Vec::new(),
        }
    }

    /// Whether a process of the instance is still running (zombies do not count: they have
    /// closed their sockets and files and only wait to be reaped).
    pub(crate) fn has_live_processes(&self) -> bool {
        !self.live_group_members().is_empty()
            || self.cgroup.as_ref().is_some_and(|c| !c.pids().is_empty())
    }

    /// The pids of the instance's live processes.
    pub(crate) fn live_pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .live_group_members()
            .iter()
            .map(|stat| stat.pid)
            .collect();
        if let Some(cgroup) = &self.cgroup {
            pids.extend(cgroup.pids());
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Waits until no process of the instance runs, or until `deadline`. Returns whether they
    /// are gone.
    pub(crate) async fn wait_gone(&self, deadline: Instant) -> bool {
        loop {
            if !self.has_live_processes() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep(POLL.min(deadline - Instant::now())).await;
        }
    }

    /// SIGKILL to whatever is left, and a short wait for the kernel to finish them.
    pub(crate) async fn kill_stragglers(&self) -> bool {
        if !self.has_live_processes() {
            return true;
        }
        self.signal(Signal::SIGKILL);
        let gone = self.wait_gone(Instant::now() + KILL_WAIT).await;
        if !gone {
            tracing::warn!(pgid = ?self.pgid, pids = ?self.live_pids(), "processes survived SIGKILL");
        }
        gone
    }

    /// Reaps the zombies of the group that the daemon adopted (bwrap's init, above all).
    /// Called only once the group's leader, our own child, has been waited for through its
    /// `Child`, so that no process someone else waits for is taken.
    pub(crate) fn reap_adopted(&self) {
        let Some(pgid) = self.pgid() else {
            return;
        };
        // A negative pid: any child of ours in that process group.
        let group = Pid::from_raw(-pgid.as_raw());
        while let Ok(status) = waitpid(group, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
    }

    /// Waits (up to `deadline`) until the process group has no members at all, zombies
    /// included, so that `killpg(pgid, 0)` fails with ESRCH. Zombies the daemon adopted are
    /// reaped here; those of a parent that died without the daemon adopting them are init's
    /// to reap, which some inits do only every few seconds.
    pub(crate) async fn wait_reaped(&self, deadline: Instant) {
        let Some(pgid) = self.pgid() else {
            return;
        };
        loop {
            self.reap_adopted();
            if killpg(pgid, None) == Err(Errno::ESRCH) {
                return;
            }
            if Instant::now() >= deadline {
                tracing::debug!(%pgid, "process group still has unreaped zombies");
                return;
            }
            sleep_until((Instant::now() + POLL).min(deadline)).await;
        }
    }
}

/// Makes this process a child subreaper: a process of an instance whose parent exits
/// becomes this process's child rather than init's, for [`Group::reap_adopted`] to reap.
/// Processes of anything else the daemon runs are waited for by their parents as before.
pub(crate) fn adopt_orphans() {
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(%error, "cannot become the reaper of the instances' orphans; stops wait for init to reap them");
    }
}

/// How long processes get to die after SIGKILL (only a process stuck in the kernel takes long).
const KILL_WAIT: Duration = Duration::from_secs(5);
