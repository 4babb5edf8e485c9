//! Small batteries that several of nap's crates need and std lacks, kept in one place so that
//! each exists once:
//!
//! - [`random_hex`], [`random_bytes`]: unguessable tokens and seeds from the kernel.
//! - [`same_secret`]: comparing secrets in time that does not depend on where they differ.
//! - [`accept`]: one step of an accept loop that skips a client's failed connection, backs off
//!   when the process is out of file descriptors or memory, and ends only when the listener
//!   itself is broken.
//!
//! **Architecture Invariant:** this crate knows nothing of nap: no apps, users, SSH or HTTP.

mod accept;
mod secret;

pub use accept::{AcceptFailure, accept, classify};
pub use secret::{hex, random_bytes, random_hex, same_secret};
