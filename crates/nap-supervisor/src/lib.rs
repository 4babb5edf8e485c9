//! The local runtime: supervises app instances as child processes.
//!
//! The daemon hands this crate an [`InstanceSpec`] per instance (`APP@I` of release `vN`) and
//! gets back an [`InstanceId`]. From then on the supervisor owns the process: it gives the
//! instance its own port, runs the command in its own process group (and, where the daemon may
//! create cgroups, its own memory cgroup), writes its output into a per-instance log file,
//! restarts it with exponential backoff when it exits, and kills the whole group when it is
//! stopped.
//!
//! All instance state lives in one actor task ([`Supervisor`] is the cheap, cloneable handle
//! that talks to it), so there are no locks around the instance table and no two requests can
//! race on one instance.
//!
//! Decisions worth knowing when using it:
//!
//! - An instance keeps its port across restarts; the port is released only by `stop`. The
//!   router's table stays right while an instance crash-loops.
//! - Every instance runs in the sandbox of `nap-sandbox` ([`Isolation::Sandbox`]), built from
//!   the spec's [`nap_runtime::LocalApp`]: its release read-only, its storage writable, its
//!   own uid when nap runs as root, its own processes only. The sandbox's outer shell enters
//!   the instance's cgroup before it execs bwrap, so the limit holds for every process of the
//!   sandbox (see `run.rs`). Inside, a tiny `/bin/sh` wrapper waits on SIGTERM for its command
//!   to die before it exits. A shell reports a command killed by a signal ("Terminated",
//!   "Killed"); such lines appear in the log.
//! - No variable of the daemon's environment reaches an instance: it gets `PATH`, `LANG`, the
//!   spec's variables and the runtime's own (`PORT`, `NAP_*`).
//! - [`Supervisor::wait_healthy`] applies the rule of [`nap_runtime::health`] to the process
//!   that `start` started: a restart since then makes the instance unhealthy. The port is tried
//!   from the start; where the instance listens instead is looked at (in `/proc`) at the end of
//!   the grace period and at the boot deadline.
//! - [`Local`] is this supervisor as a [`nap_runtime::Runtime`]; it also reads the instances'
//!   log files for `logs`, and publishes the addresses of the instances that are up whenever
//!   one changes state.
//! - Instances left running by a previous daemon are stopped, not adopted: their stdout and
//!   stderr pipes died with that daemon (see [`Supervisor::new`]).
//! - The daemon does not become a child subreaper: it could not reap adopted orphans without
//!   racing tokio's own reaping of its children. Zombies of killed grandchildren are init's to
//!   reap; `stop` waits (a few seconds at most) until init has done so.
//!
//! **Architecture Invariant:** this crate knows nothing about apps beyond the spec it is given:
//! no profiles, no releases on disk, no desired state. Bringing apps back to their desired state
//! after a daemon restart is the daemon's job; this crate only makes sure that the instances a
//! previous daemon left behind are gone (see [`Supervisor::new`]).
//!
//! **Architecture Invariant:** every process this crate starts is the leader of its own process
//! group, and every kill is a kill of that group (plus the members of its cgroup), never of one
//! pid.

mod actor;
mod cgroup;
mod group;
mod health;
mod local;
mod log_reader;
mod logs;
mod one_off;
mod orphans;
mod ports;
mod procfs;
mod run;
mod supervisor;

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use cgroup::{CgroupVersion, MemoryLimits};
pub use local::Local;
pub use nap_runtime::StartError;
pub use nap_runtime::{
    AppIds, HealthPolicy, Healthy, InstanceSpec, InstanceState, LocalApp, Unhealthy,
};
pub use one_off::{CgroupError, OneOff, OneOffCgroup, OneOffEnd, OneOffIo};
pub use supervisor::{NewError, SpawnError, StopError, Supervisor};

/// Whether the supervisor may put instances into memory cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupMode {
    /// Use cgroups (v1 or v2) when creating one works here; otherwise run without and report
    /// `limit_enforced: false`.
    #[default]
    Auto,
    /// Never create cgroups; memory limits are reported as not enforced.
    Off,
}

/// Whether instances run in a sandbox.
#[derive(Debug, Clone, Default)]
pub enum Isolation {
    /// Every instance runs in this sandbox (which the daemon probed at start): it sees its
    /// release read-only, its storage, a private `/tmp` and its own processes, and nothing of
    /// nap's data or of other apps.
    /// (Shared: every start reads it, and the config is cloned.)
    Sandbox(std::sync::Arc<nap_sandbox::Sandbox>),
    /// Instances are plain child processes with the daemon's uid (`isolation: none`): each
    /// can read and signal everything the daemon can.
    #[default]
    None,
}

impl Isolation {
    /// Whether instances run in a sandbox.
    pub fn is_sandboxed(&self) -> bool {
        matches!(self, Isolation::Sandbox(_))
    }
}

/// How the supervisor behaves. [`Config::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ports handed to instances, one per live instance.
    pub ports: Range<u16>,
    /// Logs go to `logs_dir/APP/APP@I.log`.
    pub logs_dir: PathBuf,
    /// Whether memory limits are enforced with cgroups.
    pub cgroups: CgroupMode,
    /// Time between SIGTERM and SIGKILL when stopping an instance.
    pub stop_grace: Duration,
    /// First restart delay after a crash.
    pub backoff_min: Duration,
    /// The restart delay doubles after each crash up to this.
    pub backoff_max: Duration,
    /// An instance that stayed up this long counts as started: its restart delay goes back to
    /// `backoff_min` and `list` shows it as [`InstanceState::Up`] even if nobody checked its
    /// health.
    pub stable_after: Duration,
    /// A log file is rotated (to `APP@I.log.1`, one old file kept) when it passes this size.
    pub log_max_bytes: u64,
    /// Where the pid records of running instances live (`APP@I-SERIAL.json`), so that the next
    /// daemon can stop what this one left behind.
    pub state_dir: PathBuf,
    /// Whether instances run in a sandbox.
    pub isolation: Isolation,
}

impl Config {
    /// A configuration with the default timings (stop grace 5 s, backoff 0.5 s doubling up to
    /// 30 s, stable after 10 s), 10 MiB log files, cgroups where they work, and no sandbox
    /// (the daemon gives it the sandbox it probed).
    pub fn new(ports: Range<u16>, logs_dir: PathBuf, state_dir: PathBuf) -> Config {
        Config {
            ports,
            logs_dir,
            cgroups: CgroupMode::Auto,
            stop_grace: Duration::from_secs(5),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            log_max_bytes: 10 * 1024 * 1024,
            state_dir,
            isolation: Isolation::None,
        }
    }
}

/// Refuses specs that would make bad paths or cannot be run.
fn validate(spec: &InstanceSpec) -> Result<(), String> {
    if spec.app.is_empty() || spec.app.starts_with('.') || spec.app.contains(['/', '\0', '@']) {
        return Err(format!(
            "app name {:?} cannot name a file (empty, or has '/', '@' or a leading '.')",
            spec.app
        ));
    }
    if spec.command.trim().is_empty() || spec.command.contains('\0') {
        return Err("the command is empty or contains a NUL byte".to_owned());
    }
    if spec.release.contains('\0') {
        return Err("the release contains a NUL byte".to_owned());
    }
    if let Some((key, _)) = spec
        .env
        .iter()
        .find(|(key, value)| key.is_empty() || key.contains(['=', '\0']) || value.contains('\0'))
    {
        return Err(format!("environment variable {key:?} cannot be set"));
    }
    if !spec.cwd.is_dir() {
        return Err(format!("{} is not a directory", spec.cwd.display()));
    }
    if !spec.local.storage.is_absolute() {
        return Err(format!(
            "the storage directory {:?} is not an absolute path",
            spec.local.storage
        ));
    }
    Ok(())
}

/// One started instance. Two releases of the same `APP@I` may run side by side during a
/// deploy; they have different ids (and the serial tells apart two starts of the same release).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId {
    app: String,
    index: u32,
    release: String,
    serial: u64,
}

impl InstanceId {
    /// The app's name.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The instance number.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The release, e.g. `v3`.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// A number unique among the instances this supervisor started.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// `APP@I-SERIAL`: the name of the instance's pid record and cgroup.
    fn file_stem(&self) -> String {
        format!("{}@{}-{}", self.app, self.index, self.serial)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{} ({} #{})",
            self.app, self.index, self.release, self.serial
        )
    }
}

/// What [`Supervisor::start`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The new instance.
    pub id: InstanceId,
    /// Its port (`PORT`); it keeps this port across restarts until it is stopped.
    pub port: u16,
    /// The pid of its first process, which is also its process group id.
    pub pid: u32,
}

/// One line of [`Supervisor::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// The instance.
    pub id: InstanceId,
    /// Same as `id.app()`.
    pub app: String,
    /// Same as `id.index()`.
    pub index: u32,
    /// Same as `id.release()`.
    pub release: String,
    /// Where it is in its life.
    pub state: InstanceState,
    /// Its port.
    pub port: u16,
    /// The pid (and process group) of the running process; `None` between runs.
    pub pid: Option<u32>,
    /// When the current (or last) process was started.
    pub started_at: SystemTime,
    /// How many times the process was restarted.
    pub restarts: u32,
    /// Bytes in use: from the cgroup when there is one, otherwise the resident set of the
    /// process group's processes.
    pub memory_used: Option<u64>,
    /// The limit from the spec.
    pub memory_limit: Option<u64>,
    /// Whether `memory_limit` is enforced by a cgroup.
    pub limit_enforced: bool,
}
