//! What nap-git and nap-profile refuse, as the daemon passes it on, and the
//! way their blocking work runs off the async threads.

/// A repository or profile operation failed. The message is the library's own.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RepoError {
    #[error(transparent)]
    Open(#[from] nap_git::OpenError),
    #[error(transparent)]
    Resolve(#[from] nap_git::ResolveError),
    #[error(transparent)]
    Read(#[from] nap_git::ReadFileError),
    #[error(transparent)]
    Checkout(#[from] nap_git::CheckoutError),
    #[error(transparent)]
    Copy(#[from] nap_git::CopyError),
    #[error(transparent)]
    Commit(#[from] nap_git::CommitFileError),
    #[error(transparent)]
    Reference(#[from] nap_git::ReferenceError),
    #[error(transparent)]
    Tarball(#[from] nap_git::TarballError),
    #[error(transparent)]
    Profile(#[from] nap_profile::ProfileError),
    /// The commit has no `profile` at the root of its tree.
    #[error("the release has no profile")]
    NoProfile,
    /// The profile is not text.
    #[error("profile: expected UTF-8 text")]
    ProfileNotUtf8,
    /// The blocking task died (a panic).
    #[error("internal error: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs gix work off the async threads.
pub(crate) async fn blocking<T: Send + 'static, E: Into<RepoError> + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, RepoError> {
    tokio::task::spawn_blocking(work).await?.map_err(Into::into)
}
