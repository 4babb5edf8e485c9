//! Integration tests: every property of the sandbox, checked with the real bwrap. Tests that
//! can run as root run twice: as root with a uid per app, and re-run as an unprivileged user
//! (the daemon's uid in a user namespace).

mod util;

mod cgroup;
mod environment;
mod filesystem;
mod identity;
mod namespaces;
mod network;
mod probe;
mod signals;
mod terminal;
mod visibility;
