//! Turning a commit id or ref name into a commit.

use gix::ObjectId;
use gix::objs::Find;

use crate::GitError;

use crate::open::Repo;

/// What nap shows and records about a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The full id, 40 lowercase hex digits.
    pub id: String,
    /// The first 7 hex digits of `id`, as in `-----> Checking out 3f2c1ab`.
    pub short: String,
    /// The first paragraph of the message, on one line.
    pub summary: String,
    /// The author as git prints it: `Name <email>`.
    pub author: String,
}

/// The error of [`Repo::resolve_commit`].
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The string is neither a full object id nor a valid ref name.
    #[error("'{rev}' is neither a full commit id nor a ref name")]
    InvalidRev {
        /// What was asked for.
        rev: String,
    },
    /// No ref of that name, or no object with that id.
    #[error("'{rev}' not found in the repository")]
    NotFound {
        /// What was asked for.
        rev: String,
    },
    /// It names an object that is not a commit (or a tag of one).
    #[error("'{rev}' is a {kind}, not a commit")]
    NotACommit {
        /// What was asked for.
        rev: String,
        /// The kind of object it names.
        kind: gix::objs::Kind,
    },
    /// Tags pointing at tags, deeper than anyone means it.
    #[error("'{rev}' is a chain of more than {MAX_TAG_DEPTH} tags")]
    TagChainTooLong {
        /// What was asked for.
        rev: String,
    },
    /// The repository could not be read, or an object in it is corrupt.
    #[error("cannot read '{rev}' from the repository")]
    Read {
        /// What was asked for.
        rev: String,
        /// Why.
        #[source]
        source: GitError,
    },
}

/// How many tags deep `resolve_commit` follows a tag to its commit.
const MAX_TAG_DEPTH: usize = 16;

impl Repo {
    /// Resolve `rev`, a full hex commit id or a ref name (`master`, `refs/heads/master`,
    /// `HEAD`; a tag is followed to its commit), to its commit.
    ///
    /// Short ids and revision expressions (`HEAD~1`) are not accepted: nap only resolves
    /// ids git gave it and branch names.
    pub fn resolve_commit(&self, rev: &str) -> Result<CommitInfo, ResolveError> {
        let id = self.commit_id(rev)?;
        let mut buf = Vec::new();
        let commit = self.find_commit(rev, &id, &mut buf)?;
        let read_error = |source| ResolveError::Read {
            rev: rev.to_owned(),
            source: GitError::new(source),
        };
        let author = commit.author().map_err(read_error)?.trim();
        let summary = commit.message().summary().to_string();
        let id = id.to_hex().to_string();
        Ok(CommitInfo {
            short: id[..7].to_owned(),
            id,
            summary,
            author: format!("{} <{}>", author.name, author.email),
        })
    }

    /// The id of the commit `rev` names, peeled through tags.
    pub(crate) fn commit_id(&self, rev: &str) -> Result<ObjectId, ResolveError> {
        let mut id = self.named_object(rev)?;
        let mut buf = Vec::new();
        for _ in 0..MAX_TAG_DEPTH {
            let data = self.find(rev, &id, &mut buf)?;
            match data.kind {
                gix::objs::Kind::Commit => return Ok(id),
                gix::objs::Kind::Tag => {
                    let tag = gix::objs::TagRef::from_bytes(data.data, data.object_hash).map_err(
                        |source| ResolveError::Read {
                            rev: rev.to_owned(),
                            source: GitError::new(source),
                        },
                    )?;
                    id = tag.target();
                }
                kind => {
                    return Err(ResolveError::NotACommit {
                        rev: rev.to_owned(),
                        kind,
                    });
                }
            }
        }
        Err(ResolveError::TagChainTooLong {
            rev: rev.to_owned(),
        })
    }

    /// The commit `id`, which `commit_id` found, decoded.
    pub(crate) fn find_commit<'a>(
        &self,
        rev: &str,
        id: &gix::oid,
        buf: &'a mut Vec<u8>,
    ) -> Result<gix::objs::CommitRef<'a>, ResolveError> {
        let data = self.find(rev, id, buf)?;
        if data.kind != gix::objs::Kind::Commit {
            return Err(ResolveError::NotACommit {
                rev: rev.to_owned(),
                kind: data.kind,
            });
        }
        gix::objs::CommitRef::from_bytes(data.data, data.object_hash).map_err(|source| {
            ResolveError::Read {
                rev: rev.to_owned(),
                source: GitError::new(source),
            }
        })
    }

    /// The object a full hex id or a ref name points at, unpeeled.
    fn named_object(&self, rev: &str) -> Result<ObjectId, ResolveError> {
        let hex_len = self.repo.object_hash().len_in_hex();
        if rev.len() == hex_len && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
            return ObjectId::from_hex(rev.as_bytes()).map_err(|_| ResolveError::InvalidRev {
                rev: rev.to_owned(),
            });
        }
        let name: &gix::refs::PartialNameRef =
            rev.try_into().map_err(|_| ResolveError::InvalidRev {
                rev: rev.to_owned(),
            })?;
        let reference =
            self.repo
                .try_find_reference(name)
                .map_err(|source| ResolveError::Read {
                    rev: rev.to_owned(),
                    source: GitError::new(source),
                })?;
        let Some(mut reference) = reference else {
            return Err(ResolveError::NotFound {
                rev: rev.to_owned(),
            });
        };
        let id = reference
            .follow_to_object()
            .map_err(|source| ResolveError::Read {
                rev: rev.to_owned(),
                source: GitError::new(source),
            })?;
        Ok(id.detach())
    }

    /// Look `id` up in every object directory; missing is `NotFound` for `rev`.
    pub(crate) fn find<'a>(
        &self,
        rev: &str,
        id: &gix::oid,
        buf: &'a mut Vec<u8>,
    ) -> Result<gix::objs::Data<'a>, ResolveError> {
        self.objects
            .try_find(id, buf)
            .map_err(|source| ResolveError::Read {
                rev: rev.to_owned(),
                source: GitError::new(source),
            })?
            .ok_or_else(|| ResolveError::NotFound {
                rev: rev.to_owned(),
            })
    }
}
