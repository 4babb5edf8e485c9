//! The shell scripts the detected builds run inside the sandbox.
//!
//! Everything that touches the cache happens in here, as the app's uid inside the sandbox,
//! never in the daemon: the cache is writable by the app, so a symlink the app left in it
//! could otherwise make the daemon read or copy any file of the host.
//!
//! The cache (`$NAP_CACHE`, `/cache` inside) holds:
//!
//! | path                   | what                                                       |
//! |------------------------|------------------------------------------------------------|
//! | `deps/python.key`      | the key of the last Python build whose dependencies are kept |
//! | `deps/python/.venv`    | those dependencies: the virtualenv, as built               |
//! | `deps/node.key`, `deps/node/node_modules` | the same for Node                       |
//! | `pip/`, `npm/`         | pip's and npm's own download caches                       |
//!
//! Only the last key per runtime is kept, and pip's and npm's caches are emptied when they
//! grow past [`TOOL_CACHE_LIMIT_KIB`], so a cache stays about twice the size of the app's
//! dependencies. The key file is removed before the saved tree is replaced and written after
//! it is complete, so a build killed half-way never leaves a key that matches a partial tree.
//!
//! Dependencies are copied (`cp -a --reflink=auto`: a copy-on-write clone on btrfs or XFS, a
//! real copy on ext4), never hardlinked: a hardlinked file is the same inode in the cache and
//! in the release, and a later build (which may write the cache) could then change the code
//! of a release that is running, or that a rollback returns to.
//!
//! Each script's first line of output is its own, so the caller can tell from it whether the
//! cache was used before any code of the app's has run.

use crate::detect::Detected;

/// pip's or npm's own download cache is emptied after a build when it is larger than this.
pub const TOOL_CACHE_LIMIT_KIB: u64 = 512 * 1024;

/// The line a build prints when it reuses the cached dependencies, for the files named.
pub fn reuse_message(files: &[&str]) -> String {
    format!(
        "using the cached dependencies ({} unchanged)",
        files.join(" and ")
    )
}

/// The script for `detected`, run as `/bin/sh -c SCRIPT nap-build KEY` (`$1` is the cache key,
/// empty when the dependencies are not to be cached); `None` for [`Detected::Nothing`].
pub fn script(detected: &Detected) -> Option<String> {
    let files = detected.hashed_files();
    match detected {
        Detected::Command(command) => Some(command.clone()),
        Detected::Python => Some(dependencies_script(
            "python",
            ".venv",
            &reuse_message(&files),
            PYTHON_INSTALL,
            "pip",
        )),
        Detected::Node { lockfile } => Some(dependencies_script(
            "node",
            "node_modules",
            &reuse_message(&files),
            if lockfile.is_some() {
                NPM_CI
            } else {
                NPM_INSTALL
            },
            "npm",
        )),
        Detected::Nothing => None,
    }
}

/// A virtualenv without pip in it (the host's pip installs into it with `--python`), which
/// is seconds faster to make than one with its own copy of pip, and much smaller to cache.
/// A runtime without a pip module of its own, or with one older than `--python` (pip 22.3),
/// gets a virtualenv with pip instead.
const PYTHON_INSTALL: &str = r#"echo "creating a virtualenv in /app/.venv"
pip_options="--cache-dir $NAP_CACHE/pip --disable-pip-version-check --no-input --progress-bar off"
if python3 -m venv --without-pip /app/.venv &&
  python3 -m pip --python /app/.venv/bin/python --version >/dev/null 2>&1; then
  echo "pip install -r requirements.txt"
  python3 -m pip --python /app/.venv/bin/python install $pip_options -r requirements.txt
else
  rm -rf /app/.venv
  python3 -m venv /app/.venv
  echo "pip install -r requirements.txt"
  /app/.venv/bin/pip install $pip_options -r requirements.txt
fi"#;

/// npm never asks, never audits and never advertises itself: a build has no one to answer.
const NPM_OPTIONS: &str =
    "--cache \"$NAP_CACHE/npm\" --no-audit --no-fund --no-update-notifier --no-progress";

const NPM_CI: &str = "echo \"npm ci\"\nnpm ci ";
const NPM_INSTALL: &str = "echo \"npm install (no lockfile)\"\nnpm install ";

fn dependencies_script(
    runtime: &str,
    built: &str,
    reuse_message: &str,
    install: &str,
    tool_cache: &str,
) -> String {
    let npm_options = if runtime == "node" { NPM_OPTIONS } else { "" };
    format!(
        r#"set -e
key="$1"
saved="$NAP_CACHE/deps/{runtime}"
if [ -n "$key" ] && [ -d "$saved/{built}" ] && [ "$(cat "$saved.key" 2>/dev/null)" = "$key" ]; then
  echo "{reuse_message}"
  rm -rf "/app/{built}"
  cp -a --reflink=auto "$saved/{built}" "/app/{built}"
  exit 0
fi
rm -rf "/app/{built}"
{install}{npm_options}
if [ -n "$key" ]; then
  rm -f "$saved.key"
  rm -rf "$saved"
  if mkdir -p "$saved" && cp -a --reflink=auto "/app/{built}" "$saved/{built}"; then
    printf '%s\n' "$key" > "$saved.key"
  else
    rm -rf "$saved"
    echo "(could not keep the dependencies in the cache; the next build installs them again)"
  fi
fi
if [ -d "$NAP_CACHE/{tool_cache}" ] && [ "$(du -sk "$NAP_CACHE/{tool_cache}" | cut -f1)" -gt {TOOL_CACHE_LIMIT_KIB} ]; then
  rm -rf "$NAP_CACHE/{tool_cache}"
fi
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reuse_message_names_the_files() {
        assert_eq!(
            reuse_message(&Detected::Python.hashed_files()),
            "using the cached dependencies (requirements.txt unchanged)"
        );
        let node = Detected::Node {
            lockfile: Some("package-lock.json"),
        };
        assert_eq!(
            reuse_message(&node.hashed_files()),
            "using the cached dependencies (package.json and package-lock.json unchanged)"
        );
        let script = script(&node).expect("a script");
        assert!(script.contains("npm ci --cache"), "{script}");
    }
}
