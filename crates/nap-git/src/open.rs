//! Opening a repository, with or without git's push quarantine.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::GitError;

use crate::objects::Objects;

/// Where a push's objects are while the `pre-receive` hook runs.
///
/// `git receive-pack` writes the pushed objects into a temporary directory
/// (`objects/incoming-XXXX` or `objects/tmp_objdir-incoming-XXXX`) and runs the hook with
/// `GIT_OBJECT_DIRECTORY` pointing there and `GIT_ALTERNATE_OBJECT_DIRECTORIES` listing the
/// repository's real object directory. Only if the hook accepts the push are the objects
/// moved into the repository. gitoxide does not read those variables; [`open`] uses this
/// value instead, so the hook can read the commit it is asked to deploy.
///
/// The default value is "no quarantine": the repository's own objects only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quarantine {
    /// The directory holding the new objects (`GIT_OBJECT_DIRECTORY`), searched first.
    pub object_dir: Option<PathBuf>,
    /// Further object directories (`GIT_ALTERNATE_OBJECT_DIRECTORIES`), searched after the
    /// repository's own. The repository's own object directory may be listed; it is not
    /// opened twice.
    pub alternates: Vec<PathBuf>,
}

impl Quarantine {
    /// Build from the values of `GIT_OBJECT_DIRECTORY` and `GIT_ALTERNATE_OBJECT_DIRECTORIES`
    /// as git's `pre-receive` hook sees them (`None` for an unset variable).
    ///
    /// The alternates are `:`-separated; an entry that starts with `"` is C-quoted, which is
    /// how git passes a path that itself contains `:`. Empty values and entries are ignored.
    /// Relative paths stay relative here; [`open`] resolves them against the repository
    /// directory, which is the hook's working directory.
    pub fn from_env_values(object_dir: Option<&OsStr>, alternates: Option<&OsStr>) -> Self {
        Quarantine {
            object_dir: object_dir.filter(|dir| !dir.is_empty()).map(PathBuf::from),
            alternates: alternates
                .map(|list| parse_alternates(list.as_bytes()))
                .unwrap_or_default(),
        }
    }

    /// [`Quarantine::from_env_values`] with this process's environment.
    pub fn from_env() -> Self {
        let object_dir = std::env::var_os("GIT_OBJECT_DIRECTORY");
        let alternates = std::env::var_os("GIT_ALTERNATE_OBJECT_DIRECTORIES");
        Self::from_env_values(object_dir.as_deref(), alternates.as_deref())
    }

    /// Whether there is anything beyond the repository's own objects.
    pub fn is_empty(&self) -> bool {
        self.object_dir.is_none() && self.alternates.is_empty()
    }
}

/// Split git's alternates list like git's `parse_alt_odb_entry` does.
fn parse_alternates(mut list: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    while !list.is_empty() {
        let entry;
        if let Some((unquoted, rest)) = unquote_c_style(list) {
            entry = unquoted;
            // A quoted entry ends at the closing quote; git skips up to the next separator.
            list = match rest.iter().position(|&b| b == b':') {
                Some(sep) => &rest[sep + 1..],
                None => &[],
            };
        } else {
            let end = list.iter().position(|&b| b == b':').unwrap_or(list.len());
            entry = list[..end].to_vec();
            list = list.get(end + 1..).unwrap_or_default();
        }
        if !entry.is_empty() {
            out.push(PathBuf::from(OsStr::from_bytes(&entry)));
        }
    }
    out
}

/// Decode a C-quoted string at the start of `input` (`"…"` with backslash escapes).
/// Returns the decoded bytes and what follows the closing quote, or `None` if `input`
/// is not a well-formed quoted string (git then takes the entry literally).
fn unquote_c_style(input: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut rest = input.strip_prefix(b"\"")?;
    let mut out = Vec::new();
    loop {
        let (&byte, tail) = rest.split_first()?;
        rest = tail;
        match byte {
            b'"' => return Some((out, rest)),
            b'\\' => {
                let (&escape, tail) = rest.split_first()?;
                rest = tail;
                let decoded = match escape {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 0x0b,
                    b'\\' | b'"' => escape,
                    b'0'..=b'3' => {
                        // Three octal digits, the first already read.
                        let digits = [escape, *rest.first()?, *rest.get(1)?];
                        rest = &rest[2..];
                        let mut value: u8 = 0;
                        for digit in digits {
                            if !(b'0'..=b'7').contains(&digit) {
                                return None;
                            }
                            value = (value << 3) | (digit - b'0');
                        }
                        value
                    }
                    _ => return None,
                };
                out.push(decoded);
            }
            _ => out.push(byte),
        }
    }
}

/// The error of [`open`].
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path is not a git repository, or gitoxide could not read it.
    #[error("cannot open the git repository at {path}")]
    Open {
        /// The path that was asked for.
        path: PathBuf,
        /// Why.
        #[source]
        source: GitError,
    },
    /// The quarantine's object directory could not be opened.
    #[error("cannot open the object directory {path} of repository {repo}")]
    ObjectDir {
        /// The repository.
        repo: PathBuf,
        /// The object directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// An open repository: its references, configuration and every object directory it
/// should see (the push quarantine first, if any).
pub struct Repo {
    pub(crate) repo: gix::Repository,
    pub(crate) objects: Objects,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("git_dir", &self.repo.git_dir())
            .field("object_directories", &self.objects.directories())
            .finish()
    }
}

impl Repo {
    /// The repository directory (the bare repository itself).
    pub fn git_dir(&self) -> &Path {
        self.repo.git_dir()
    }

    /// The object directories searched for objects, in order.
    pub fn object_directories(&self) -> Vec<PathBuf> {
        self.objects.directories()
    }
}

/// Open the repository at `path` (a bare repository, or a work tree's `.git` parent),
/// seeing also the objects of `quarantine`.
///
/// The quarantine's directories become additional object sources in memory only: nothing
/// is written, in particular no `info/alternates` file, neither in the quarantine (git
/// would migrate it into the repository) nor in the repository. Relative directories are
/// resolved against `path`. An alternate that does not exist is skipped with a warning,
/// as git does; a missing quarantine directory is an error.
///
/// Only repository-local configuration is read (not the user's `~/.gitconfig` nor `GIT_*`
/// variables), and the repository is trusted whoever owns it: nap opens only the
/// repositories it created itself.
pub fn open(path: &Path, quarantine: &Quarantine) -> Result<Repo, OpenError> {
    let options = gix::open::Options::isolated().with(gix::sec::Trust::Full);
    let repo = gix::open_opts(path, options).map_err(|source| OpenError::Open {
        path: path.to_owned(),
        source: GitError::new(source),
    })?;
    let object_hash = repo.object_hash();
    let own_objects = repo.objects.clone().into_inner();
    let own_dir = own_objects.store_ref().path().to_owned();
    let own_dir_real = std::fs::canonicalize(&own_dir).unwrap_or_else(|_| own_dir.clone());

    let mut stores = Vec::new();
    let mut seen = vec![own_dir_real];
    if let Some(dir) = &quarantine.object_dir {
        let dir = path.join(dir);
        let store =
            Objects::open_store(&dir, object_hash).map_err(|source| OpenError::ObjectDir {
                repo: path.to_owned(),
                path: dir.clone(),
                source,
            })?;
        seen.push(std::fs::canonicalize(&dir).unwrap_or(dir));
        stores.push(store);
    }
    stores.push(own_objects);
    for alternate in &quarantine.alternates {
        let dir = path.join(alternate);
        let Ok(real) = std::fs::canonicalize(&dir) else {
            tracing::warn!(path = %dir.display(), "alternate object directory does not exist; skipped");
            continue;
        };
        if seen.contains(&real) {
            continue;
        }
        let store =
            Objects::open_store(&dir, object_hash).map_err(|source| OpenError::ObjectDir {
                repo: path.to_owned(),
                path: dir.clone(),
                source,
            })?;
        seen.push(real);
        stores.push(store);
    }
    let objects = Objects::new(stores);
    tracing::debug!(
        repo = %path.display(),
        object_directories = ?objects.directories(),
        "opened repository"
    );
    Ok(Repo { repo, objects })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(object_dir: Option<&str>, alternates: Option<&str>, expected: Quarantine) {
        let actual =
            Quarantine::from_env_values(object_dir.map(OsStr::new), alternates.map(OsStr::new));
        assert_eq!(actual, expected, "{object_dir:?} {alternates:?}");
    }

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn repo_can_move_to_another_thread() {
        // The daemon opens and checks out on blocking threads; `Repo` is `Send`
        // (thanks to gix's `parallel` feature) but not `Sync`.
        fn assert_send<T: Send>() {}
        assert_send::<Repo>();
    }

    #[test]
    fn quarantine_from_env_values() {
        check(None, None, Quarantine::default());
        check(Some(""), Some(""), Quarantine::default());
        check(
            Some("/r/objects/tmp_objdir-incoming-x"),
            Some("/r/objects"),
            Quarantine {
                object_dir: Some("/r/objects/tmp_objdir-incoming-x".into()),
                alternates: paths(&["/r/objects"]),
            },
        );
        check(
            None,
            Some("/a/objects::relative/objects:"),
            Quarantine {
                object_dir: None,
                alternates: paths(&["/a/objects", "relative/objects"]),
            },
        );
    }

    #[test]
    fn quoted_alternates_are_unquoted_like_git_does() {
        check(
            None,
            Some(r#""/with:colon/objects":/b/objects"#),
            Quarantine {
                object_dir: None,
                alternates: paths(&["/with:colon/objects", "/b/objects"]),
            },
        );
        check(
            None,
            Some(r#""/tab\there\\\"\303\244""#),
            Quarantine {
                object_dir: None,
                alternates: paths(&["/tab\there\\\"ä"]),
            },
        );
        // Not well-formed: taken literally, up to the separator.
        check(
            None,
            Some(r#""/unterminated:/b"#),
            Quarantine {
                object_dir: None,
                alternates: paths(&["\"/unterminated", "/b"]),
            },
        );
    }
}
