//! Memory cgroups: one per instance, under `<the daemon's own cgroup>/nap/`.
//!
//! cgroup v1 (a `memory` hierarchy) and v2 (the unified hierarchy with the `memory` controller)
//! are both supported. Whether creating cgroups works here is found out by trying it once at
//! startup, including moving a process into one; when it does not, instances run without and
//! `ps` reports their limit as not enforced.
//!
//! The daemon's own cgroup is the parent (not the hierarchy's root), because that is the part
//! of the tree that the daemon was delegated: a systemd service, a container.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::CgroupMode;

/// Which cgroup hierarchy enforces memory limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The legacy hierarchies; the `memory` controller has its own (`memory.limit_in_bytes`).
    V1,
    /// The unified hierarchy (`memory.max`).
    V2,
}

/// Whether instances' memory limits are enforced, as found out by [`crate::Supervisor::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryLimits {
    /// Each instance gets a cgroup under `parent`.
    Enforced {
        /// The hierarchy in use.
        version: CgroupVersion,
        /// The directory that holds the instances' cgroups.
        parent: PathBuf,
    },
    /// Instances run without cgroups.
    NotEnforced {
        /// Why, for the daemon's log.
        reason: String,
    },
}

/// The exit status of the cgroup wrapper when it cannot move itself into the instance's cgroup.
pub(crate) const JOIN_FAILED_STATUS: i32 = 97;

/// The place where instance cgroups are made.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    version: CgroupVersion,
    /// `<own cgroup>/nap`.
    parent: PathBuf,
}

/// One instance's cgroup.
#[derive(Debug, Clone)]
pub(crate) struct Cgroup {
    version: CgroupVersion,
    dir: PathBuf,
}

impl Cgroups {
    /// The place that [`MemoryLimits::Enforced`] names.
    pub(crate) fn new(version: CgroupVersion, parent: PathBuf) -> Cgroups {
        Cgroups { version, parent }
    }

    /// Finds the daemon's memory cgroup and checks that a child cgroup can be made, limited
    /// and entered.
    pub(crate) async fn detect(mode: CgroupMode) -> (Option<Cgroups>, MemoryLimits) {
        let not = |reason: String| (None, MemoryLimits::NotEnforced { reason });
        if mode == CgroupMode::Off {
            return not("cgroups are turned off in the configuration".to_owned());
        }
        let cgroups = match Cgroups::locate() {
            Ok(cgroups) => cgroups,
            Err(reason) => return not(reason),
        };
        if let Err(reason) = cgroups.probe().await {
            return not(reason);
        }
        let limits = MemoryLimits::Enforced {
            version: cgroups.version,
            parent: cgroups.parent.clone(),
        };
        (Some(cgroups), limits)
    }

    /// Finds `<own memory cgroup>/nap` and creates it (on v2 with the memory controller enabled
    /// for its children).
    fn locate() -> Result<Cgroups, String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let membership = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let mounts = parse_mountinfo(&mountinfo);

        // A controller is bound to one hierarchy at a time: if v1 has `memory`, v2 has not.
        if let Some(mount) = mounts.iter().find(|m| m.is_v1_memory()) {
            let own = membership
                .lines()
                .filter_map(split_membership)
                .find(|(_, controllers, _)| controllers.split(',').any(|c| c == "memory"))
                .map(|(_, _, path)| path)
                .ok_or("this process is in no memory cgroup")?;
            let base = mount.path_of(own);
            let parent = base.join("nap");
            create_dir(&parent)?;
            return Ok(Cgroups {
                version: CgroupVersion::V1,
                parent,
            });
        }

        let mount = mounts
            .iter()
            .find(|m| m.fstype == "cgroup2")
            .ok_or("no cgroup v1 memory hierarchy and no cgroup v2 hierarchy is mounted")?;
        let own = membership
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .ok_or("this process is in no cgroup v2 cgroup")?;
        let base = mount.path_of(own);
        let controllers = read(&base.join("cgroup.controllers"))?;
        if !controllers.split_whitespace().any(|c| c == "memory") {
            return Err(format!(
                "the memory controller is not available in {}",
                base.display()
            ));
        }
        enable_memory_controller(&base)?;
        let parent = base.join("nap");
        create_dir(&parent)?;
        enable_memory_controller(&parent)?;
        Ok(Cgroups {
            version: CgroupVersion::V2,
            parent,
        })
    }

    /// Makes a cgroup with a limit and moves a short-lived process into it, the way instances
    /// will be started.
    async fn probe(&self) -> Result<(), String> {
        let cgroup = self
            .create("probe")
            .map_err(|e| format!("cannot create a cgroup in {}: {e}", self.parent.display()))?;
        let result = async {
            cgroup.set_memory_limit(1 << 30).map_err(|e| {
                format!("cannot set a memory limit in {}: {e}", cgroup.dir.display())
            })?;
            let status = tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(nap_sandbox::join_cgroup(1, JOIN_FAILED_STATUS))
                .arg("sh")
                .arg(&cgroup.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .map_err(|e| format!("cannot run /bin/sh: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "cannot move a process into {}",
                    cgroup.dir.display()
                ));
            }
            Ok(())
        }
        .await;
        if let Err(error) = cgroup.remove() {
            tracing::warn!(dir = %cgroup.dir.display(), %error, "cannot remove probe cgroup");
        }
        result
    }

    /// Creates a fresh cgroup named `STEM` (or `STEM.N` if another daemon sharing this parent
    /// already has a `STEM`).
    pub(crate) fn create(&self, stem: &str) -> io::Result<Cgroup> {
        static UNIQUE: AtomicU64 = AtomicU64::new(1);
        let mut dir = self.parent.join(stem);
        loop {
            match fs::create_dir(&dir) {
                Ok(()) => {
                    return Ok(Cgroup {
                        version: self.version,
                        dir,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
                    dir = self.parent.join(format!("{stem}.{n}"));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Cgroup {
    /// A cgroup made by an earlier daemon, as named in its pid record.
    pub(crate) fn existing(dir: PathBuf) -> Cgroup {
        let version = if dir.join("memory.limit_in_bytes").exists() {
            CgroupVersion::V1
        } else {
            CgroupVersion::V2
        };
        Cgroup { version, dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn set_memory_limit(&self, bytes: u64) -> io::Result<()> {
        match self.version {
            CgroupVersion::V1 => {
                fs::write(self.dir.join("memory.limit_in_bytes"), bytes.to_string())?;
                // Without a memory+swap limit a process over its limit swaps instead of being
                // killed. The file is missing when swap accounting is off; that is fine.
                let _ = fs::write(
                    self.dir.join("memory.memsw.limit_in_bytes"),
                    bytes.to_string(),
                );
                Ok(())
            }
            CgroupVersion::V2 => {
                fs::write(self.dir.join("memory.max"), bytes.to_string())?;
                let _ = fs::write(self.dir.join("memory.swap.max"), "0");
                Ok(())
            }
        }
    }

    /// Bytes in use by the cgroup's processes.
    pub(crate) fn memory_used(&self) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V1 => "memory.usage_in_bytes",
            CgroupVersion::V2 => "memory.current",
        };
        fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub(crate) fn oom_kills(&self) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V1 => "memory.oom_control",
            CgroupVersion::V2 => "memory.events",
        };
        let text = fs::read_to_string(self.dir.join(file)).ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix("oom_kill "))?
            .trim()
            .parse()
            .ok()
    }

    /// The processes in the cgroup (exited ones are not listed, even before they are reaped).
    pub(crate) fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Removes the cgroup; it must have no processes left. A cgroup that is already gone is
    /// fine.
    pub(crate) fn remove(&self) -> io::Result<()> {
        match fs::remove_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// Splits a `/proc/self/cgroup` line, `ID:CONTROLLERS:PATH`.
fn split_membership(line: &str) -> Option<(&str, &str, &str)> {
    let mut parts = line.splitn(3, ':');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// One cgroup mount from `/proc/self/mountinfo`.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    /// The path inside the hierarchy that is mounted (`/` unless in a cgroup namespace or a
    /// bind mount).
    root: String,
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

impl Mount {
    fn is_v1_memory(&self) -> bool {
        self.fstype == "cgroup" && self.super_options.split(',').any(|o| o == "memory")
    }

    /// The directory of cgroup `path` (as `/proc/self/cgroup` names it) under this mount.
    fn path_of(&self, path: &str) -> PathBuf {
        let relative = if self.root == "/" {
            Some(path)
        } else {
            path.strip_prefix(self.root.as_str())
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        match relative {
            Some(relative) => self.mount_point.join(relative.trim_start_matches('/')),
            // Our cgroup is outside what is mounted (a namespace quirk): use the mount's top.
            None => self.mount_point.clone(),
        }
    }
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            if !fstype.starts_with("cgroup") {
                return None;
            }
            let _source = right.next()?;
            Some(Mount {
                root: unescape_octal(left.get(3)?),
                mount_point: PathBuf::from(unescape_octal(left.get(4)?)),
                fstype: fstype.to_owned(),
                super_options: right.next().unwrap_or("").to_owned(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in paths as `\040` etc.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && let Ok(byte) = u8::from_str_radix(digits, 8)
        {
            out.push(byte);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn create_dir(dir: &Path) -> Result<(), String> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(format!("cannot create {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Makes the `memory` controller available to the children of v2 cgroup `dir`.
fn enable_memory_controller(dir: &Path) -> Result<(), String> {
    let file = dir.join("cgroup.subtree_control");
    if read(&file)?.split_whitespace().any(|c| c == "memory") {
        return Ok(());
    }
    fs::write(&file, "+memory").map_err(|e| {
        format!(
            "cannot enable the memory controller in {} ({e}); on cgroup v2 the daemon's cgroup \
             must be delegated to it and hold no processes itself",
            file.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_mounts_are_read_from_mountinfo() {
        let text = "\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 /kubepods/pod1 /sys/fs/cgroup/my\\040dir rw - cgroup2 cgroup2 rw,nsdelegate
22 1 8:1 / / rw,relatime - ext4 /dev/root rw
";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 3);
        assert!(mounts[0].is_v1_memory());
        assert!(!mounts[1].is_v1_memory());
        assert_eq!(
            mounts[0].path_of("/process_api/abc"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(
            mounts[2].mount_point,
            PathBuf::from("/sys/fs/cgroup/my dir")
        );
        assert_eq!(
            mounts[2].path_of("/kubepods/pod1/ctr"),
            PathBuf::from("/sys/fs/cgroup/my dir/ctr")
        );
        assert_eq!(
            mounts[2].path_of("/elsewhere"),
            PathBuf::from("/sys/fs/cgroup/my dir")
        );
    }

    #[tokio::test]
    async fn turned_off_means_not_enforced() {
        let (cgroups, limits) = Cgroups::detect(CgroupMode::Off).await;
        assert!(cgroups.is_none());
        assert!(matches!(limits, MemoryLimits::NotEnforced { .. }));
    }
}
