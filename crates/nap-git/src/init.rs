//! Creating the bare repository that an app's pushes go to.

use std::path::{Path, PathBuf};

/// The directories of a bare repository, parents first.
const DIRECTORIES: [&str; 7] = [
    "objects",
    "objects/info",
    "objects/pack",
    "refs",
    "refs/heads",
    "refs/tags",
    "hooks",
];

/// Its files: the branch HEAD names (git's default) and the configuration that makes it a
/// bare repository of the first format.
const FILES: [(&str, &str); 2] = [
    ("HEAD", "ref: refs/heads/main\n"),
    (
        "config",
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n",
    ),
];

/// The error of [`init_bare`].
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Something already exists at the path; nap never initialises over existing data.
    #[error("cannot create a repository at {path}: it already exists")]
    AlreadyExists {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// The directory (or one of its parents) could not be created.
    #[error("cannot create the repository directory {path}")]
    CreateDir {
        /// The directory that could not be created.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The repository's directories or files could not be written.
    #[error("cannot initialise a bare repository at {path}")]
    Init {
        /// The repository directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Create a bare repository at `path`, which must not exist yet (its parents are created).
///
/// The repository is what `git init --bare --template=` makes (HEAD points at
/// `refs/heads/main`), so the system git's `receive-pack` accepts pushes to it and gix opens
/// it. It is written here rather than by `gix::init_bare`, which also writes git's template:
/// a description, `info/exclude` and twelve sample hooks, none of which a repository that
/// only takes pushes reads. That is 15 files of 18 and some 45 syscalls of every first
/// push. If initialisation fails half-way, the directory is removed again.
pub fn init_bare(path: &Path) -> Result<(), InitError> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|source| InitError::CreateDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    // `create_dir` fails if anything is there, which makes "must not exist" race-free;
    // gix itself would happily initialise into an existing empty directory.
    std::fs::create_dir(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            InitError::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            InitError::CreateDir {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let layout = || -> std::io::Result<()> {
        for directory in DIRECTORIES {
            std::fs::create_dir(path.join(directory))?;
        }
        for (file, content) in FILES {
            std::fs::write(path.join(file), content)?;
        }
        Ok(())
    };
    match layout() {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "initialised bare repository");
            Ok(())
        }
        Err(source) => {
            // Best effort: the directory was ours, a half-made repository helps nobody.
            let _ = std::fs::remove_dir_all(path);
            Err(InitError::Init {
                path: path.to_owned(),
                source,
            })
        }
    }
}
