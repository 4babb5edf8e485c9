//! What a release tree needs built, and the content hash that says whether its dependencies
//! changed since the last build.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The requirements file of a Python app.
pub const REQUIREMENTS_TXT: &str = "requirements.txt";
/// The manifest of a Node app.
pub const PACKAGE_JSON: &str = "package.json";
/// The lockfiles `npm ci` accepts, in the order npm prefers them.
pub const NODE_LOCKFILES: [&str; 2] = ["npm-shrinkwrap.json", "package-lock.json"];

/// A manifest or lockfile larger than this is not hashed: the build then runs without the
/// dependency cache (it still runs). Real ones are kilobytes to a few megabytes.
const MAX_HASHED_FILE: u64 = 64 << 20;

/// What the build of one release tree does, in the order nap looks for it (as Piku does):
/// the profile's `build:` wins, then `requirements.txt`, then `package.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// The profile's `build:` command, run with `/bin/sh -c` in the release tree.
    Command(String),
    /// `requirements.txt`: a virtualenv at `/app/.venv` and `pip install -r requirements.txt`.
    Python,
    /// `package.json`: `npm ci` with a lockfile, `npm install` without.
    Node {
        /// The lockfile found (`package-lock.json` or `npm-shrinkwrap.json`), if any.
        lockfile: Option<&'static str>,
    },
    /// Nothing to build: the tree runs as pushed.
    Nothing,
}

impl Detected {
    /// The word in `-----> Building (WORD)`, or `None` when there is nothing to build.
    pub fn label(&self) -> Option<&'static str> {
        match self {
            Detected::Command(_) => Some("build command"),
            Detected::Python => Some("python"),
            Detected::Node { .. } => Some("node"),
            Detected::Nothing => None,
        }
    }

    /// The files whose content decides whether the cached dependencies still fit, as named in
    /// the message that says they are reused.
    pub fn hashed_files(&self) -> Vec<&'static str> {
        match self {
            Detected::Python => vec![REQUIREMENTS_TXT],
            Detected::Node { lockfile } => {
                let mut files = vec![PACKAGE_JSON];
                files.extend(*lockfile);
                files
            }
            Detected::Command(_) | Detected::Nothing => Vec::new(),
        }
    }
}

impl fmt::Display for Detected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label().unwrap_or("nothing to build"))
    }
}

/// Decides what to build in `release` (a release tree on the host). Looks only at whether
/// the files are there (a symlink counts: it is resolved inside the sandbox), never at what
/// they hold.
pub fn detect(release: &Path, build_command: Option<&str>) -> Detected {
    if let Some(command) = build_command {
        return Detected::Command(command.to_owned());
    }
    let present = |name: &str| fs::symlink_metadata(release.join(name)).is_ok();
    if present(REQUIREMENTS_TXT) {
        Detected::Python
    } else if present(PACKAGE_JSON) {
        Detected::Node {
            lockfile: NODE_LOCKFILES.into_iter().find(|name| present(name)),
        }
    } else {
        Detected::Nothing
    }
}

/// The content hash of what the dependencies were built from: the detected kind, the files
/// [`Detected::hashed_files`] names, and the runtime (`python3` or `node`) that `path` (the
/// sandbox's `PATH`) finds. `None` when there is nothing to cache or a file cannot be hashed
/// safely (not a regular file, too large): the build then runs in full and caches nothing.
///
/// The runtime is identified by the resolved path of its binary (`/usr/bin/python3.11`),
/// its size and its modification time, read on the host: the sandbox sees `/usr` and the
/// operator's paths at the same place, so this is the binary the build runs. An upgrade of
/// the runtime changes the key, and the next build installs afresh.
pub fn cache_key(release: &Path, detected: &Detected, path: &str) -> Option<String> {
    let runtime = match detected {
        Detected::Python => "python3",
        Detected::Node { .. } => "node",
        Detected::Command(_) | Detected::Nothing => return None,
    };
    let mut hasher = Sha256::new();
    hasher.update(b"nap-build cache key 1\0");
    hasher.update(runtime.as_bytes());
    hasher.update(b"\0");
    hasher.update(runtime_identity(runtime, path).as_bytes());
    for name in detected.hashed_files() {
        let contents = match read_regular_file(&release.join(name)) {
            Ok(contents) => contents,
            Err(error) => {
                tracing::debug!(file = name, %error, "not caching the dependencies");
                return None;
            }
        };
        hasher.update(b"\0");
        hasher.update(name.as_bytes());
        hasher.update(b"\0");
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
    }
    Some(nap_stdx::hex(&hasher.finalize()))
}

/// Where `program` is on `path` and what that file is, as one line; `missing` when no
/// directory of `path` has it (the build then says so itself).
fn runtime_identity(program: &str, path: &str) -> String {
    for dir in path.split(':').filter(|dir| dir.starts_with('/')) {
        let candidate = PathBuf::from(dir).join(program);
        let Ok(resolved) = fs::canonicalize(&candidate) else {
            continue;
        };
        if let Ok(meta) = fs::metadata(&resolved) {
            return format!(
                "{} {} {}.{}",
                resolved.display(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec()
            );
        }
    }
    format!("missing on {path}")
}

/// Reads `file` if it is a regular file (not a symlink, which could point anywhere on the
/// host: this runs as the daemon) of a sane size.
fn read_regular_file(file: &Path) -> io::Result<Vec<u8>> {
    let meta = fs::symlink_metadata(file)?;
    if !meta.file_type().is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_HASHED_FILE {
        return Err(io::Error::other("too large to hash"));
    }
    fs::read(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for file in files {
            fs::write(dir.path().join(file), "{}\n").expect("write");
        }
        dir
    }

    #[test]
    fn the_profile_wins_then_python_then_node() {
        let both = tree(&[REQUIREMENTS_TXT, PACKAGE_JSON]);
        assert_eq!(
            detect(both.path(), Some("make")),
            Detected::Command("make".to_owned())
        );
        assert_eq!(detect(both.path(), None), Detected::Python);
        let node = tree(&[PACKAGE_JSON, "package-lock.json"]);
        assert_eq!(
            detect(node.path(), None),
            Detected::Node {
                lockfile: Some("package-lock.json")
            }
        );
        let bare_node = tree(&[PACKAGE_JSON]);
        assert_eq!(
            detect(bare_node.path(), None),
            Detected::Node { lockfile: None }
        );
        assert_eq!(detect(tree(&["app.py"]).path(), None), Detected::Nothing);
    }

    #[test]
    fn the_key_follows_the_requirements_and_refuses_symlinks() {
        let release = tree(&[REQUIREMENTS_TXT]);
        let path = "/usr/bin:/bin";
        let first = cache_key(release.path(), &Detected::Python, path).expect("a key");
        assert_eq!(
            cache_key(release.path(), &Detected::Python, path),
            Some(first.clone())
        );
        fs::write(release.path().join(REQUIREMENTS_TXT), "flask\n").expect("write");
        let second = cache_key(release.path(), &Detected::Python, path).expect("a key");
        assert_ne!(first, second);
        assert_ne!(
            cache_key(release.path(), &Detected::Python, "/nonexistent"),
            Some(second),
            "another runtime, another key"
        );
        fs::remove_file(release.path().join(REQUIREMENTS_TXT)).expect("rm");
        std::os::unix::fs::symlink("/etc/passwd", release.path().join(REQUIREMENTS_TXT))
            .expect("symlink");
        assert_eq!(cache_key(release.path(), &Detected::Python, path), None);
        assert_eq!(detect(release.path(), None), Detected::Python);
    }
}
