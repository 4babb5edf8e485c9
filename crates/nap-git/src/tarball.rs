//! A commit's tree as a `.tar.gz`: how cluster nodes get a release.

use std::io::Write;

use crate::GitError;

use crate::open::Repo;
use crate::resolve::ResolveError;

/// What [`Repo::write_tarball`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarballStats {
    /// Regular files and symlinks in the archive.
    pub files: usize,
    /// Submodules (gitlinks) in the tree, which are not in the archive.
    pub skipped_submodules: usize,
    /// Bytes written to the output: the size of the `.tar.gz`.
    pub compressed_bytes: u64,
}

/// The error of [`Repo::write_tarball`].
#[derive(Debug, thiserror::Error)]
pub enum TarballError {
    /// The commit could not be resolved.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The commit's tree could not be read, or has a path that is unsafe to extract
    /// (`..`, `.git`, and the like).
    #[error("cannot read the tree of commit {commit}")]
    Tree {
        /// The commit, as asked for.
        commit: String,
        /// Why.
        #[source]
        source: GitError,
    },
    /// Reading an object of the tree or writing the archive to the output failed.
    #[error("cannot write the tarball of commit {commit}")]
    Write {
        /// The commit, as asked for.
        commit: String,
        /// Why.
        #[source]
        source: GitError,
    },
}

impl Repo {
    /// Write the tree of `commit` (anything [`Repo::resolve_commit`] accepts) to `out` as a
    /// gzip-compressed tar archive, with the files at the archive's root (no prefix
    /// directory): regular files with mode 0644 or 0755, symlinks as symlinks. Submodules
    /// are left out (and counted), as in [`Repo::checkout`].
    ///
    /// The archive is deterministic: every entry's mtime (and the gzip header's) is the
    /// commit's committer time, owners are 0, so the same commit always gives the same
    /// bytes. Like `git archive`, `.gitattributes` conversions apply and `export-ignore`
    /// is honoured (`export-subst` is not). Paths that are unsafe to extract (`..`,
    /// `.git`, …) are refused, as by the checkout.
    ///
    /// Works through the push quarantine too (it reads objects like the checkout).
    /// Each file is held in memory while it is written; `out` is written in small pieces,
    /// so give it a buffer if it is slow per call.
    pub fn write_tarball(
        &self,
        commit: &str,
        out: impl std::io::Write,
    ) -> Result<TarballStats, TarballError> {
        let started = std::time::Instant::now();
        let commit_id = self.commit_id(commit)?;
        let mut buf = Vec::new();
        let commit_ref = self.find_commit(commit, &commit_id, &mut buf)?;
        let tree_id = commit_ref.tree();
        let mtime = commit_ref
            .time()
            .map_err(|source| ResolveError::Read {
                rev: commit.to_owned(),
                source: GitError::new(source),
            })?
            .seconds;

        let tree_error = |source| TarballError::Tree {
            commit: commit.to_owned(),
            source: GitError::new(source),
        };
        // The tree as an in-memory index: it validates every path like the checkout does,
        // and tells the attribute stack where the tree's `.gitattributes` files are.
        let validate = self
            .repo
            .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)
            .map_err(tree_error)?
            .validate;
        let index =
            gix::index::State::from_tree(&tree_id, &self.objects, validate).map_err(tree_error)?;
        let skipped_submodules = index
            .entries()
            .iter()
            .filter(|entry| entry.mode == gix::index::entry::Mode::COMMIT)
            .count();
        let attributes = self
            .repo
            .attributes_only(
                &index,
                gix::worktree::stack::state::attributes::Source::IdMapping,
            )
            .map_err(tree_error)?
            .detach();
        let (pipeline, mut attributes) = gix::filter::Pipeline::new(&self.repo, attributes)
            .map_err(tree_error)?
            .into_parts();

        let objects = self.objects.clone();
        let attribute_objects = self.objects.clone();
        let mut stream = gix::worktree::stream::from_tree(
            tree_id,
            objects,
            pipeline,
            move |path, mode, outcome| -> std::io::Result<()> {
                attributes
                    .at_entry(path, Some(mode.into()), &attribute_objects)?
                    .matching_attributes(outcome);
                Ok(())
            },
        );

        let mut files = 0;
        let write_error = |source| TarballError::Write {
            commit: commit.to_owned(),
            source: GitError::new(source),
        };
        let mut out = CountingWriter {
            inner: out,
            bytes: 0,
        };
        gix::worktree::archive::write_stream(
            &mut stream,
            |stream| {
                let entry = stream.next_entry()?;
                if entry.is_some() {
                    files += 1;
                }
                Ok(entry)
            },
            &mut out,
            gix::worktree::archive::Options {
                format: gix::worktree::archive::Format::TarGz {
                    compression_level: None,
                },
                tree_prefix: None,
                modification_time: mtime,
            },
        )
        .map_err(write_error)?;
        out.flush()
            .map_err(|error| write_error(gix::Error::from_error(error)))?;

        let stats = TarballStats {
            files,
            skipped_submodules,
            compressed_bytes: out.bytes,
        };
        tracing::debug!(
            commit,
            files = stats.files,
            compressed_bytes = stats.compressed_bytes,
            skipped_submodules,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "wrote tarball"
        );
        Ok(stats)
    }
}

/// Counts the bytes written through it.
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
