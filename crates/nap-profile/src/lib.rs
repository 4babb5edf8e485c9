//! The app profile: parsing and validation.
//!
//! **Architecture Invariant:** this crate does no IO. It turns the text of the
//! `profile` file at the root of a pushed tree into a [`Profile`], or into one
//! [`ProfileError`] that names the file, line, column, key and what was
//! expected, so the push can be rejected before anything running changes.
//!
//! ```yaml
//! command: python3 -m http.server $PORT   # required; run with /bin/sh -c
//! scale: 3                                # instances; default 1; 0 allowed
//! memory: 256M                            # per instance; K/M/G like `docker -m`
//! build: make assets                      # optional; else nap detects the runtime
//! release: python3 manage.py migrate      # optional; once per deploy, before instances start
//! healthcheck: /healthz                   # optional; 2xx/3xx needed before old ones stop
//! healthcheck_timeout: 30s                # optional; how long each instance gets for it
//! ```
//!
//! The rules, in the order a reader of a rejected push would want them:
//!
//! - The file is at most [`MAX_PROFILE_BYTES`] and holds one YAML document
//!   whose top level is a mapping. Top-level keys start at the beginning of
//!   their line (so [`replace_command`] can rewrite the file line-wise), and
//!   appear once each: YAML says keys are unique, and a second `scale` is
//!   more likely a mistake than an override.
//! - `command` is required. It is the shell command that starts one instance.
//!   Any scalar is taken as written: `command: true` runs `true`, and
//!   `command: 5` runs `5` (which fails at run time, not here). It must not be
//!   empty or only whitespace, must not contain NUL (no shell command can),
//!   and is at most [`MAX_COMMAND_BYTES`]. Multi-line block scalars are kept
//!   as they are; `/bin/sh -c` runs them line by line.
//! - `scale` is a whole number from 0 to [`Limits::max_scale`], written in
//!   decimal digits (quoting is fine, `0x10`, `1_000`, `-1` and `1.5` are not).
//! - `memory` is a size, see [`parse_memory`]: from [`MIN_MEMORY_BYTES`] (4M,
//!   anything smaller cannot start a process) to [`MAX_MEMORY_BYTES`] (1T).
//! - `build` and `release` are shell commands with the same rules as
//!   `command` (run with `/bin/sh -c` in the release's tree): `build` once per
//!   new tree, before anything starts; `release` once per deploy, after the
//!   build and before the new instances start.
//! - `healthcheck` is an HTTP path that each new instance must answer with a
//!   2xx or 3xx status before the old instances stop: it starts with `/` and
//!   holds only visible ASCII (no spaces, no control characters: it goes
//!   into a request line as it is), at most [`MAX_HEALTHCHECK_BYTES`].
//!   `healthcheck_timeout` is how long each instance gets to pass it: whole
//!   seconds, `30` or `30s`, from 1 to [`MAX_HEALTHCHECK_TIMEOUT_SECS`]; given
//!   without `healthcheck` it has no effect, which is a warning.
//! - `scale`, `memory`, `build`, `release`, `healthcheck` and
//!   `healthcheck_timeout` given as `null`, `~` or nothing at all (`scale:`)
//!   mean "not given", exactly as if the key were absent: the deploy uses the
//!   default ([`DEFAULT_SCALE`] instances, no memory limit, the detected
//!   build, no release phase, no health path). An empty `command:` is an
//!   error, since there is no default command.
//! - Unknown keys are not errors: they become warnings that name the closest
//!   known key when one is close, and the deploy continues.
//!
//! Parsing is hardened against hostile input: the size cap comes first, then
//! serde-saphyr's budget bounds nesting, nodes, anchors and alias expansion
//! (a "billion laughs" file is rejected after a few thousand events).

mod command;
mod error;
mod memory;
mod parse;
mod raw;
mod replace;
mod suggest;

pub use command::MAX_COMMAND_BYTES;
pub use error::{CommandError, ProfileError, ProfileErrorKind};
pub use memory::{MAX_MEMORY_BYTES, MIN_MEMORY_BYTES, MemoryError, format_memory, parse_memory};
pub use parse::parse;
pub use replace::replace_command;

/// The largest profile accepted, in bytes (64 KiB). A real profile is three
/// lines; the cap only keeps hostile input from costing the server anything.
pub const MAX_PROFILE_BYTES: usize = 64 * 1024;

/// How many instances run when the profile does not say (`scale` absent or null).
pub const DEFAULT_SCALE: u32 = 1;

/// The default for [`Limits::max_scale`].
pub const DEFAULT_MAX_SCALE: u32 = 64;

/// The keys a profile knows, in the order the documentation lists them.
pub const KNOWN_KEYS: [&str; 7] = [
    "command",
    "scale",
    "memory",
    "build",
    "release",
    "healthcheck",
    "healthcheck_timeout",
];

/// The longest `healthcheck` path accepted, in bytes.
pub const MAX_HEALTHCHECK_BYTES: usize = 1024;

/// The largest `healthcheck_timeout`, in seconds (10 minutes).
pub const MAX_HEALTHCHECK_TIMEOUT_SECS: u32 = 600;

/// Server-configured bounds that a profile is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest `scale` a profile may ask for.
    pub max_scale: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_scale: DEFAULT_MAX_SCALE,
        }
    }
}

/// A validated profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The shell command that starts one instance, run with `/bin/sh -c`.
    pub command: String,
    /// How many instances to run; `None` when the profile does not say.
    pub scale: Option<u32>,
    /// The memory limit of one instance in bytes; `None` when the profile
    /// does not say (no limit).
    pub memory: Option<u64>,
    /// The shell command that builds a new release's tree; `None`: detect.
    pub build: Option<String>,
    /// The shell command run once per deploy before the new instances start.
    pub release: Option<String>,
    /// The HTTP path each new instance must answer with 2xx or 3xx.
    pub healthcheck: Option<String>,
    /// Seconds each new instance gets to pass `healthcheck`.
    pub healthcheck_timeout: Option<u32>,
}

impl Profile {
    /// The number of instances to run: `scale`, or [`DEFAULT_SCALE`] when not given.
    pub fn scale_or_default(&self) -> u32 {
        self.scale.unwrap_or(DEFAULT_SCALE)
    }
}

/// The result of [`parse`]: the profile and the warnings to show the pusher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The validated profile.
    pub profile: Profile,
    /// One line each, e.g. `profile:4:1: unknown key 'scael' (did you mean 'scale'?)`.
    pub warnings: Vec<String>,
}
