//! The rows of the `--json` forms of `apps`, `ps` and `releases`: what the daemon prints and
//! what the web manager reads, declared once for both.
//!
//! Fields are written in the order they are declared. Reading is forgiving: a missing field
//! takes its default, so an older or newer daemon's rows still read.

use serde::{Deserialize, Serialize};

/// One row of `apps --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppRow {
    /// The app's name.
    pub name: String,
    /// Who owns it.
    pub owner: String,
    /// The running release, `v3`, if it was ever deployed.
    pub release: Option<String>,
    /// Instances up.
    pub up: u32,
    /// Instances wanted.
    pub desired: u32,
    /// Whether its instances are isolated (a sandbox, or systemd's on a cluster); `false`
    /// with `isolation: none`, where they can read nap's data.
    pub isolated: bool,
}

/// One row of `ps APP --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceRow {
    /// `APP@I`.
    pub instance: String,
    /// `vN`.
    pub release: String,
    /// `up`, `starting`, `crashed`, …
    pub state: String,
    /// The instance's own port.
    pub port: u16,
    /// The process id, when it runs on this machine.
    pub pid: Option<u32>,
    /// Where it runs, for people: `pid 1234`, or a cluster machine.
    pub location: String,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// How often it was restarted.
    pub restarts: u32,
    /// Bytes of memory in use, when known.
    pub memory_used: Option<u64>,
    /// The memory limit in bytes, if there is one.
    pub memory_limit: Option<u64>,
    /// Whether the limit is enforced (a cgroup could be made).
    pub limit_enforced: bool,
    /// Whether the instance is isolated (see [`AppRow::isolated`]).
    pub isolated: bool,
}

/// One row of `releases APP --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReleaseRow {
    /// N of vN.
    pub number: u32,
    /// The deployed commit, 40 hex digits.
    pub commit: String,
    /// Who deployed it.
    pub pusher: String,
    /// When, in seconds since the epoch.
    pub time: u64,
    /// `push`, `rollback to v2`, `similar to web`, …
    pub note: String,
    /// Whether this release is the one running.
    pub current: bool,
}
