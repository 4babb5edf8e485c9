//! What one sandboxed process gets: its directories, its environment and its identity.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where the release tree appears inside the sandbox; also the working directory.
pub const APP_DIR: &str = "/app";
/// Where the app's persistent storage appears inside the sandbox (`$NAP_STORAGE`).
pub const STORAGE_DIR: &str = "/storage";
/// Where the build cache appears inside the sandbox (`$NAP_CACHE`), when there is one.
pub const CACHE_DIR: &str = "/cache";
/// The app's `HOME` unless the policy's environment names another: inside the private `/tmp`,
/// so that whatever a program keeps in its home is ephemeral, like the rest of `/tmp`.
pub const HOME_DIR: &str = "/tmp";
/// The `PATH` an app gets when the policy's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The user name the sandbox's own `/etc/passwd` gives the app's uid.
pub const APP_USER_NAME: &str = "app";

/// Environment variables the sandbox sets itself; a policy may not name them.
pub const STORAGE_VAR: &str = "NAP_STORAGE";
/// See [`STORAGE_VAR`].
pub const CACHE_VAR: &str = "NAP_CACHE";
/// Names with this prefix carry the environment across the uid switch (see `launch.rs`).
pub(crate) const RESERVED_PREFIX: &str = "NAP_SANDBOX_";

/// Whom the sandboxed process runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// nap runs as root: the app runs as its own uid and gid (never 0), with no supplementary
    /// groups, and the files it writes belong to that uid outside the sandbox too.
    AppUser {
        /// The app's uid.
        uid: u32,
        /// The app's gid.
        gid: u32,
    },
    /// nap runs as an ordinary user: the app keeps nap's uid, inside a user namespace of its
    /// own (with its own mount, PID, IPC and UTS namespaces, like every sandbox).
    DaemonUser,
}

/// One sandboxed process.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The release tree on the host; it appears at [`APP_DIR`], read-only unless
    /// `release_writable`, and is the working directory.
    pub release: PathBuf,
    /// Makes [`APP_DIR`] writable: for the build step, which compiles into the release tree.
    /// (With [`Identity::AppUser`] the tree must then belong to the app's uid.)
    pub release_writable: bool,
    /// The app's persistent storage on the host, writable at [`STORAGE_DIR`]. It must belong
    /// to the identity the app runs as (see [`crate::prepare_writable_dir`]).
    pub storage: PathBuf,
    /// A build cache on the host, writable at [`CACHE_DIR`].
    pub cache: Option<PathBuf>,
    /// The app's whole environment (`PORT`, `NAP_*`, config vars, `PATH`...): nothing else is
    /// inherited. The sandbox adds `NAP_STORAGE`, `NAP_CACHE` (with a cache), `HOME` and
    /// `PATH` (when missing) and, as any shell does, `PWD`.
    pub env: BTreeMap<String, String>,
    /// Whom the app runs as.
    pub identity: Identity,
}

/// Why a [`Policy`] (with its command) cannot be turned into a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A directory of the policy is not an absolute path.
    #[error("sandbox {what} {}: expected an absolute path", path.display())]
    NotAbsolute {
        /// `release tree`, `storage`, `cache`.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
    },
    /// A directory of the policy does not exist or is not a directory.
    #[error("sandbox {what} {}: expected an existing directory ({reason})", path.display())]
    NotADirectory {
        /// `release tree`, `storage`, `cache`.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// An environment variable's name is not a shell variable name.
    #[error(
        "environment variable {name:?}: expected a letter or '_' first, then letters, digits or '_'"
    )]
    BadVariableName {
        /// The name as given.
        name: String,
    },
    /// An environment variable's value holds a NUL byte, which no environment can carry.
    #[error("environment variable {name}: the value holds a NUL byte")]
    NulInValue {
        /// The variable's name.
        name: String,
    },
    /// The policy names a variable that the sandbox sets itself.
    #[error("environment variable {name} is set by the sandbox itself")]
    ReservedVariable {
        /// The variable's name.
        name: String,
    },
    /// There is no command to run.
    #[error("the sandboxed command is empty")]
    EmptyCommand,
    /// A word of the command holds a NUL byte.
    #[error("word {index} of the sandboxed command holds a NUL byte")]
    NulInCommand {
        /// Which word (0 is the program).
        index: usize,
    },
    /// An app would run as root.
    #[error("an app never runs as uid or gid 0 (got uid {uid}, gid {gid})")]
    RootIdentity {
        /// The uid given.
        uid: u32,
        /// The gid given.
        gid: u32,
    },
    /// nap runs as root but the policy asks for the daemon's own uid: the app would be root
    /// on the host's files.
    #[error("nap runs as root, so every app needs a uid of its own (Identity::AppUser)")]
    SharedUidAsRoot,
    /// The copies of the host's `/etc` files could not be made.
    #[error("cannot make the sandbox's /etc in {}: {source}", dir.display())]
    EtcCopies {
        /// The sandbox's state directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A per-app uid needs root to switch to it.
    #[error("a per-app uid needs nap to run as root, but it runs as uid {euid}")]
    AppUserWithoutRoot {
        /// The daemon's effective uid.
        euid: u32,
    },
}

impl Policy {
    /// The environment the app gets: the policy's, with what the sandbox adds.
    pub(crate) fn app_environment(&self) -> Result<Vec<(String, String)>, LaunchError> {
        for (name, value) in &self.env {
            if !is_variable_name(name) {
                return Err(LaunchError::BadVariableName { name: name.clone() });
            }
            if name == STORAGE_VAR || name == CACHE_VAR || name.starts_with(RESERVED_PREFIX) {
                return Err(LaunchError::ReservedVariable { name: name.clone() });
            }
            if value.contains('\0') {
                return Err(LaunchError::NulInValue { name: name.clone() });
            }
        }
        let mut env = self.env.clone();
        env.entry("HOME".to_owned())
            .or_insert_with(|| HOME_DIR.to_owned());
        env.entry("PATH".to_owned())
            .or_insert_with(|| DEFAULT_PATH.to_owned());
        env.insert(STORAGE_VAR.to_owned(), STORAGE_DIR.to_owned());
        if self.cache.is_some() {
            env.insert(CACHE_VAR.to_owned(), CACHE_DIR.to_owned());
        }
        Ok(env.into_iter().collect())
    }

    /// Checks the policy's directories: absolute, existing directories.
    pub(crate) fn check_directories(&self) -> Result<(), LaunchError> {
        check_directory("release tree", &self.release)?;
        check_directory("storage", &self.storage)?;
        if let Some(cache) = &self.cache {
            check_directory("cache", cache)?;
        }
        Ok(())
    }
}

fn check_directory(what: &'static str, path: &Path) -> Result<(), LaunchError> {
    if !path.is_absolute() {
        return Err(LaunchError::NotAbsolute {
            what,
            path: path.to_owned(),
        });
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(LaunchError::NotADirectory {
            what,
            path: path.to_owned(),
            reason: "not a directory".to_owned(),
        }),
        Err(error) => Err(LaunchError::NotADirectory {
            what,
            path: path.to_owned(),
            reason: error.to_string(),
        }),
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: what a shell can `export`, and what nap's config vars are.
pub(crate) fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Makes `dir` (and its missing parents) and gives it to the identity the app runs as: with
/// [`Identity::AppUser`] it is chowned to the app's uid and gid, and its mode is set to 0700
/// either way, so that no other app's uid can enter it. For an app's storage and build cache.
///
/// An existing directory keeps its contents (only the directory itself is chowned).
pub fn prepare_writable_dir(dir: &Path, identity: Identity) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if let Identity::AppUser { uid, gid } = identity {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(env: &[(&str, &str)]) -> Policy {
        Policy {
            release: PathBuf::from("/nonexistent/release"),
            release_writable: false,
            storage: PathBuf::from("/nonexistent/storage"),
            cache: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            identity: Identity::DaemonUser,
        }
    }

    #[test]
    fn the_sandbox_adds_its_own_variables_and_defaults() {
        let env = policy(&[("PORT", "20001"), ("HOME", "/storage")])
            .app_environment()
            .expect("valid");
        let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("PORT"), Some("20001"));
        assert_eq!(get("HOME"), Some("/storage"), "the policy's HOME wins");
        assert_eq!(get("PATH"), Some(DEFAULT_PATH));
        assert_eq!(get("NAP_STORAGE"), Some("/storage"));
        assert_eq!(get("NAP_CACHE"), None);
    }

    #[test]
    fn bad_variables_are_refused_with_their_name() {
        for (name, value, expected) in [
            ("1X", "v", "environment variable \"1X\": expected a letter"),
            ("A-B", "v", "environment variable \"A-B\": expected"),
            ("", "v", "environment variable \"\": expected"),
            (
                "NAP_STORAGE",
                "/etc",
                "NAP_STORAGE is set by the sandbox itself",
            ),
            ("NAP_CACHE", "/", "NAP_CACHE is set by the sandbox itself"),
            (
                "NAP_SANDBOX_RENAME",
                "x",
                "NAP_SANDBOX_RENAME is set by the sandbox",
            ),
            (
                "A",
                "a\0b",
                "environment variable A: the value holds a NUL byte",
            ),
        ] {
            let error = policy(&[(name, value)])
                .app_environment()
                .expect_err(name)
                .to_string();
            assert!(error.contains(expected), "{name:?}: {error}");
        }
    }
}
