//! Everything nap does with git repositories, through gitoxide.
//!
//! **Architecture Invariant:** this is the only crate in the workspace that knows `gix`.
//! Its API speaks in paths, strings and plain structs, so no other crate has to follow
//! gitoxide's fast-moving types.
//!
//! What it does:
//! - [`init_bare`] creates the bare repository an app's pushes go to.
//! - [`open`] opens one, optionally with the push quarantine that `git receive-pack`
//!   hands its `pre-receive` hook (see [`Quarantine`]): the pushed objects live only in a
//!   temporary object directory until the hook accepts the push.
//! - [`Repo::resolve_commit`], [`Repo::read_file`] and [`Repo::checkout`] read the pushed
//!   commit, its `profile`, and write its tree out as a release directory.
//! - [`Repo::write_tarball`] writes a commit's tree as a `.tar.gz`, which is how cluster
//!   nodes fetch a release.
//! - [`copy_objects`], [`Repo::commit_file`], [`Repo::set_reference`],
//!   [`Repo::delete_reference`] and [`Repo::set_head`] make new repositories out of
//!   existing ones: a "similar app" is another app's release with one file changed.
//!   These write, so they need a repository opened without quarantine.
//!
//! `git receive-pack` and `git upload-pack` themselves come from the system git:
//! gitoxide has no server side.

mod checkout;
mod commit;
mod copy;
mod init;
mod objects;
mod open;
mod read_file;
mod refs;
mod resolve;
mod tarball;

pub use checkout::{CheckoutError, CheckoutOptions, CheckoutStats};
pub use commit::CommitFileError;
pub use copy::{CopyError, CopyStats, copy_objects};
pub use init::{InitError, init_bare};
pub use open::{OpenError, Quarantine, Repo, open};
pub use read_file::ReadFileError;
pub use refs::ReferenceError;
pub use resolve::{CommitInfo, ResolveError};
pub use tarball::{TarballError, TarballStats};

/// An error from gitoxide, kept opaque: its message and its causes are gitoxide's, its type is
/// not, so that no caller depends on gix's types (**Architecture Invariant:** only this crate
/// knows gix).
#[derive(Debug)]
pub struct GitError(gix::Error);

impl GitError {
    pub(crate) fn new(error: gix::Error) -> GitError {
        GitError(error)
    }
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for GitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}
