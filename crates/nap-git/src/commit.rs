//! Writing a commit that changes one file of another commit's tree.

use std::path::PathBuf;

use crate::GitError;

use gix::bstr::ByteSlice;
use gix::objs::FindExt;
use gix::objs::tree::EntryKind;
use gix::refs::Target;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

use crate::open::Repo;
use crate::refs::{ReferenceError, full_ref_name};
use crate::resolve::ResolveError;

/// The error of [`Repo::commit_file`].
#[derive(Debug, thiserror::Error)]
pub enum CommitFileError {
    /// The repository was opened with a push quarantine; nap writes commits only to
    /// repositories opened without one.
    #[error("cannot write a commit to {repo}: it is open with a push quarantine")]
    Quarantined {
        /// The repository.
        repo: PathBuf,
    },
    /// The parent commit could not be resolved.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The path is empty, absolute, or has `.`, `..`, `.git` or empty components.
    #[error("'{path}' is not a relative path inside the tree")]
    InvalidPath {
        /// The path asked for.
        path: String,
    },
    /// The reference is not a valid full name under `refs/`.
    #[error("'{name}' is not a valid reference name (a full name under refs/ is needed)")]
    InvalidReference {
        /// The name asked for.
        name: String,
    },
    /// The name or email cannot be written into a commit (`<`, `>` or a line break in it,
    /// or an empty email).
    #[error("'{name} <{email}>' is not a valid author identity")]
    InvalidIdentity {
        /// The name given.
        name: String,
        /// The email given.
        email: String,
    },
    /// The path names a directory, symlink or submodule in the parent's tree.
    #[error("'{path}' in commit {commit} is a {kind}, not a file")]
    NotAFile {
        /// The parent commit, as asked for.
        commit: String,
        /// The path asked for.
        path: String,
        /// What it is instead ("directory", "symlink", "submodule").
        kind: &'static str,
    },
    /// A leading part of the path is not a directory in the parent's tree.
    #[error("cannot write '{path}' in commit {commit}: '{prefix}' is not a directory")]
    NotADirectory {
        /// The parent commit, as asked for.
        commit: String,
        /// The path asked for.
        path: String,
        /// The part of it that is a file, symlink or submodule.
        prefix: String,
    },
    /// Reading the parent's tree or writing the new blob, trees or commit failed.
    #[error("cannot write '{path}' on top of commit {commit}")]
    Write {
        /// The parent commit, as asked for.
        commit: String,
        /// The path asked for.
        path: String,
        /// Why.
        #[source]
        source: GitError,
    },
    /// The commit was written, but the reference could not be set to it.
    #[error("wrote commit {id} but cannot point {reference} at it")]
    Reference {
        /// The new commit.
        id: String,
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: ReferenceError,
    },
}

impl Repo {
    /// Write a commit whose tree is the tree of `parent` (anything
    /// [`Repo::resolve_commit`] accepts) with the file at `path` (`/`-separated, relative
    /// to the root; missing directories are created) set to `contents`, whose only parent
    /// is `parent`, authored and committed by `author` (name, email) now, with `message`;
    /// then create or overwrite the reference `reference` (a full name such as
    /// `refs/heads/master`) to point at it. Returns the new commit's id (40 hex digits).
    ///
    /// An existing file keeps its executable bit; a new file is not executable. Every
    /// other path of the tree stays exactly as it was. A directory, symlink or submodule
    /// at `path` is an error, and so is a file where `path` needs a directory.
    ///
    /// nap uses it for "similar apps": another app's release with the profile's command
    /// replaced. The repository must be opened without quarantine; the parent's objects
    /// must be in it (see [`copy_objects`](crate::copy_objects)).
    pub fn commit_file(
        &self,
        parent: &str,
        path: &str,
        contents: &[u8],
        message: &str,
        author: (&str, &str),
        reference: &str,
    ) -> Result<String, CommitFileError> {
        self.check_writable()
            .map_err(|repo| CommitFileError::Quarantined { repo })?;
        let components = path_components(path).ok_or_else(|| CommitFileError::InvalidPath {
            path: path.to_owned(),
        })?;
        let reference_name =
            full_ref_name(reference).ok_or_else(|| CommitFileError::InvalidReference {
                name: reference.to_owned(),
            })?;
        let (name, email) = author;
        let invalid_identity = |s: &str| s.contains(['<', '>', '\n', '\r', '\0']);
        if invalid_identity(name) || invalid_identity(email) || email.trim().is_empty() {
            return Err(CommitFileError::InvalidIdentity {
                name: name.to_owned(),
                email: email.to_owned(),
            });
        }
        let write_error = |source| CommitFileError::Write {
            commit: parent.to_owned(),
            path: path.to_owned(),
            source: GitError::new(source),
        };

        let parent_id = self.commit_id(parent)?;
        let tree_id = self
            .find_commit(parent, &parent_id, &mut Vec::new())?
            .tree();
        let kind = match self.existing_entry(parent, path, tree_id, &components)? {
            Some(EntryKind::BlobExecutable) => EntryKind::BlobExecutable,
            Some(EntryKind::Blob) | None => EntryKind::Blob,
            Some(EntryKind::Tree) => return Err(not_a_file(parent, path, "directory")),
            Some(EntryKind::Link) => return Err(not_a_file(parent, path, "symlink")),
            Some(EntryKind::Commit) => return Err(not_a_file(parent, path, "submodule")),
        };

        let blob = self
            .repo
            .write_blob(contents)
            .map_err(write_error)?
            .detach();
        let mut editor = self.repo.edit_tree(tree_id).map_err(write_error)?;
        editor.upsert(path, kind, blob).map_err(write_error)?;
        let new_tree = editor.write().map_err(write_error)?.detach();

        let signature = gix::actor::Signature {
            name: name.into(),
            email: email.into(),
            time: gix::date::Time::now_local_or_utc(),
        };
        let mut message = message.to_owned();
        if !message.ends_with('\n') {
            message.push('\n');
        }
        let summary = message.lines().next().unwrap_or_default().to_owned();
        let commit = gix::objs::Commit {
            tree: new_tree,
            parents: [parent_id].into_iter().collect(),
            author: signature.clone(),
            committer: signature.clone(),
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        let id = self
            .repo
            .write_object(&commit)
            .map_err(write_error)?
            .detach();

        let mut time = gix::date::parse::TimeBuf::default();
        self.repo
            .edit_references_as(
                Some(RefEdit {
                    change: Change::Update {
                        log: LogChange {
                            mode: RefLog::AndReference,
                            force_create_reflog: false,
                            message: format!("commit: {summary}").into(),
                        },
                        expected: PreviousValue::Any,
                        new: Target::Object(id),
                    },
                    name: reference_name,
                    deref: false,
                }),
                Some(signature.to_ref(&mut time)),
            )
            .map_err(|source| CommitFileError::Reference {
                id: id.to_string(),
                reference: reference.to_owned(),
                source: ReferenceError::Update {
                    name: reference.to_owned(),
                    repo: self.git_dir().to_owned(),
                    source: GitError::new(source),
                },
            })?;
        tracing::debug!(
            repo = %self.git_dir().display(),
            parent = %parent_id,
            path,
            commit = %id,
            reference,
            "committed file"
        );
        Ok(id.to_string())
    }

    /// The kind of the entry at `components` in the tree `tree_id`, or `None` if there is
    /// none; a non-directory on the way is an error.
    fn existing_entry(
        &self,
        commit: &str,
        path: &str,
        mut tree_id: gix::ObjectId,
        components: &[&str],
    ) -> Result<Option<EntryKind>, CommitFileError> {
        let mut buf = Vec::new();
        for (depth, name) in components.iter().enumerate() {
            let tree = self
                .objects
                .find_tree(&tree_id, &mut buf)
                .map_err(|source| CommitFileError::Write {
                    commit: commit.to_owned(),
                    path: path.to_owned(),
                    source: GitError::new(source),
                })?;
            let Some(entry) = tree
                .entries
                .iter()
                .find(|entry| entry.filename == name.as_bytes().as_bstr())
            else {
                return Ok(None);
            };
            let kind = entry.mode.kind();
            if depth + 1 == components.len() {
                return Ok(Some(kind));
            }
            if kind != EntryKind::Tree {
                return Err(CommitFileError::NotADirectory {
                    commit: commit.to_owned(),
                    path: path.to_owned(),
                    prefix: components[..=depth].join("/"),
                });
            }
            tree_id = entry.oid.to_owned();
        }
        Ok(None)
    }
}

fn not_a_file(commit: &str, path: &str, kind: &'static str) -> CommitFileError {
    CommitFileError::NotAFile {
        commit: commit.to_owned(),
        path: path.to_owned(),
        kind,
    }
}

/// The components of a relative path that may be written into a tree.
fn path_components(path: &str) -> Option<Vec<&str>> {
    let components: Vec<&str> = path.split('/').collect();
    let bad = |c: &&str| {
        c.is_empty()
            || *c == "."
            || *c == ".."
            || c.eq_ignore_ascii_case(".git")
            || c.contains('\0')
    };
    if components.iter().any(bad) {
        None
    } else {
        Some(components)
    }
}
