//! What keeps apps apart on nap's own machine, as the daemon sees it: proving at start that
//! the sandbox works (or refusing to start), the range of per-app uids, what an instance's
//! spec says about its storage and uid, and saying so everywhere when apps are not isolated.
//!
//! The sandbox itself is `nap-sandbox`'s; the supervisor launches every instance through it.
//! This module only gathers what the sandbox must protect (nap's data directory, its control
//! socket, the daemon's home) and hands the probed sandbox to the supervisor.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use nap_core::AppName;
use nap_runtime::{AppIds, LocalApp};
use nap_store::DataDir;

use crate::Daemon;

/// Whether the local runtime's instances run in a sandbox (`isolation` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Every instance in the sandbox; the daemon refuses to start when none can be made.
    #[default]
    Sandbox,
    /// No sandbox: instances run as the daemon's own user and can read all of its data.
    None,
}

/// The sandbox's settings, from the config file.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// bwrap's path (`sandbox_bwrap`); `None` looks in `PATH`.
    pub bwrap: Option<PathBuf>,
    /// Host paths every sandbox sees read-only (`sandbox_ro_paths`).
    pub ro_paths: Vec<PathBuf>,
    /// The uids apps get when nap runs as root (`app_uid_range`).
    pub app_uids: RangeInclusive<u32>,
}

impl Default for SandboxSettings {
    fn default() -> SandboxSettings {
        SandboxSettings {
            bwrap: None,
            ro_paths: Vec::new(),
            app_uids: DEFAULT_APP_UIDS,
        }
    }
}

/// `app_uid_range`'s default: above the 100000-165535 that `useradd` hands out as the first
/// subordinate range (`/etc/subuid`), below 2^31, and 65536 apps wide.
pub const DEFAULT_APP_UIDS: RangeInclusive<u32> = 200_000..=265_535;

/// How the daemon's instances are kept apart, as found at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confinement {
    /// The local runtime sandboxes every instance; with `per_app_uids` (nap runs as root)
    /// each app has a uid of its own.
    Sandboxed {
        /// Whether each app runs as its own uid.
        per_app_uids: bool,
    },
    /// The fleet's machines run every instance in systemd's sandbox.
    Cluster,
    /// `isolation: none`: instances run as the daemon's user.
    None,
}

impl Confinement {
    /// Whether instances are kept apart from nap and from each other.
    pub(crate) fn isolated(self) -> bool {
        self != Confinement::None
    }
}

/// What push output, `ps` and `apps` say when instances are not isolated.
pub(crate) const NOT_ISOLATED: &str = "instances are not isolated (isolation: none): every app runs as nap's own user and can read nap's data directory, its control socket and every other app";

/// Why the app uid range cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AppUidError {
    /// Some of its uids or gids are the host's.
    #[error(
        "app_uid_range {first}-{last} overlaps {what} ({file}): apps would own that {kind}'s \
         files; set app_uid_range to ids that no user, group or subordinate range \
         (/etc/subuid, /etc/subgid) of this host uses"
    )]
    Overlaps {
        /// First uid of the range.
        first: u32,
        /// Last uid of the range.
        last: u32,
        /// `user tester (uid 200001)`, `the subordinate uids of tester (200000-265535)`.
        what: String,
        /// The host file that says so.
        file: &'static str,
        /// `user`, `group`.
        kind: &'static str,
    },
}

/// Why the daemon cannot isolate apps as configured.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// No sandbox can be made here; the probe's message says what is missing.
    #[error("cannot sandbox apps: {0}")]
    Probe(#[from] nap_sandbox::ProbeError),
    /// The uid range is unusable.
    #[error(transparent)]
    AppUids(#[from] AppUidError),
    /// Apps made before uids were given out cannot get one.
    #[error("cannot give the existing apps uids of their own: {0}")]
    Assign(#[from] crate::AppsError),
}

/// Proves that the sandbox works here, or says what is missing. What every sandbox must keep
/// out: the data directory, the control socket and the daemon's home.
pub(crate) async fn probe(
    settings: &SandboxSettings,
    data: &DataDir,
) -> Result<nap_sandbox::Sandbox, IsolationError> {
    let options = nap_sandbox::SandboxOptions {
        bwrap: settings.bwrap.clone(),
        ro_paths: settings.ro_paths.clone(),
        protected: nap_sandbox::Protected {
            data_dir: data.root().to_owned(),
            home: daemon_home(),
            control_socket: data.socket(),
        },
        state_dir: data.sandbox(),
    };
    let sandbox = nap_sandbox::Sandbox::probe(&options).await?;
    for skipped in &sandbox.ro_paths().skipped {
        tracing::warn!(path = %skipped.display(), "sandbox_ro_paths: not on this host, skipped");
    }
    Ok(sandbox)
}

/// The daemon's home: `HOME`, else the passwd entry of its uid.
fn daemon_home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|home| home.is_absolute() && home != Path::new("/"))
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|user| user.dir)
        })
        .filter(|home| home != Path::new("/"))
}

/// Refuses a uid range that the host's users, groups or subordinate id ranges use: an app
/// with such a uid would own their files.
pub(crate) fn check_app_uid_range(range: &RangeInclusive<u32>) -> Result<(), AppUidError> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    check_app_uid_range_against(
        range,
        &read("/etc/passwd"),
        &read("/etc/group"),
        &read("/etc/subuid"),
        &read("/etc/subgid"),
    )
}

fn check_app_uid_range_against(
    range: &RangeInclusive<u32>,
    passwd: &str,
    group: &str,
    subuid: &str,
    subgid: &str,
) -> Result<(), AppUidError> {
    let overlaps = |what: String, file: &'static str, kind: &'static str| AppUidError::Overlaps {
        first: *range.start(),
        last: *range.end(),
        what,
        file,
        kind,
    };
    for (text, file, kind) in [
        (passwd, "/etc/passwd", "user"),
        (group, "/etc/group", "group"),
    ] {
        for line in text.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if let (Some(name), Some(Ok(id))) = (fields.first(), fields.get(2).map(|f| f.parse()))
                && range.contains(&id)
            {
                return Err(overlaps(format!("{kind} {name} (id {id})"), file, kind));
            }
        }
    }
    for (text, file, kind) in [
        (subuid, "/etc/subuid", "user"),
        (subgid, "/etc/subgid", "group"),
    ] {
        for line in text.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            let (Some(name), Some(Ok(start)), Some(Ok(count))) = (
                fields.first(),
                fields.get(1).map(|f| f.parse::<u32>()),
                fields.get(2).map(|f| f.parse::<u32>()),
            ) else {
                continue;
            };
            let Some(end) = count.checked_sub(1).map(|n| start.saturating_add(n)) else {
                continue;
            };
            if start <= *range.end() && *range.start() <= end {
                return Err(overlaps(
                    format!("the subordinate ids of {name} ({start}-{end})"),
                    file,
                    kind,
                ));
            }
        }
    }
    Ok(())
}

/// The lowest uid of `range` that is not in `taken`.
pub(crate) fn free_uid(range: &RangeInclusive<u32>, taken: &BTreeSet<u32>) -> Option<u32> {
    range.clone().find(|uid| !taken.contains(uid))
}

impl Daemon {
    /// Whether this daemon's instances are isolated.
    pub(crate) fn isolated(&self) -> bool {
        self.confinement.isolated()
    }

    /// What the runtime needs to keep `app` apart on this machine: its storage directory and,
    /// when nap runs as root, its uid. An app that should have a uid and has none cannot
    /// start (it would run as root).
    pub(crate) fn local_app(&self, app: &AppName) -> Result<LocalApp, String> {
        let ids = match self.confinement {
            Confinement::Sandboxed { per_app_uids: true } => {
                let record = self.apps.record(app).map_err(|e| e.to_string())?;
                let uid = record.and_then(|r| r.uid).ok_or_else(|| {
                    format!(
                        "{app} has no uid of its own yet; restart nap to give it one from app_uid_range"
                    )
                })?;
                Some(AppIds { uid, gid: uid })
            }
            _ => None,
        };
        Ok(LocalApp {
            storage: self.data.app_storage(app.as_str()),
            ids,
        })
    }
}

/// Removes an app's storage. An app may leave directories that their owner cannot delete
/// from (mode 0500); when nap is not root those are made writable first. Nothing follows a
/// symlink: the app is stopped, and every link it made is removed as a link.
pub(crate) fn remove_storage(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            make_directories_writable(dir);
            std::fs::remove_dir_all(dir)
        }
        other => other,
    }
}

fn make_directories_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let is_directory = std::fs::symlink_metadata(dir).is_ok_and(|meta| meta.is_dir());
    if !is_directory {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_directories_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_the_host_uses_is_refused_with_who_uses_it() {
        let check = |passwd: &str, group: &str, subuid: &str| {
            check_app_uid_range_against(&DEFAULT_APP_UIDS, passwd, group, subuid, "")
                .map_err(|e| e.to_string())
        };
        let debian = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/bin/false\n";
        assert!(check(debian, "root:x:0:\n", "tester:100000:65536\n").is_ok());
        let error = check(
            "root:x:0:0::/:/bin/sh\nbuild:x:200001:100::/:/bin/sh\n",
            "",
            "",
        )
        .expect_err("a user in the range");
        assert!(
            error.contains("overlaps user build (id 200001) (/etc/passwd)"),
            "{error}"
        );
        let error = check("", "ops:x:265535:\n", "").expect_err("a group");
        assert!(error.contains("group ops (id 265535)"), "{error}");
        let error = check("", "", "alice:165536:65536\n").expect_err("subordinate uids");
        assert!(
            error.contains("the subordinate ids of alice (165536-231071) (/etc/subuid)"),
            "{error}"
        );
        assert!(check("", "", "bob:265536:65536\nbad line\n").is_ok());
    }

    #[test]
    fn the_lowest_free_uid_is_given() {
        let taken: BTreeSet<u32> = [200_000, 200_001, 200_003].into();
        assert_eq!(free_uid(&DEFAULT_APP_UIDS, &taken), Some(200_002));
        assert_eq!(free_uid(&(7..=8), &[7, 8].into()), None);
    }
}
