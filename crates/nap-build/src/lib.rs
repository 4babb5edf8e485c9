//! The build step and the release phase of a deploy, as a library the deployer calls.
//!
//! [`build`] decides what a new release tree needs (the profile's `build:`, else
//! `requirements.txt` → a virtualenv at `/app/.venv` and `pip install -r`, else
//! `package.json` → `npm ci` or `npm install`, else nothing: see [`detect()`]), says so as
//! `-----> Building (python)` and runs it in the app's sandbox: the release tree and the
//! app's cache (`$NAP_CACHE`) writable, the app's config vars as its environment, a time
//! limit, and the caller's memory cgroup when there is one. Its output streams to a sink,
//! indented seven spaces; a failure is a [`BuildError`] carrying the last lines, after which
//! the caller deletes the half-made tree. The built tree is the release.
//!
//! Dependencies are cached per app by content hash ([`cache_key`]: the requirements or
//! package files and the runtime): when they are unchanged, the dependencies built last time
//! are copied into the new tree and pip or npm does not run (see `scripts.rs` for the cache's
//! layout and how it stays bounded).
//!
//! [`run_release_phase`] runs the profile's `release:` command in the same sandbox with the
//! tree read-only and the storage writable, and returns its exit status and last lines.
//!
//! Whatever it runs, it runs in one process group that is killed, whole, when the time limit
//! passes or when the caller drops the future.
//!
//! **Architecture Invariant:** this crate knows how to build an app's tree and nothing of
//! deploys, instances or backends; everything it runs, it runs through `nap-sandbox`.

mod build;
mod detect;
mod run;
mod scripts;

pub use build::{
    BuildError, BuildRequest, Built, DEFAULT_BUILD_TIME_LIMIT, DEFAULT_RELEASE_TIME_LIMIT,
    ReleasePhaseEnded, ReleasePhaseError, ReleasePhaseRequest, build, run_release_phase,
};
pub use detect::{Detected, NODE_LOCKFILES, PACKAGE_JSON, REQUIREMENTS_TXT, cache_key, detect};
pub use run::{CGROUP_JOIN_FAILED, INDENT, LAST_LINES, Sink, StartError};
pub use scripts::{TOOL_CACHE_LIMIT_KIB, reuse_message};
