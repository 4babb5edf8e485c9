//! Names, identities and the one access rule of nap.
//!
//! **Architecture Invariant:** this crate does no IO. It decides what is a
//! valid app name, user name, host name or public key, and who may act on which app;
//! the daemon, the SSH front door and the web API all ask it, so the rules
//! live in exactly one place. It also holds the plain rows that the daemon's
//! `--json` answers and the web manager share ([`rows`]), and where a git URL
//! given to `deploy --from` points ([`remote`]).

mod access;
mod host;
mod keys;
mod names;
pub mod remote;
pub mod rows;

pub use access::{AccessError, Action, Caller, check_access};
pub use host::{HostName, HostNameError};
pub use keys::{KeyError, ParsedKey, from_public_key, parse_public_key};
pub use names::{AppName, NameError, UserName};
