//! The sandbox's `/etc`: copies of the few host files that programs need, kept in a directory
//! of nap's and bound read-only as a whole, with a few host directories bound on top.
//!
//! Binding each file on its own costs two mount calls per file in every sandbox (bwrap binds,
//! then remounts read-only), about a third of all the mounts a sandbox makes. One directory
//! of copies costs two. The copies are made again, into a fresh directory, whenever one of the
//! host's files changes (a new `resolv.conf`, updated CA certificates, `ldconfig`), which a
//! few `stat`s per start detect; an instance that is running keeps the copy it started with.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::ro_paths::RoPaths;

/// The host's entries under `/etc` that programs need. Everything else of `/etc` stays out:
/// `shadow`, `ssh/` host keys, `ssl/private`, service configs with passwords, `machine-id`,
/// the host's users (the sandbox has its own `passwd` and `group`).
pub(crate) const ETC_FILES: [&str; 17] = [
    "resolv.conf",
    "hosts",
    "host.conf",
    "nsswitch.conf",
    "gai.conf",
    "services",
    "protocols",
    "networks",
    "ssl/openssl.cnf",
    "pki/tls/openssl.cnf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "mime.types",
    "fonts",
];

/// Directories of `/etc` that programs need and that are trees of hundreds of symlinks
/// (CA certificates by hash, `update-alternatives`' links): bound read-only on top of the
/// copies rather than copied, since making a symlink costs about as much as a mount here.
pub(crate) const ETC_DIRECTORIES: [&str; 4] = [
    "ssl/certs",
    "pki/ca-trust",
    "alternatives",
    "crypto-policies",
];

/// The databases of `nsswitch.conf` that name users and groups. The sandbox's `passwd` and
/// `group` are its own complete lists (`launch.rs`), so in the copy these are looked up in
/// `files` only, whatever the host names. Otherwise every lookup that misses (setpriv looks the
/// app's uid up as a user *name* first, at every start) goes on to the host's other modules:
/// with Debian's `files systemd`, `libnss_systemd` and the two libraries it needs are loaded,
/// and it tries systemd's sockets, in every sandboxed start for nothing.
const OWN_DATABASES: [&str; 5] = ["passwd", "group", "shadow", "gshadow", "initgroups"];

/// Bumped whenever what [`EtcCopies::current`] writes changes for the same host files, so
/// that a newer nap does not reuse an older nap's copies.
const COPY_FORMAT: u32 = 2;

/// How many files and links one entry may have (a runaway symlink loop or a huge tree under
/// `/etc/fonts` must not fill nap's disk).
const MAX_ENTRIES_PER_SOURCE: usize = 20_000;

/// What the copies hold besides the host's files: mount points for what bwrap binds on top
/// of them (the sandbox's own `passwd` and `group`, an operator's read-only path under `/etc`)
/// and links, since nothing can be made in `/etc` once it is bound read-only.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(crate) enum Extra {
    /// An empty file or directory at this path under `/etc`.
    MountPoint { path: PathBuf, directory: bool },
    /// A symlink at this path under `/etc`.
    Symlink { path: PathBuf, target: PathBuf },
}

/// What the operator's read-only paths under `/etc` need in the copies: a mount point for a
/// path that resolves into `/etc`, a link for one that is a symlink there.
pub(crate) fn extras_for(ro_paths: &RoPaths) -> Vec<Extra> {
    let mut extras = Vec::new();
    for (resolved, configured) in &ro_paths.bound {
        if let Ok(path) = resolved.strip_prefix("/etc") {
            extras.push(Extra::MountPoint {
                path: path.to_owned(),
                directory: resolved.is_dir(),
            });
        }
        if let Ok(path) = configured.strip_prefix("/etc")
            && configured != resolved
        {
            extras.push(Extra::Symlink {
                path: path.to_owned(),
                target: resolved.clone(),
            });
        }
    }
    extras
}

/// How old an unfinished copy must be to count as left behind by a crash.
const ABANDONED: std::time::Duration = std::time::Duration::from_secs(600);

/// Where the copies live: `STATE_DIR/etc.FINGERPRINT`.
#[derive(Debug, Clone)]
pub(crate) struct EtcCopies {
    state_dir: PathBuf,
    host_etc: PathBuf,
    extras: Vec<Extra>,
}

impl EtcCopies {
    pub(crate) fn new(state_dir: &Path, mut extras: Vec<Extra>) -> EtcCopies {
        for file in ["passwd", "group"] {
            extras.push(Extra::MountPoint {
                path: PathBuf::from(file),
                directory: false,
            });
        }
        extras.push(Extra::Symlink {
            path: PathBuf::from("mtab"),
            target: PathBuf::from("../proc/self/mounts"),
        });
        for dir in ETC_DIRECTORIES {
            if Path::new("/etc").join(dir).is_dir() {
                extras.push(Extra::MountPoint {
                    path: PathBuf::from(dir),
                    directory: true,
                });
            }
        }
        EtcCopies {
            state_dir: state_dir.to_owned(),
            host_etc: PathBuf::from("/etc"),
            extras,
        }
    }

    /// The directory of copies that matches the host's files now, made if there is none.
    pub(crate) fn current(&self) -> io::Result<PathBuf> {
        let fingerprint = self.fingerprint();
        let dir = self.state_dir.join(format!("etc.{fingerprint:016x}"));
        if dir.is_dir() {
            return Ok(dir);
        }
        std::fs::create_dir_all(&self.state_dir)?;
        let building = tempfile::Builder::new()
            .prefix(".etc.building.")
            .tempdir_in(&self.state_dir)?;
        std::fs::set_permissions(building.path(), std::fs::Permissions::from_mode(0o755))?;
        for entry in ETC_FILES {
            let source = self.host_etc.join(entry);
            if !source.exists() {
                continue;
            }
            let target = building.path().join(entry);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
                set_mode(parent, 0o755)?;
            }
            let mut budget = MAX_ENTRIES_PER_SOURCE;
            copy_tree(&source, &target, &mut budget, true)?;
        }
        // Always written, also when the host has none: glibc's defaults without the file are
        // not `files` for every database on every version.
        let host_nsswitch =
            std::fs::read_to_string(self.host_etc.join("nsswitch.conf")).unwrap_or_default();
        let nsswitch = building.path().join("nsswitch.conf");
        std::fs::write(&nsswitch, sandbox_nsswitch(&host_nsswitch))?;
        set_mode(&nsswitch, 0o644)?;
        for extra in &self.extras {
            let (Extra::MountPoint { path, .. } | Extra::Symlink { path, .. }) = extra;
            let at = building.path().join(path);
            if let Some(parent) = at.parent() {
                std::fs::create_dir_all(parent)?;
                set_mode(parent, 0o755)?;
            }
            // A host file of the same name (an operator's path over a copied one) gives way.
            if std::fs::symlink_metadata(&at).is_ok() {
                continue;
            }
            match extra {
                Extra::MountPoint {
                    directory: true, ..
                } => {
                    std::fs::create_dir(&at)?;
                    set_mode(&at, 0o755)?;
                }
                Extra::MountPoint {
                    directory: false, ..
                } => {
                    std::fs::write(&at, "")?;
                    set_mode(&at, 0o644)?;
                }
                Extra::Symlink { target, .. } => std::os::unix::fs::symlink(target, &at)?,
            }
        }
        // Another start may have made the same copies meanwhile; either is right.
        match std::fs::rename(building.path(), &dir) {
            Ok(()) => {
                // The directory is no temp dir any more: nothing to remove.
                let _ = building.keep();
                Ok(dir)
            }
            Err(_) if dir.is_dir() => Ok(dir),
            Err(error) => Err(error),
        }
    }

    /// Removes every copy but `keep`: for daemon start, when no sandbox of an earlier daemon
    /// runs any more.
    pub(crate) fn remove_all_but(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.state_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // A copy being built is left alone unless it is old (left by a crash): another
            // nap sharing the directory (tests do) may be making it now.
            let abandoned = name.starts_with(".etc.building.")
                && entry
                    .metadata()
                    .and_then(|meta| meta.modified())
                    .is_ok_and(|time| time.elapsed().unwrap_or_default() > ABANDONED);
            if path != keep
                && (name.starts_with("etc.") || abandoned)
                && let Err(error) = std::fs::remove_dir_all(&path)
            {
                tracing::warn!(path = %path.display(), %error, "cannot remove an old /etc copy");
            }
        }
    }

    /// Changes when any copied file or directory of the host changes: its inode, size or
    /// modification time. A directory's time changes when an entry is added, removed or
    /// replaced, which is how `update-ca-certificates`, `update-alternatives` and `ldconfig`
    /// change theirs. (A file edited in place inside a copied directory goes unnoticed until
    /// the daemon restarts.) These are a few `stat`s per start.
    fn fingerprint(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        COPY_FORMAT.hash(&mut hasher);
        self.extras.hash(&mut hasher);
        for entry in ETC_FILES {
            entry.hash(&mut hasher);
            match std::fs::metadata(self.host_etc.join(entry)) {
                Ok(meta) => {
                    (
                        meta.dev(),
                        meta.ino(),
                        meta.size(),
                        meta.mtime(),
                        meta.mtime_nsec(),
                    )
                        .hash(&mut hasher);
                }
                Err(_) => "missing".hash(&mut hasher),
            }
        }
        hasher.finish()
    }
}

/// The sandbox's `nsswitch.conf`: the host's, with the user and group databases
/// ([`OWN_DATABASES`]) looked up in `files` only. Every other database (`hosts` above all) is
/// looked up as on the host, so that names resolve inside as they do outside.
fn sandbox_nsswitch(host: &str) -> String {
    let mut text: String = OWN_DATABASES
        .iter()
        .map(|database| format!("{database}: files\n"))
        .collect();
    for line in host.lines() {
        let database = line.split(['#', ':']).next().unwrap_or("").trim();
        if line.contains(':') && OWN_DATABASES.contains(&database) {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Copies `source` to `target`: a file's contents (following a symlink at the top, as
/// `/etc/localtime` is one), a directory's files, symlinks and subdirectories. Files become
/// 0644 and directories 0755, whatever they were: the copies are for every app to read.
fn copy_tree(source: &Path, target: &Path, budget: &mut usize, top: bool) -> io::Result<()> {
    if *budget == 0 {
        return Err(io::Error::other(format!(
            "{} has more than {MAX_ENTRIES_PER_SOURCE} entries",
            source.display()
        )));
    }
    *budget -= 1;
    let meta = if top {
        std::fs::metadata(source)?
    } else {
        std::fs::symlink_metadata(source)?
    };
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(source)?, target)
    } else if meta.is_dir() {
        std::fs::create_dir(target)?;
        set_mode(target, 0o755)?;
        for entry in std::fs::read_dir(source)? {
            let entry = entry?;
            copy_tree(
                &entry.path(),
                &target.join(entry.file_name()),
                budget,
                false,
            )?;
        }
        Ok(())
    } else if meta.is_file() {
        match std::fs::copy(source, target) {
            Ok(_) => set_mode(target, 0o644),
            // A file only root may read (none is listed, but a host may differ) stays out.
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => Ok(()),
            Err(error) => Err(error),
        }
    } else {
        // Sockets, FIFOs and devices have no business in /etc.
        Ok(())
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copies_of(host_etc: &Path, state: &Path) -> EtcCopies {
        let mut copies = EtcCopies::new(state, Vec::new());
        copies.host_etc = host_etc.to_owned();
        copies
    }

    #[test]
    fn users_and_groups_are_looked_up_in_the_sandboxs_files_only() {
        let host = "# comment\npasswd:         files systemd\ngroup: files systemd\n\
                    shadow: files systemd\ngshadow:  files systemd\n\
                    hosts: files mdns4_minimal [NOTFOUND=return] dns\nnetgroup: nis\n";
        let copy = sandbox_nsswitch(host);
        let databases: Vec<(&str, &str)> = copy
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(database, sources)| (database.trim(), sources.trim()))
            .collect();
        assert_eq!(
            databases,
            [
                ("passwd", "files"),
                ("group", "files"),
                ("shadow", "files"),
                ("gshadow", "files"),
                ("initgroups", "files"),
                ("hosts", "files mdns4_minimal [NOTFOUND=return] dns"),
                ("netgroup", "nis"),
            ]
        );
        // A host without the file still gets users and groups from files only.
        assert!(sandbox_nsswitch("").starts_with("passwd: files\ngroup: files\n"));
    }

    #[test]
    fn copies_are_made_again_when_a_host_file_changes() {
        let temp = tempfile::tempdir().expect("temp dir");
        let host = temp.path().join("etc");
        std::fs::create_dir_all(host.join("fonts/conf.d")).expect("mkdir");
        std::fs::create_dir_all(host.join("ssl/private")).expect("mkdir");
        std::fs::write(host.join("resolv.conf"), "nameserver 10.0.0.1\n").expect("write");
        std::fs::write(host.join("shadow"), "root:secret\n").expect("write");
        std::fs::write(host.join("ssl/private/key.pem"), "KEY").expect("write");
        std::fs::write(host.join("fonts/fonts.conf"), "<fontconfig/>").expect("write");
        std::os::unix::fs::symlink("../fonts.conf", host.join("fonts/conf.d/10.conf"))
            .expect("link");
        let copies = copies_of(&host, &temp.path().join("state"));

        let first = copies.current().expect("copies");
        assert_eq!(
            copies.current().expect("copies"),
            first,
            "unchanged: the same copies"
        );
        assert_eq!(
            std::fs::read_to_string(first.join("resolv.conf")).expect("copied"),
            "nameserver 10.0.0.1\n"
        );
        assert_eq!(
            std::fs::read_link(first.join("fonts/conf.d/10.conf")).expect("a link"),
            PathBuf::from("../fonts.conf")
        );
        assert!(!first.join("shadow").exists() && !first.join("ssl/private").exists());
        assert_eq!(
            std::fs::read(first.join("passwd")).expect("a mount point"),
            b""
        );
        assert_eq!(
            std::fs::read_link(first.join("mtab")).expect("a link"),
            PathBuf::from("../proc/self/mounts")
        );

        // resolv.conf is replaced, as a DHCP client does.
        std::fs::write(host.join("resolv.conf.new"), "nameserver 10.0.0.2\n").expect("write");
        std::fs::rename(host.join("resolv.conf.new"), host.join("resolv.conf")).expect("mv");
        let second = copies.current().expect("copies");
        assert_ne!(second, first);
        assert_eq!(
            std::fs::read_to_string(second.join("resolv.conf")).expect("copied"),
            "nameserver 10.0.0.2\n"
        );
        assert!(
            first.exists(),
            "a running sandbox may still use the first copies"
        );
        copies.remove_all_but(&second);
        assert!(!first.exists() && second.exists());
    }
}
