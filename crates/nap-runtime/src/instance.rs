//! What an instance is, as every runtime sees it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

/// What to run for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// The app's name (a DNS label; it names directories, files and units).
    pub app: String,
    /// The instance number, 1..=scale (`NAP_INSTANCE`).
    pub index: u32,
    /// The release, e.g. `v3` (`NAP_RELEASE`).
    pub release: String,
    /// Run with `/bin/sh -c`.
    pub command: String,
    /// The release directory.
    pub cwd: PathBuf,
    /// Extra environment; `PORT` and the `NAP_*` variables are set by the runtime and win
    /// over entries here.
    pub env: Vec<(String, String)>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// The app's own corner of the machine that runs nap: what the local runtime sandboxes
    /// each instance with. A cluster runtime ignores it.
    pub local: LocalApp,
}

/// What sets one app apart from every other on the machine that runs nap itself: a
/// directory of its own and, when nap runs as root, a uid of its own. The local runtime
/// builds each instance's sandbox from it. A cluster runtime ignores it: its machines give
/// each app storage and a user of their own (systemd's `StateDirectory=` and `DynamicUser=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalApp {
    /// The app's persistent, writable directory on this machine (`$NAP_STORAGE`): kept across
    /// deploys, restarts, rollbacks and daemon restarts, removed with the app. The runtime
    /// makes it when it is missing and gives it to the app's identity.
    pub storage: PathBuf,
    /// The uid and gid the app runs as, when nap runs as root: one pair per app, never
    /// shared. `None` when nap runs as an ordinary user, whose uid every app then shares
    /// (each in a user namespace of its own).
    pub ids: Option<AppIds>,
}

/// An app's own uid and gid on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppIds {
    /// The uid.
    pub uid: u32,
    /// The gid.
    pub gid: u32,
}

/// One started instance, as the runtime names it. Two releases of the same `APP@I` may run
/// side by side during a deploy; they have different ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId {
    /// The app.
    pub app: String,
    /// The instance number.
    pub index: u32,
    /// The release, e.g. `v3`.
    pub release: String,
    /// What tells this start apart from others (a serial, a unit name).
    pub key: String,
}

/// What [`crate::Runtime::start`] returns.
#[derive(Debug, Clone)]
pub struct Started {
    /// The new instance.
    pub id: InstanceId,
    /// Where it serves.
    pub address: SocketAddr,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceState {
    /// Running, but neither a health check passed nor has it been up for long.
    Starting,
    /// Running and healthy (or up for long). Only these get traffic.
    Up,
    /// The last attempt to start the process failed (it could not be spawned at all); the next
    /// attempt waits for the backoff timer.
    Crashed,
    /// The process exited; it is restarted when the backoff timer fires.
    Backoff,
    /// A stop was requested; the instance disappears from the list once its processes are gone.
    Stopped,
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstanceState::Starting => "starting",
            InstanceState::Up => "up",
            InstanceState::Crashed => "crashed",
            InstanceState::Backoff => "backoff",
            InstanceState::Stopped => "stopped",
        })
    }
}

/// One instance, as `ps` shows it.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Its id.
    pub id: InstanceId,
    /// Where it is in its life.
    pub state: InstanceState,
    /// Where it serves.
    pub address: SocketAddr,
    /// Its process id, where it runs on this machine.
    pub pid: Option<u32>,
    /// Its process id (local) or machine (cluster), for people.
    pub location: String,
    /// When its current (or last) process started.
    pub started_at: SystemTime,
    /// Restarts so far.
    pub restarts: u32,
    /// Memory in use, if known.
    pub memory_used: Option<u64>,
    /// The limit it was given.
    pub memory_limit: Option<u64>,
    /// Whether the limit is enforced.
    pub limit_enforced: bool,
}
