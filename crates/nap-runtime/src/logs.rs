//! Instance output, as [`crate::Runtime::logs`] hands it out.

use tokio::sync::mpsc;

/// Which lines to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRequest {
    /// The app.
    pub app: String,
    /// How many of the last lines (of all its instances together).
    pub lines: usize,
    /// Only this instance number, if given.
    pub instance: Option<u32>,
    /// Keep sending what the instances write from now on, until the receiver is dropped.
    pub follow: bool,
}

/// One line of an instance's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The instance number (`APP@I`).
    pub index: u32,
    /// The text, without its timestamp and newline.
    pub text: String,
}

/// The lines of a [`LogRequest`], oldest first; the channel closes when there are no more.
pub type LogLines = mpsc::Receiver<LogLine>;

/// Why [`crate::Runtime::logs`] has no lines to give.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// The app name cannot name anything the runtime keeps (`..`, a `/`).
    #[error("app name {app:?} cannot name an app's logs")]
    InvalidApp {
        /// The name as given.
        app: String,
    },
    /// The output is not kept where this runtime can read it; the hint says where it is
    /// (`journalctl -u … on each machine`).
    #[error("{hint}")]
    Elsewhere {
        /// Where to look, in the words the user should read.
        hint: String,
    },
    /// The backend failed; its error says how.
    #[error(transparent)]
    Backend(crate::BackendError),
}
