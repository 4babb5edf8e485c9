//! Making one repository's objects available in another, like `git clone --local`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What [`copy_objects`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Loose objects now present in the destination (copied, linked or already there).
    pub loose_objects: usize,
    /// Packs now present in the destination (each a `.pack` with its `.idx` and the
    /// optional `.rev`, `.bitmap` and `.mtimes` files).
    pub packs: usize,
    /// Files hard-linked.
    pub linked: usize,
    /// Files copied because a hard link was not possible (another file system).
    pub copied: usize,
    /// Files the destination already had under the same name (object and pack file
    /// names are hashes of their contents, so they are the same).
    pub already_present: usize,
    /// Bytes of the files linked or copied.
    pub bytes: u64,
}

/// The error of [`copy_objects`].
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source repository borrows objects from another one, which nap never sets up;
    /// copying its own objects would leave the destination incomplete.
    #[error(
        "cannot copy the objects of {repo}: it uses objects of other repositories ({path} is not empty)"
    )]
    Alternates {
        /// The source repository.
        repo: PathBuf,
        /// Its `objects/info/alternates` file.
        path: PathBuf,
    },
    /// Reading the source or writing the destination failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done ("read", "link or copy", …).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The files of a pack that git reads besides `.pack` and `.idx`, copied when present.
///
/// `.keep` and `.promisor` markers are not copied: the copy is a new repository's own,
/// not kept from repacking, and nap makes no partial clones.
const PACK_EXTRAS: [&str; 3] = ["rev", "bitmap", "mtimes"];

/// Make every object of the bare repository `from` available in the bare repository
/// `to`, so that `to` needs nothing of `from` afterwards (what `git clone --local` does).
///
/// Loose objects and packs of `from/objects` are hard-linked into `to/objects`, or copied
/// where a hard link is not possible (another file system). Objects are immutable and
/// named by their contents, so sharing the files is safe: git never writes to an object
/// file, and either repository may later delete its own name for it. Files `to` already
/// has are left alone. Only objects are copied: no references, no `HEAD`.
///
/// `from` is only read. Its git push quarantine directories (`incoming-*`,
/// `tmp_objdir-incoming-*`), temporary files, `info/` and the optional caches
/// (`multi-pack-index`, commit-graphs) are not copied: git rebuilds the caches when it
/// needs them. A `from` that itself uses alternate object directories is refused (nap
/// never makes one), rather than leaving `to` without the borrowed objects.
///
/// Within a pack, the `.idx` is placed last, because readers find packs by their index:
/// a reader of `to` during the copy sees each pack whole or not at all.
pub fn copy_objects(from: &Path, to: &Path) -> Result<CopyStats, CopyError> {
    let source = from.join("objects");
    let dest = to.join("objects");
    let alternates = source.join("info/alternates");
    match std::fs::read(&alternates) {
        Ok(contents) if contents.iter().any(|b| !b.is_ascii_whitespace()) => {
            return Err(CopyError::Alternates {
                repo: from.to_owned(),
                path: alternates,
            });
        }
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(CopyError::Io {
                action: "read",
                path: alternates,
                source,
            });
        }
    }
    // The destination must be a repository already: don't create `to/objects` out of thin air.
    if !dest.is_dir() {
        return Err(CopyError::Io {
            action: "copy objects into",
            path: dest,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not an object directory of a repository",
            ),
        });
    }

    let mut stats = CopyStats::default();
    for name in sorted_names(&source)? {
        let Some(name) = name.to_str() else { continue };
        if name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            copy_loose_dir(&source.join(name), &dest.join(name), &mut stats)?;
        }
    }
    let pack_dir = source.join("pack");
    if pack_dir.is_dir() {
        copy_packs(&pack_dir, &dest.join("pack"), &mut stats)?;
    }
    tracing::debug!(
        from = %from.display(),
        to = %to.display(),
        loose_objects = stats.loose_objects,
        packs = stats.packs,
        linked = stats.linked,
        copied = stats.copied,
        already_present = stats.already_present,
        bytes = stats.bytes,
        "copied objects"
    );
    Ok(stats)
}

/// The loose objects of one fan-out directory `objects/xx`.
fn copy_loose_dir(source: &Path, dest: &Path, stats: &mut CopyStats) -> Result<(), CopyError> {
    let mut created = false;
    for name in sorted_names(source)? {
        let Some(name) = name.to_str() else { continue };
        // Object files are named by the rest of their hex id; git's temporary files
        // (`tmp_obj_*`) are not objects yet.
        if name.len() < 38 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let file = source.join(name);
        if !is_file(&file)? {
            continue;
        }
        if !created {
            create_dir(dest)?;
            created = true;
        }
        place(&file, &dest.join(name), stats)?;
        stats.loose_objects += 1;
    }
    Ok(())
}

/// The packs of `objects/pack`: those with both a `.pack` and an `.idx`.
fn copy_packs(source: &Path, dest: &Path, stats: &mut CopyStats) -> Result<(), CopyError> {
    let names = sorted_names(source)?;
    let has = |name: &str| names.iter().any(|n| n == name);
    let mut created = false;
    for name in &names {
        let Some(stem) = name
            .to_str()
            .and_then(|name| name.strip_prefix("pack-"))
            .and_then(|name| name.strip_suffix(".idx"))
        else {
            continue;
        };
        let file = |ext: &str| format!("pack-{stem}.{ext}");
        if !has(&file("pack")) {
            tracing::warn!(
                idx = %source.join(file("idx")).display(),
                "pack index without its pack; not copied"
            );
            continue;
        }
        if !created {
            create_dir(dest)?;
            created = true;
        }
        place(&source.join(file("pack")), &dest.join(file("pack")), stats)?;
        for ext in PACK_EXTRAS {
            let extra = file(ext);
            if has(&extra) {
                place(&source.join(&extra), &dest.join(&extra), stats)?;
            }
        }
        place(&source.join(file("idx")), &dest.join(file("idx")), stats)?;
        stats.packs += 1;
    }
    Ok(())
}

/// Make `source` available at `dest`: nothing if it is there, else a hard link, else a copy
/// (into a temporary file in `dest`'s directory, renamed into place when complete).
fn place(source: &Path, dest: &Path, stats: &mut CopyStats) -> Result<(), CopyError> {
    if dest.symlink_metadata().is_ok() {
        stats.already_present += 1;
        return Ok(());
    }
    let io_error = |action, path: &Path| {
        let path = path.to_owned();
        move |source| CopyError::Io {
            action,
            path,
            source,
        }
    };
    let len = std::fs::metadata(source)
        .map_err(io_error("read", source))?
        .len();
    match std::fs::hard_link(source, dest) {
        Ok(()) => {
            stats.linked += 1;
            stats.bytes += len;
            return Ok(());
        }
        // Someone else put it there meanwhile: the same contents, by its name.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            stats.already_present += 1;
            return Ok(());
        }
        Err(error) => {
            tracing::debug!(
                source = %source.display(),
                dest = %dest.display(),
                %error,
                "cannot hard-link; copying"
            );
        }
    }
    let temp = temp_path(dest);
    let result = std::fs::copy(source, &temp)
        .map_err(io_error("copy into", &temp))
        .and_then(|_| {
            std::fs::File::open(&temp)
                .and_then(|file| file.sync_all())
                .map_err(io_error("sync", &temp))
        })
        .and_then(|()| std::fs::rename(&temp, dest).map_err(io_error("move into place", dest)));
    if let Err(error) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(error);
    }
    stats.copied += 1;
    stats.bytes += len;
    Ok(())
}

/// A temporary name next to `dest`, with git's `tmp_` prefix so `git gc` would clean up
/// after a crash.
fn temp_path(dest: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "tmp_nap_copy_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    dest.with_file_name(name)
}

fn create_dir(path: &Path) -> Result<(), CopyError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(source) => Err(CopyError::Io {
            action: "create",
            path: path.to_owned(),
            source,
        }),
    }
}

fn is_file(path: &Path) -> Result<bool, CopyError> {
    std::fs::symlink_metadata(path)
        .map(|meta| meta.file_type().is_file())
        .map_err(|source| CopyError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })
}

/// The names in `dir`, sorted (so copies happen in a predictable order).
fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, CopyError> {
    let read_error = |source| CopyError::Io {
        action: "read",
        path: dir.to_owned(),
        source,
    };
    let mut names = std::fs::read_dir(dir)
        .map_err(read_error)?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    names.sort();
    Ok(names)
}
