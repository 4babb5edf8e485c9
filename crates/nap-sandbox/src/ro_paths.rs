//! The operator's extra read-only paths (`sandbox_ro_paths`), and the rules that keep them
//! from exposing nap itself.
//!
//! An operator who adds `/var/lib` to make a runtime under `/var/lib/python` visible would
//! also hand every app `/var/lib/nap`: the users, the host key, every other app's config. So a
//! path is refused when it is `/`, when it contains the data directory, the daemon's home or
//! the control socket, when it lies inside the data directory, or when it would replace
//! something the sandbox makes itself (`/tmp`, `/proc`, `/dev`, `/etc`, `/app`, ...). The
//! rules are checked on the path with its symlinks resolved, which is what bwrap binds.
//!
//! A path that does not exist is skipped with a warning rather than refused: one config file
//! often serves several hosts, and not every host has every runtime.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::policy::{APP_DIR, CACHE_DIR, STORAGE_DIR};

/// The paths an app must never see, whatever the operator configures.
#[derive(Debug, Clone)]
pub struct Protected {
    /// nap's data directory.
    pub data_dir: PathBuf,
    /// The daemon's home directory, if it has one.
    pub home: Option<PathBuf>,
    /// The control socket (normally inside the data directory, but it may be elsewhere).
    pub control_socket: PathBuf,
}

/// Sandbox paths that the sandbox makes itself: an operator's path may not be one of them or
/// contain one. The second field says whether a path *inside* it is refused too (`/etc/ssl`
/// may be added to what the sandbox shows of `/etc`; nothing may be added inside `/tmp`).
const SANDBOX_OWNED: [(&str, bool); 10] = [
    ("/tmp", true),
    ("/proc", true),
    ("/dev", true),
    (APP_DIR, true),
    (STORAGE_DIR, true),
    (CACHE_DIR, true),
    ("/etc/passwd", true),
    ("/etc/group", true),
    ("/etc/mtab", true),
    ("/etc", false),
];

/// Checked read-only paths, ready for [`crate::SandboxOptions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoPaths {
    /// What is bound: `(host path with symlinks resolved, the path as configured)`.
    pub(crate) bound: Vec<(PathBuf, PathBuf)>,
    /// Configured paths that do not exist on this host (and were skipped).
    pub skipped: Vec<PathBuf>,
}

impl RoPaths {
    /// The paths that are bound, as configured.
    pub fn bound(&self) -> impl Iterator<Item = &Path> {
        self.bound
            .iter()
            .map(|(_, configured)| configured.as_path())
    }
}

/// Why a configured read-only path is refused.
#[derive(Debug, thiserror::Error)]
pub enum RoPathError {
    /// Not an absolute path.
    #[error("sandbox_ro_paths: {}: expected an absolute path", path.display())]
    NotAbsolute {
        /// The path as configured.
        path: PathBuf,
    },
    /// Has a `..` component (which makes the rules below easy to dodge).
    #[error("sandbox_ro_paths: {}: expected a path without '..'", path.display())]
    ParentComponent {
        /// The path as configured.
        path: PathBuf,
    },
    /// Is `/`, which would show the whole host.
    #[error("sandbox_ro_paths: {}: refused, it is the whole host filesystem", path.display())]
    WholeHost {
        /// The path as configured.
        path: PathBuf,
    },
    /// Contains one of the protected paths.
    #[error(
        "sandbox_ro_paths: {}: refused, it contains {what} {}",
        path.display(),
        protected.display()
    )]
    ContainsProtected {
        /// The path as configured.
        path: PathBuf,
        /// `the data directory`, `the daemon's home`, `the control socket`.
        what: &'static str,
        /// The protected path (symlinks resolved).
        protected: PathBuf,
    },
    /// Lies inside the data directory.
    #[error(
        "sandbox_ro_paths: {}: refused, it lies inside the data directory {}",
        path.display(),
        data_dir.display()
    )]
    InsideDataDir {
        /// The path as configured.
        path: PathBuf,
        /// The data directory (symlinks resolved).
        data_dir: PathBuf,
    },
    /// Would replace something the sandbox makes itself.
    #[error(
        "sandbox_ro_paths: {}: refused, it would replace the sandbox's own {sandbox_path}",
        path.display()
    )]
    SandboxOwned {
        /// The path as configured.
        path: PathBuf,
        /// What it collides with.
        sandbox_path: &'static str,
    },
    /// Exists but cannot be resolved (a permission problem on the way, a symlink loop).
    #[error("sandbox_ro_paths: {}: cannot resolve it: {source}", path.display())]
    Unresolvable {
        /// The path as configured.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// Checks the operator's read-only paths against the rules above. Paths that do not exist
/// are skipped (listed in [`RoPaths::skipped`], with a warning in the log).
pub fn check_ro_paths(paths: &[PathBuf], protected: &Protected) -> Result<RoPaths, RoPathError> {
    let protected_resolved = ResolvedProtected::new(protected);
    let mut checked = RoPaths::default();
    for path in paths {
        if !path.is_absolute() {
            return Err(RoPathError::NotAbsolute { path: path.clone() });
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(RoPathError::ParentComponent { path: path.clone() });
        }
        // The configured path itself must pass (it becomes a symlink or a mount inside), and
        // so must what it resolves to (which is what the app gets to read).
        check_one(path, path, &protected_resolved)?;
        let resolved = match std::fs::canonicalize(path) {
            Ok(resolved) => resolved,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "sandbox_ro_paths: skipped, it does not exist");
                checked.skipped.push(path.clone());
                continue;
            }
            Err(source) => {
                return Err(RoPathError::Unresolvable {
                    path: path.clone(),
                    source,
                });
            }
        };
        check_one(path, &resolved, &protected_resolved)?;
        checked.bound.push((resolved, path.clone()));
    }
    Ok(checked)
}

fn check_one(
    configured: &Path,
    path: &Path,
    protected: &ResolvedProtected,
) -> Result<(), RoPathError> {
    if path.parent().is_none() {
        return Err(RoPathError::WholeHost {
            path: configured.to_owned(),
        });
    }
    for (what, protected_path) in protected.all() {
        if protected_path.starts_with(path) {
            return Err(RoPathError::ContainsProtected {
                path: configured.to_owned(),
                what,
                protected: protected_path.to_owned(),
            });
        }
    }
    if path.starts_with(&protected.data_dir) {
        return Err(RoPathError::InsideDataDir {
            path: configured.to_owned(),
            data_dir: protected.data_dir.clone(),
        });
    }
    for (sandbox_path, inside_refused) in SANDBOX_OWNED {
        let sandbox = Path::new(sandbox_path);
        if sandbox.starts_with(path) || (inside_refused && path.starts_with(sandbox)) {
            return Err(RoPathError::SandboxOwned {
                path: configured.to_owned(),
                sandbox_path,
            });
        }
    }
    Ok(())
}

/// The protected paths with their symlinks resolved (as far as they exist).
pub(crate) struct ResolvedProtected {
    pub(crate) data_dir: PathBuf,
    home: Option<PathBuf>,
    control_socket: PathBuf,
}

impl ResolvedProtected {
    pub(crate) fn new(protected: &Protected) -> ResolvedProtected {
        ResolvedProtected {
            data_dir: resolve(&protected.data_dir),
            home: protected.home.as_deref().map(resolve),
            control_socket: resolve(&protected.control_socket),
        }
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        [
            Some(("the data directory", self.data_dir.as_path())),
            self.home.as_deref().map(|home| ("the daemon's home", home)),
            Some(("the control socket", self.control_socket.as_path())),
        ]
        .into_iter()
        .flatten()
    }
}

/// Resolves the symlinks of `path`, or of its nearest existing ancestor (a control socket
/// that is not made yet, a data directory on a first start).
fn resolve(path: &Path) -> PathBuf {
    if let Ok(resolved) = std::fs::canonicalize(path) {
        return resolved;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => resolve(parent).join(name),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_owned_paths_are_refused_and_etc_may_be_added_to() {
        let protected = ResolvedProtected {
            data_dir: PathBuf::from("/srv/nap"),
            home: Some(PathBuf::from("/home/nap")),
            control_socket: PathBuf::from("/run/nap/nap.sock"),
        };
        let check = |path: &str| check_one(Path::new(path), Path::new(path), &protected);
        for refused in [
            "/tmp",
            "/tmp/x",
            "/proc",
            "/proc/1",
            "/dev",
            "/dev/shm",
            "/app",
            "/app/x",
            "/storage",
            "/cache",
            "/etc",
            "/etc/passwd",
            "/etc/group",
            "/srv",
            "/srv/nap",
            "/srv/nap/apps",
            "/home",
            "/run",
            "/run/nap",
            "/run/nap/nap.sock",
            "/",
        ] {
            assert!(check(refused).is_err(), "{refused} must be refused");
        }
        for allowed in [
            "/opt",
            "/opt/python",
            "/etc/java-17-openjdk",
            "/usr/local",
            "/home/other",
            "/srv/other",
            "/run/other",
            "/var/lib/python",
            "/tmpfoo",
        ] {
            assert!(check(allowed).is_ok(), "{allowed} must be allowed");
        }
    }
}
