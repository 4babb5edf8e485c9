//! The one error a profile can fail with, always with a place in the file.

use crate::MAX_PROFILE_BYTES;
use crate::memory::MemoryError;

/// Why a profile was rejected, and where.
///
/// Displays as one line: `<file>:<line>:<column>: <what>`, e.g.
/// `profile:2:8: scale: expected a whole number from 0 to 64, found 'lots'`.
/// Line and column are 1-based and always point into the file (errors that
/// concern the whole file point at 1:1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {kind}")]
pub struct ProfileError {
    /// The file name as given to [`crate::parse`], e.g. `profile`.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
    /// What is wrong.
    pub kind: ProfileErrorKind,
}

impl ProfileError {
    pub(crate) fn new(file: &str, at: Position, kind: ProfileErrorKind) -> Self {
        ProfileError {
            file: file.to_owned(),
            line: at.line,
            column: at.column,
            kind,
        }
    }

    /// The 1-based line of the problem.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The 1-based column of the problem.
    pub fn column(&self) -> u32 {
        self.column
    }

    /// The profile key the problem concerns, if it concerns one.
    pub fn key(&self) -> Option<&str> {
        match &self.kind {
            ProfileErrorKind::MissingCommand { .. } | ProfileErrorKind::Command(_) => {
                Some("command")
            }
            ProfileErrorKind::Scale { .. } => Some("scale"),
            ProfileErrorKind::Memory(_) | ProfileErrorKind::MemoryNotAScalar { .. } => {
                Some("memory")
            }
            ProfileErrorKind::Step { key, .. } => Some(key),
            ProfileErrorKind::Healthcheck { .. } => Some("healthcheck"),
            ProfileErrorKind::HealthcheckTimeout { .. } => Some("healthcheck_timeout"),
            ProfileErrorKind::IndentedKey { key, .. }
            | ProfileErrorKind::DuplicateKey { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// What is wrong with a profile. The `Display` of each is one line, without
/// the location (which [`ProfileError`] adds).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileErrorKind {
    /// The file is over [`MAX_PROFILE_BYTES`].
    #[error("profile is larger than {} KiB ({bytes} bytes)", MAX_PROFILE_BYTES / 1024)]
    TooLarge {
        /// The size of the file.
        bytes: usize,
    },
    /// The YAML parser rejected the file.
    #[error("malformed YAML: {message}")]
    Malformed {
        /// The parser's message, on one line.
        message: String,
    },
    /// The file is valid YAML but exceeds the parser budget (nesting, anchors, aliases).
    #[error("profile is too complex: {message}")]
    TooComplex {
        /// Which limit was reached.
        message: String,
    },
    /// The file holds no document, or only comments, or only `null`.
    #[error(
        "profile is empty; it needs at least 'command: <the shell command that starts one instance>'"
    )]
    Empty,
    /// The top level is a list or a scalar, not `key: value` lines.
    #[error("expected 'key: value' lines like 'command: ...', found {found}")]
    NotAMapping {
        /// What was found instead, e.g. `a list`.
        found: String,
    },
    /// A top-level key is a list or mapping.
    #[error("expected a key name like 'command', found {found}")]
    KeyNotAName {
        /// What was found instead.
        found: String,
    },
    /// A top-level key does not start at the beginning of its line.
    #[error("key '{key}' must start at the beginning of the line{}", if *.tab { " (YAML does not allow tabs for indentation)" } else { "" })]
    IndentedKey {
        /// The key.
        key: String,
        /// Whether a tab precedes the key.
        tab: bool,
    },
    /// A key appears twice.
    #[error("duplicate key '{key}' (first given on line {first_line})")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where it was first given.
        first_line: u32,
    },
    /// There is no `command` key.
    #[error(
        "missing required key 'command' (the shell command that starts one instance){}",
        match near_miss { Some(k) => format!("; is '{k}' a misspelling of it?"), None => String::new() }
    )]
    MissingCommand {
        /// An unknown key that looks like a misspelt `command`.
        near_miss: Option<String>,
    },
    /// `command` is not a usable shell command.
    #[error("command: {0}")]
    Command(CommandError),
    /// `scale` is not a whole number in range.
    #[error("scale: expected a whole number from 0 to {max_scale}, found {found}")]
    Scale {
        /// The configured maximum.
        max_scale: u32,
        /// What was found, e.g. `'lots'` or `a list`.
        found: String,
    },
    /// `memory` is a list or mapping.
    #[error("memory: expected a size like 256M (K, M or G), found {found}")]
    MemoryNotAScalar {
        /// What was found, e.g. `a list`.
        found: String,
    },
    /// `memory` is not a usable size.
    #[error("memory: {0}")]
    Memory(MemoryError),
    /// `build` or `release` is not a usable shell command.
    #[error("{key}: {}", describe_step(error))]
    Step {
        /// `build` or `release`.
        key: &'static str,
        /// What is wrong with it.
        error: CommandError,
    },
    /// `healthcheck` is not a path that can go into a request line.
    #[error(
        "healthcheck: expected an HTTP path like /healthz (starting with '/', visible ASCII only, at most {} bytes), found {found}",
        crate::MAX_HEALTHCHECK_BYTES
    )]
    Healthcheck {
        /// What was found.
        found: String,
    },
    /// `healthcheck_timeout` is not a number of seconds in range.
    #[error(
        "healthcheck_timeout: expected whole seconds from 1 to {} like 30 or 30s, found {found}",
        crate::MAX_HEALTHCHECK_TIMEOUT_SECS
    )]
    HealthcheckTimeout {
        /// What was found.
        found: String,
    },
    /// [`crate::replace_command`] could not produce a profile whose command
    /// reads back as the new one.
    #[error("command: could not rewrite the command so that it reads back unchanged")]
    ReplaceFailed,
}

/// Why a `command` value cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// Not a string: a list, a mapping, nothing, or only whitespace.
    #[error("expected the shell command that starts one instance, found {found}")]
    NotACommand {
        /// What was found, e.g. `a list` or `an empty string`.
        found: String,
    },
    /// Longer than [`crate::MAX_COMMAND_BYTES`].
    #[error(
        "is {bytes} bytes long; the limit is {} bytes",
        crate::MAX_COMMAND_BYTES
    )]
    TooLong {
        /// The length of the command.
        bytes: usize,
    },
    /// Contains a NUL character, which no shell command can hold.
    #[error("contains a NUL character, which a shell command cannot hold")]
    Nul,
}

/// A `build` or `release` command's problem, without `command`'s wording
/// ("starts one instance").
fn describe_step(error: &CommandError) -> String {
    match error {
        CommandError::NotACommand { found } => format!("expected a shell command, found {found}"),
        other => other.to_string(),
    }
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) line: u32,
    pub(crate) column: u32,
}

impl Position {
    /// The start of the file, for errors about the file as a whole.
    pub(crate) const START: Position = Position { line: 1, column: 1 };
}

/// Quotes a value found in the file for an error message: `'lots'`, with
/// control characters escaped (so the message stays on one line) and long
/// values shortened.
pub(crate) fn quote_found(value: &str) -> String {
    const MAX_CHARS: usize = 60;
    let mut out = String::from("'");
    for (count, c) in value.chars().enumerate() {
        if count == MAX_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}
