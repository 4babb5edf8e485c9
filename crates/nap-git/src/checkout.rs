//! Writing a commit's tree out as plain files: a release directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::GitError;

use gix::objs::FindHeader;

use crate::open::Repo;
use crate::resolve::ResolveError;

/// What a checkout wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckoutStats {
    /// Regular files and symlinks written.
    pub files: usize,
    /// Bytes written, the sum of the files' sizes (a symlink counts its target's length).
    pub bytes: u64,
    /// Submodules (gitlinks) in the tree, which are not checked out.
    pub skipped_submodules: usize,
}

/// Limits, tuning and the interrupt flag of [`Repo::checkout_with`]. The default has no
/// limits and cannot be interrupted.
#[derive(Debug, Clone, Default)]
pub struct CheckoutOptions {
    /// Refuse a tree with more entries than this, before writing anything.
    pub max_files: Option<usize>,
    /// Refuse a tree whose blobs add up to more bytes than this, before writing anything.
    /// (Checked from the objects' headers, which costs a lookup per file.)
    pub max_bytes: Option<u64>,
    /// Worker threads; `None` uses every core.
    pub thread_limit: Option<usize>,
    /// Set to `true` (by another thread) to stop the checkout as soon as it can: it then
    /// fails with [`CheckoutError::Interrupted`] and leaves nothing behind. The daemon sets
    /// it when it shuts down in the middle of a deploy.
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// The error of [`Repo::checkout`].
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The commit could not be resolved.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The destination exists; a checkout never writes into an existing directory.
    #[error("cannot check out into {path}: it already exists")]
    DestinationExists {
        /// The destination.
        path: PathBuf,
    },
    /// The destination has no parent directory or file name.
    #[error("cannot check out into {path}: not a path to a new directory")]
    InvalidDestination {
        /// The destination.
        path: PathBuf,
    },
    /// A directory or file operation around the checkout failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done ("create", "move into place").
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The commit's tree could not be read, or has a path that is unsafe to write
    /// (`..`, `.git`, and the like).
    #[error("cannot read the tree of commit {commit}")]
    Tree {
        /// The commit, as asked for.
        commit: String,
        /// Why.
        #[source]
        source: GitError,
    },
    /// The tree has more files than allowed.
    #[error("commit {commit} has {files} files, more than the {max_files} allowed")]
    TooManyFiles {
        /// The commit, as asked for.
        commit: String,
        /// Files in its tree.
        files: usize,
        /// The limit.
        max_files: usize,
    },
    /// The tree's files add up to more bytes than allowed.
    #[error("commit {commit} has {bytes} bytes of files, more than the {max_bytes} allowed")]
    TooLarge {
        /// The commit, as asked for.
        commit: String,
        /// What its files add up to.
        bytes: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// The interrupt flag was set; nothing was left behind.
    #[error("the checkout of commit {commit} was interrupted")]
    Interrupted {
        /// The commit, as asked for.
        commit: String,
    },
    /// Writing the files failed.
    #[error("cannot check out commit {commit} into {path}")]
    Write {
        /// The commit, as asked for.
        commit: String,
        /// The destination.
        path: PathBuf,
        /// Why.
        #[source]
        source: GitError,
    },
    /// Two paths of the tree are the same file on this file system (a case-insensitive one).
    #[error("cannot check out commit {commit}: '{path}' collides with another path of the tree")]
    Collision {
        /// The commit, as asked for.
        commit: String,
        /// A path that collided.
        path: String,
    },
}

impl Repo {
    /// Write the tree of `commit` (anything [`Repo::resolve_commit`] accepts) into `dest`,
    /// which must not exist, as plain files: regular files with their executable bit,
    /// symlinks as symlinks; submodules are skipped and counted.
    ///
    /// The files are written into a staging directory next to `dest` and renamed into
    /// place at the end, so `dest` either does not exist or holds the complete tree; on
    /// error the staging directory is removed. `.gitattributes` conversions apply as in
    /// `git checkout`. Paths that could escape `dest` (`..`, `.git`, writing through a
    /// symlink) are refused by gitoxide's checkout, which nap keeps on.
    pub fn checkout(&self, commit: &str, dest: &Path) -> Result<CheckoutStats, CheckoutError> {
        self.checkout_with(commit, dest, &CheckoutOptions::default())
    }

    /// [`Repo::checkout`] with limits and tuning.
    pub fn checkout_with(
        &self,
        commit: &str,
        dest: &Path,
        options: &CheckoutOptions,
    ) -> Result<CheckoutStats, CheckoutError> {
        let span = tracing::debug_span!("checkout", commit, dest = %dest.display());
        let _enter = span.enter();
        let started = std::time::Instant::now();

        let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
            return Err(CheckoutError::InvalidDestination {
                path: dest.to_owned(),
            });
        };
        if dest.symlink_metadata().is_ok() {
            return Err(CheckoutError::DestinationExists {
                path: dest.to_owned(),
            });
        }
        let commit_id = self.commit_id(commit)?;
        let tree_id = self
            .find_commit(commit, &commit_id, &mut Vec::new())?
            .tree();

        let tree_error = |source| CheckoutError::Tree {
            commit: commit.to_owned(),
            source: GitError::new(source),
        };
        // Also pre-configured from the repository: `.gitattributes` from the tree
        // (`IdMapping`), filter drivers, and the path validation below.
        let mut checkout_options = self
            .repo
            .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)
            .map_err(tree_error)?;
        let mut index =
            gix::index::State::from_tree(&tree_id, &self.objects, checkout_options.validate)
                .map_err(tree_error)?;

        let mut skipped_submodules = 0;
        index.remove_entries(|_, _, entry| {
            let submodule = entry.mode == gix::index::entry::Mode::COMMIT;
            skipped_submodules += usize::from(submodule);
            submodule
        });
        self.check_limits(commit, &index, options)?;

        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        std::fs::create_dir_all(parent).map_err(|source| CheckoutError::Io {
            action: "create",
            path: parent.to_owned(),
            source,
        })?;
        let staging = Staging::create(parent, name)?;

        checkout_options.destination_is_initially_empty = true;
        checkout_options.overwrite_existing = false;
        checkout_options.keep_going = false;
        checkout_options.thread_limit = options.thread_limit;
        // A release directory is on the server's own file system; don't trust a
        // `core.symlinks`/`core.filemode` that a repository created elsewhere may carry.
        checkout_options.fs = gix::fs::Capabilities::default();

        let should_interrupt = options.interrupt.clone().unwrap_or_default();
        // gix's `Outcome::files_updated` leaves out symlinks; its progress counter does not.
        let files = Counter::default();
        let outcome = gix::worktree::state::checkout(
            &mut index,
            staging.path(),
            self.objects.clone(),
            &files,
            &gix::progress::Discard,
            &should_interrupt,
            checkout_options,
        )
        .map_err(|source| CheckoutError::Write {
            commit: commit.to_owned(),
            path: dest.to_owned(),
            source: GitError::new(source),
        })?;
        // gix stops early when interrupted but still answers `Ok`: the flag says it. The
        // staging directory goes with `staging` on the way out.
        if should_interrupt.load(Ordering::Relaxed) {
            return Err(CheckoutError::Interrupted {
                commit: commit.to_owned(),
            });
        }
        if let Some(collision) = outcome.collisions.first() {
            return Err(CheckoutError::Collision {
                commit: commit.to_owned(),
                path: collision.path.to_string(),
            });
        }
        if let Some(error) = outcome.errors.into_iter().next() {
            // Only reported with `keep_going`, which is off; handled for completeness.
            return Err(CheckoutError::Write {
                commit: commit.to_owned(),
                path: dest.join(error.path.to_string()),
                source: GitError::new(error.error),
            });
        }

        staging.rename_to(dest)?;
        let stats = CheckoutStats {
            files: files.0.load(Ordering::Relaxed),
            bytes: outcome.bytes_written,
            skipped_submodules,
        };
        tracing::debug!(
            files = stats.files,
            bytes = stats.bytes,
            skipped_submodules,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checked out"
        );
        Ok(stats)
    }

    fn check_limits(
        &self,
        commit: &str,
        index: &gix::index::State,
        options: &CheckoutOptions,
    ) -> Result<(), CheckoutError> {
        let files = index.entries().len();
        if let Some(max_files) = options.max_files
            && files > max_files
        {
            return Err(CheckoutError::TooManyFiles {
                commit: commit.to_owned(),
                files,
                max_files,
            });
        }
        if let Some(max_bytes) = options.max_bytes {
            // Every header is read even once the limit is passed, so that the refusal can
            // say how large the tree is; the file limit above bounds the work.
            let mut total: u64 = 0;
            for entry in index.entries() {
                let size = self
                    .objects
                    .try_header(&entry.id)
                    .map_err(|source| CheckoutError::Tree {
                        commit: commit.to_owned(),
                        source: GitError::new(source),
                    })?
                    .map_or(0, |header| header.size);
                total = total.saturating_add(size);
            }
            if total > max_bytes {
                return Err(CheckoutError::TooLarge {
                    commit: commit.to_owned(),
                    bytes: total,
                    max_bytes,
                });
            }
        }
        Ok(())
    }
}

/// A progress counter that only counts.
#[derive(Default)]
struct Counter(Arc<AtomicUsize>);

impl gix::progress::Count for Counter {
    fn set(&self, step: usize) {
        self.0.store(step, Ordering::Relaxed);
    }

    fn step(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn inc_by(&self, step: usize) {
        self.0.fetch_add(step, Ordering::Relaxed);
    }

    fn counter(&self) -> gix::progress::StepShared {
        Arc::clone(&self.0)
    }
}

/// The directory a checkout is written into, removed on drop unless renamed into place.
struct Staging {
    path: Option<PathBuf>,
}

impl Staging {
    /// Create `.NAME.staging-XXXX` in `parent`, with a suffix no one else uses.
    fn create(parent: &Path, name: &std::ffi::OsStr) -> Result<Self, CheckoutError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        loop {
            let suffix = format!(
                "{}-{nanos:08x}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let mut file_name = std::ffi::OsString::from(".");
            file_name.push(name);
            file_name.push(".staging-");
            file_name.push(suffix);
            let path = parent.join(file_name);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Staging { path: Some(path) }),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(CheckoutError::Io {
                        action: "create",
                        path,
                        source,
                    });
                }
            }
        }
    }

    fn path(&self) -> &Path {
        self.path
            .as_deref()
            .expect("present until renamed or dropped")
    }

    /// Move the finished tree to `dest`.
    ///
    /// `rename` would replace an empty directory that appeared at `dest` since the check
    /// at the start; pushes to one app are serialised, so nothing else creates it.
    fn rename_to(mut self, dest: &Path) -> Result<(), CheckoutError> {
        let path = self.path.take().expect("present until renamed or dropped");
        match std::fs::rename(&path, dest) {
            Ok(()) => Ok(()),
            Err(source) => {
                let _ = std::fs::remove_dir_all(&path);
                Err(CheckoutError::Io {
                    action: "move the checkout into place at",
                    path: dest.to_owned(),
                    source,
                })
            }
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(error) = std::fs::remove_dir_all(&path)
        {
            tracing::warn!(path = %path.display(), %error, "cannot remove checkout staging directory");
        }
    }
}
