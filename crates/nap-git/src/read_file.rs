//! Reading one file of a commit without checking anything out.

use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;
use gix::objs::{Find, FindExt, FindHeader};

use crate::GitError;

use crate::open::Repo;
use crate::resolve::ResolveError;

/// The error of [`Repo::read_file`].
#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    /// The commit could not be resolved.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The path is empty, absolute, or has `.`, `..` or empty components.
    #[error("'{path}' is not a relative path inside the tree")]
    InvalidPath {
        /// The path asked for.
        path: String,
    },
    /// The path names a directory, symlink or submodule, not a regular file.
    #[error("'{path}' in commit {commit} is a {kind}, not a file")]
    NotAFile {
        /// The commit, as asked for.
        commit: String,
        /// The path asked for.
        path: String,
        /// What it is instead ("directory", "symlink", "submodule").
        kind: &'static str,
    },
    /// The file is larger than the caller allows.
    #[error("'{path}' in commit {commit} is {size} bytes, more than the {max_bytes} allowed")]
    TooLarge {
        /// The commit, as asked for.
        commit: String,
        /// The path asked for.
        path: String,
        /// The file's size.
        size: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// An object of the tree could not be read.
    #[error("cannot read '{path}' from commit {commit}")]
    Read {
        /// The commit, as asked for.
        commit: String,
        /// The path asked for.
        path: String,
        /// Why.
        #[source]
        source: GitError,
    },
    /// An object the tree refers to is missing from the repository.
    #[error("'{path}' in commit {commit} refers to object {id}, which is missing")]
    MissingObject {
        /// The commit, as asked for.
        commit: String,
        /// The path asked for.
        path: String,
        /// The missing object.
        id: String,
    },
}

impl Repo {
    /// The contents of the file at `path` (`/`-separated, relative to the root of the tree)
    /// in `commit` (anything [`Repo::resolve_commit`] accepts), or `None` if there is no
    /// such path. A directory, symlink or submodule at `path` is an error, and so is a
    /// file larger than `max_bytes`, checked before the file is read.
    pub fn read_file(
        &self,
        commit: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, ReadFileError> {
        let components: Vec<&str> = path.split('/').collect();
        if path.is_empty()
            || components
                .iter()
                .any(|c| c.is_empty() || *c == "." || *c == "..")
        {
            return Err(ReadFileError::InvalidPath {
                path: path.to_owned(),
            });
        }
        let read_error = |source| ReadFileError::Read {
            commit: commit.to_owned(),
            path: path.to_owned(),
            source: GitError::new(source),
        };
        let missing = |id: &gix::oid| ReadFileError::MissingObject {
            commit: commit.to_owned(),
            path: path.to_owned(),
            id: id.to_string(),
        };

        let commit_id = self.commit_id(commit)?;
        let mut buf = Vec::new();
        let mut tree_id = self.find_commit(commit, &commit_id, &mut buf)?.tree();
        let (last, parents) = components
            .split_last()
            .expect("split always yields one component");

        // Walk down the directories. `lookup_entry` in gix does the same, but hides
        // which object was missing and what kind the final entry is.
        for name in parents {
            let tree = self
                .objects
                .find_tree(&tree_id, &mut buf)
                .map_err(read_error)?;
            match tree.bisect_entry(name.as_bytes().as_bstr(), true) {
                Some(entry) if entry.mode.is_tree() => tree_id = gix::ObjectId::from(entry.oid),
                // A file where a directory was expected: that path does not exist either.
                _ => return Ok(None),
            }
        }
        let tree = self
            .objects
            .find_tree(&tree_id, &mut buf)
            .map_err(read_error)?;
        let Some(entry) = tree
            .entries
            .iter()
            .find(|entry| entry.filename == last.as_bytes())
            .map(|entry| (entry.mode.kind(), gix::ObjectId::from(entry.oid)))
        else {
            return Ok(None);
        };
        let (kind, blob_id) = entry;
        let not_a_file = |kind| ReadFileError::NotAFile {
            commit: commit.to_owned(),
            path: path.to_owned(),
            kind,
        };
        match kind {
            EntryKind::Blob | EntryKind::BlobExecutable => {}
            EntryKind::Tree => return Err(not_a_file("directory")),
            EntryKind::Link => return Err(not_a_file("symlink")),
            EntryKind::Commit => return Err(not_a_file("submodule")),
        }

        let header = self
            .objects
            .try_header(&blob_id)
            .map_err(read_error)?
            .ok_or_else(|| missing(&blob_id))?;
        if header.size > max_bytes {
            return Err(ReadFileError::TooLarge {
                commit: commit.to_owned(),
                path: path.to_owned(),
                size: header.size,
                max_bytes,
            });
        }
        let blob = self
            .objects
            .try_find(&blob_id, &mut buf)
            .map_err(read_error)?
            .ok_or_else(|| missing(&blob_id))?;
        Ok(Some(blob.data.to_vec()))
    }
}
