//! nap's SSH front door.
//!
//! **Architecture Invariant:** this is the only crate that knows russh. It
//! authenticates clients by public key, refuses everything but `exec`, and
//! hands each exec request to a [`Gate`] together with the channel's byte
//! streams. What a command means is the gate's business, not this crate's.

mod handler;
mod host_key;
mod quick_ack;
mod server;

pub use host_key::{HostKeyError, load_or_create_host_key};
pub use server::{Options, serve};

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

pub use nap_core::Caller;
/// The host key type.
pub use russh::keys::PrivateKey;
/// The public key type clients authenticate with.
pub use russh::keys::PublicKey;

/// The byte streams of one exec request.
pub struct Io<'a> {
    /// What the client sends; ends when the client sends EOF.
    pub stdin: Box<dyn AsyncRead + Send + Unpin + 'a>,
    /// Normal output.
    pub stdout: Box<dyn AsyncWrite + Send + Unpin + 'a>,
    /// Diagnostics; `ssh` prints them on the client's stderr.
    pub stderr: Box<dyn AsyncWrite + Send + Unpin + 'a>,
}

/// A boxed future, as the gate returns them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the SSH server asks the rest of nap.
pub trait Gate: Send + Sync + 'static {
    /// The registered user owning `key`, or `None` to refuse it. Called for
    /// every authentication attempt, so keys added at runtime count at once.
    fn identify(&self, key: &PublicKey) -> Option<Caller>;

    /// Runs one exec request for an authenticated caller and returns its exit
    /// status. `command` is the raw command line, never given to a shell.
    /// The future is dropped if the client goes away.
    fn exec<'a>(&'a self, caller: Caller, command: String, io: Io<'a>) -> BoxFuture<'a, u32>;
}
