//! Setting and deleting references, and pointing `HEAD` at a branch.

use std::path::PathBuf;

use crate::GitError;

use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};

use crate::open::Repo;
use crate::resolve::ResolveError;

/// The error of [`Repo::set_reference`], [`Repo::delete_reference`] and [`Repo::set_head`].
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The repository was opened with a push quarantine, whose objects are not the
    /// repository's yet; git forbids ref updates while a push is quarantined.
    #[error("cannot change references of {repo}: it is open with a push quarantine")]
    Quarantined {
        /// The repository.
        repo: PathBuf,
    },
    /// The name is not a valid full reference name under `refs/` (or, for
    /// [`Repo::set_head`], `refs/heads/` + the branch is not one).
    #[error("'{name}' is not a valid reference name (a full name under refs/ is needed)")]
    InvalidName {
        /// The name asked for.
        name: String,
    },
    /// The commit could not be resolved.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The reference could not be written or deleted.
    #[error("cannot update reference {name} in {repo}")]
    Update {
        /// The reference.
        name: String,
        /// The repository.
        repo: PathBuf,
        /// Why.
        #[source]
        source: GitError,
    },
}

impl Repo {
    /// Create or overwrite the reference `name` (a full name such as `refs/heads/master`)
    /// to point at `commit` (anything [`Repo::resolve_commit`] accepts, resolved to its
    /// commit, which must exist in the repository).
    ///
    /// Needs a repository opened without quarantine, like every write of this crate.
    pub fn set_reference(&self, name: &str, commit: &str) -> Result<(), ReferenceError> {
        self.check_writable()
            .map_err(|repo| ReferenceError::Quarantined { repo })?;
        let full_name = full_ref_name(name).ok_or_else(|| ReferenceError::InvalidName {
            name: name.to_owned(),
        })?;
        let id = self.commit_id(commit)?;
        self.edit_ref(RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: format!("nap: set to {commit}").into(),
                },
                expected: PreviousValue::Any,
                new: Target::Object(id),
            },
            name: full_name,
            deref: false,
        })
    }

    /// Delete the reference `name` (a full name such as `refs/nap/fetch`) and its reflog.
    /// A reference that does not exist is not an error.
    ///
    /// Needs a repository opened without quarantine.
    pub fn delete_reference(&self, name: &str) -> Result<(), ReferenceError> {
        self.check_writable()
            .map_err(|repo| ReferenceError::Quarantined { repo })?;
        let full_name = full_ref_name(name).ok_or_else(|| ReferenceError::InvalidName {
            name: name.to_owned(),
        })?;
        let exists = self
            .repo
            .try_find_reference(full_name.as_ref())
            .map_err(|source| self.update_error(name, source))?
            .is_some();
        if !exists {
            return Ok(());
        }
        self.edit_ref(RefEdit {
            change: Change::Delete {
                expected: PreviousValue::Any,
                log: RefLog::AndReference,
            },
            name: full_name,
            deref: false,
        })
    }

    /// Point `HEAD` (symbolically) at `refs/heads/<branch>`, so that `git clone` of the
    /// repository checks out that branch. The branch need not exist yet.
    ///
    /// Needs a repository opened without quarantine.
    pub fn set_head(&self, branch: &str) -> Result<(), ReferenceError> {
        self.check_writable()
            .map_err(|repo| ReferenceError::Quarantined { repo })?;
        let target = full_ref_name(&format!("refs/heads/{branch}"))
            .filter(|_| !branch.is_empty())
            .ok_or_else(|| ReferenceError::InvalidName {
                name: branch.to_owned(),
            })?;
        let head = FullName::try_from("HEAD").map_err(|_| ReferenceError::InvalidName {
            name: "HEAD".to_owned(),
        })?;
        self.edit_ref(RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: format!("nap: HEAD to {branch}").into(),
                },
                expected: PreviousValue::Any,
                new: Target::Symbolic(target),
            },
            name: head,
            deref: false,
        })
    }

    /// Apply one reference edit, logging (where the repository keeps reflogs) as nap.
    pub(crate) fn edit_ref(&self, edit: RefEdit) -> Result<(), ReferenceError> {
        let name = edit.name.as_bstr().to_string();
        let nap = nap_signature();
        let mut time = gix::date::parse::TimeBuf::default();
        self.repo
            .edit_references_as(Some(edit), Some(nap.to_ref(&mut time)))
            .map_err(|source| self.update_error(&name, source))?;
        Ok(())
    }

    fn update_error(&self, name: &str, source: gix::Error) -> ReferenceError {
        ReferenceError::Update {
            name: name.to_owned(),
            repo: self.git_dir().to_owned(),
            source: GitError::new(source),
        }
    }

    /// `Err(git_dir)` if this repository was opened with a push quarantine: its object
    /// writes would bypass the quarantine, and git forbids ref updates during one.
    pub(crate) fn check_writable(&self) -> Result<(), PathBuf> {
        if self.objects.directories().len() > 1 {
            Err(self.git_dir().to_owned())
        } else {
            Ok(())
        }
    }
}

/// `name` as a full reference name under `refs/`, if it is a valid one.
pub(crate) fn full_ref_name(name: &str) -> Option<FullName> {
    if !name.starts_with("refs/") {
        return None;
    }
    FullName::try_from(name).ok()
}

/// Who nap's own reference updates are by, in reflogs.
fn nap_signature() -> gix::actor::Signature {
    gix::actor::Signature {
        name: "nap".into(),
        email: "nap@localhost".into(),
        time: gix::date::Time::now_local_or_utc(),
    }
}
