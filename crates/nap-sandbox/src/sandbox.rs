//! Finding bwrap and proving, once at daemon start, that a sandbox can be made here.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::etc::{EtcCopies, extras_for};
use crate::launch::{RootEntry, SETPRIV, base_host_paths, host_root_entries};
use crate::policy::{Identity, Policy, prepare_writable_dir};
use crate::ro_paths::{Protected, ResolvedProtected, RoPathError, RoPaths, check_ro_paths};

/// What every message about a missing sandbox ends with: the operator's way out.
const ESCAPE_HATCH: &str = "or set `isolation: none` to run apps without a sandbox \
                            (every app can then read nap's data directory)";

/// How long the test sandbox may take (it normally takes a few milliseconds).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// bwrap's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BwrapVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl fmt::Display for BwrapVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl BwrapVersion {
    /// Reads `bwrap --version`'s answer, `bubblewrap 0.8.0`.
    pub fn parse(output: &str) -> Option<BwrapVersion> {
        let version = output.trim().strip_prefix("bubblewrap ")?;
        let mut numbers = version
            .split(|c: char| !c.is_ascii_digit())
            .map(|part| part.parse::<u32>());
        Some(BwrapVersion {
            major: numbers.next()?.ok()?,
            minor: numbers.next()?.ok()?,
            patch: numbers.next().and_then(Result::ok).unwrap_or(0),
        })
    }

    /// The oldest bwrap nap can use: 0.5.0 as root (`--clearenv`, `--perms` on tmpfs), 0.8.0
    /// as an ordinary user (`--disable-userns`).
    pub fn minimum(as_root: bool) -> BwrapVersion {
        if as_root {
            BwrapVersion {
                major: 0,
                minor: 5,
                patch: 0,
            }
        } else {
            BwrapVersion {
                major: 0,
                minor: 8,
                patch: 0,
            }
        }
    }
}

/// What [`Sandbox::probe`] needs.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// bwrap's path; `None` looks for `bwrap` in `PATH`.
    pub bwrap: Option<PathBuf>,
    /// The operator's extra read-only paths (`sandbox_ro_paths`), checked by the probe.
    pub ro_paths: Vec<PathBuf>,
    /// What no sandbox may show.
    pub protected: Protected,
    /// A directory of nap's own (such as `DATA/sandbox`) where the sandbox keeps the copies
    /// of host files it shows apps under `/etc`; made if missing.
    pub state_dir: PathBuf,
}

/// A sandbox that is known to work on this host: what [`Sandbox::launch`] builds on.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub(crate) bwrap: PathBuf,
    version: BwrapVersion,
    pub(crate) euid: u32,
    pub(crate) egid: u32,
    pub(crate) root_entries: Vec<RootEntry>,
    pub(crate) etc: EtcCopies,
    pub(crate) state_dir: PathBuf,
    pub(crate) ro_paths: RoPaths,
}

/// Why no sandbox can be made here; each message says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// bwrap is not there.
    #[error(
        "bubblewrap is not installed ({looked_for}): install bubblewrap \
         (apt-get install bubblewrap), {ESCAPE_HATCH}"
    )]
    NotInstalled {
        /// Where it was looked for.
        looked_for: String,
    },
    /// Something answers, but not as bwrap does.
    #[error(
        "{} does not look like bubblewrap (`--version` said {output:?}): install bubblewrap \
         (apt-get install bubblewrap), {ESCAPE_HATCH}",
        bwrap.display()
    )]
    Unrecognized {
        /// The program that was run.
        bwrap: PathBuf,
        /// What it printed.
        output: String,
    },
    /// bwrap is older than nap needs.
    #[error(
        "{} is bubblewrap {found}, too old: nap needs {needed} or newer {why}; install a newer \
         bubblewrap (Debian 12 and Ubuntu 24.04 have 0.8), {ESCAPE_HATCH}",
        bwrap.display()
    )]
    TooOld {
        /// The program.
        bwrap: PathBuf,
        /// Its version.
        found: BwrapVersion,
        /// The oldest that works.
        needed: BwrapVersion,
        /// Why that one.
        why: &'static str,
    },
    /// nap runs as root and cannot switch to the apps' uids.
    #[error(
        "{SETPRIV} is missing: nap running as root needs it to switch each app to its own uid \
         (install util-linux), {ESCAPE_HATCH}"
    )]
    NoSetpriv,
    /// nap runs as an ordinary user, and the kernel refuses it a user namespace.
    #[error(
        "bwrap cannot make a user namespace ({bwrap_said}): nap runs as uid {uid}, so each \
         sandbox needs an unprivileged user namespace. {advice}. Or run nap as root (apps then \
         get uids of their own), {ESCAPE_HATCH}",
        advice = advice.join("; ")
    )]
    UserNamespaces {
        /// nap's uid.
        uid: u32,
        /// bwrap's error.
        bwrap_said: String,
        /// What to change, from the host's settings.
        advice: Vec<String>,
    },
    /// The test sandbox failed for another reason.
    #[error("a test sandbox (bwrap running `true`) failed, {status}: {bwrap_said}; {ESCAPE_HATCH}")]
    Failed {
        /// How it ended.
        status: String,
        /// What bwrap printed.
        bwrap_said: String,
    },
    /// One of nap's own paths lies inside what every sandbox sees.
    #[error(
        "{what} {} lies inside {}, which every sandbox sees read-only: move it elsewhere, \
         {ESCAPE_HATCH}",
        path.display(),
        visible.display()
    )]
    Exposed {
        /// `the data directory`, ...
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The host path the sandbox shows.
        visible: PathBuf,
    },
    /// An operator's read-only path is refused.
    #[error(transparent)]
    RoPath(#[from] RoPathError),
    /// The probe's scratch directory or the sandbox's state could not be made.
    #[error("cannot make the sandbox's files in {}: {source}", dir.display())]
    Scratch {
        /// Where.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Sandbox {
    /// Finds bwrap, checks its version and the operator's paths, and runs `true` in a
    /// sandbox made exactly as instances' are (as root: with an app uid; otherwise: nap's uid
    /// in a user namespace). For daemon start: a sandbox that cannot be made is an error,
    /// never a silent fallback.
    pub async fn probe(options: &SandboxOptions) -> Result<Sandbox, ProbeError> {
        let bwrap = match &options.bwrap {
            Some(path) if path.is_file() => path.clone(),
            Some(path) => {
                return Err(ProbeError::NotInstalled {
                    looked_for: path.display().to_string(),
                });
            }
            None => find_in_path("bwrap", std::env::var_os("PATH")).ok_or_else(|| {
                ProbeError::NotInstalled {
                    looked_for: "no bwrap in PATH".to_owned(),
                }
            })?,
        };
        let version = bwrap_version(&bwrap).await?;
        let euid = nix::unistd::geteuid().as_raw();
        let egid = nix::unistd::getegid().as_raw();
        let as_root = euid == 0;
        let needed = BwrapVersion::minimum(as_root);
        if version < needed {
            return Err(ProbeError::TooOld {
                bwrap,
                found: version,
                needed,
                why: if as_root {
                    "(for --clearenv and --perms)"
                } else {
                    "when it runs as an ordinary user (for --disable-userns)"
                },
            });
        }
        if as_root && !Path::new(SETPRIV).is_file() {
            return Err(ProbeError::NoSetpriv);
        }

        let ro_paths = check_ro_paths(&options.ro_paths, &options.protected)?;
        let root_entries = host_root_entries();
        let protected = ResolvedProtected::new(&options.protected);
        let visible = base_host_paths(&root_entries)
            .into_iter()
            .chain(ro_paths.bound.iter().map(|(resolved, _)| resolved.clone()));
        for visible in visible {
            if let Some((what, path)) = protected.all().find(|(_, p)| p.starts_with(&visible)) {
                return Err(ProbeError::Exposed {
                    what,
                    path: path.to_owned(),
                    visible,
                });
            }
        }

        let sandbox = Sandbox {
            bwrap,
            version,
            euid,
            egid,
            root_entries,
            etc: EtcCopies::new(&options.state_dir, extras_for(&ro_paths)),
            state_dir: options.state_dir.clone(),
            ro_paths,
        };
        let etc = sandbox
            .etc
            .current()
            .map_err(|source| ProbeError::Scratch {
                dir: options.state_dir.clone(),
                source,
            })?;
        // No sandbox of an earlier daemon runs any more: older copies can go.
        sandbox.etc.remove_all_but(&etc);
        sandbox.run_true().await?;
        tracing::info!(bwrap = %sandbox.bwrap.display(), %version, as_root, "sandbox works");
        Ok(sandbox)
    }

    /// The bwrap in use.
    pub fn bwrap(&self) -> &Path {
        &self.bwrap
    }

    /// Its version.
    pub fn version(&self) -> BwrapVersion {
        self.version
    }

    /// Whether nap runs as root, so that apps need [`Identity::AppUser`] (and otherwise
    /// [`Identity::DaemonUser`]).
    pub fn runs_as_root(&self) -> bool {
        self.euid == 0
    }

    /// The operator's read-only paths as checked (with those skipped because missing).
    pub fn ro_paths(&self) -> &RoPaths {
        &self.ro_paths
    }

    async fn run_true(&self) -> Result<(), ProbeError> {
        let temp = std::env::temp_dir();
        let scratch = tempfile::Builder::new()
            .prefix("nap-sandbox-probe.")
            .tempdir()
            .map_err(|source| ProbeError::Scratch {
                dir: temp.clone(),
                source,
            })?;
        let identity = if self.runs_as_root() {
            // Any uid other than root's shows whether the switch works; the probe writes
            // nothing.
            Identity::AppUser {
                uid: 65534,
                gid: 65534,
            }
        } else {
            Identity::DaemonUser
        };
        let release = scratch.path().join("release");
        let storage = scratch.path().join("storage");
        let made = std::fs::create_dir(&release)
            .and_then(|()| prepare_writable_dir(&storage, identity))
            .map_err(|source| ProbeError::Scratch { dir: temp, source });
        made?;
        let policy = Policy {
            release,
            release_writable: false,
            storage,
            cache: None,
            env: Default::default(),
            identity,
        };
        let launch = self
            .launch(&policy, &["/bin/true"])
            .map_err(|error| ProbeError::Failed {
                status: "not started".to_owned(),
                bwrap_said: error.to_string(),
            })?;
        let mut command = launch.command("");
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = launch
            .spawn(&mut command)
            .map_err(|error| ProbeError::Failed {
                status: "not started".to_owned(),
                bwrap_said: format!("cannot run /bin/sh: {error}"),
            })?;
        let output = match tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => {
                return Err(ProbeError::Failed {
                    status: "lost".to_owned(),
                    bwrap_said: error.to_string(),
                });
            }
            Err(_elapsed) => {
                return Err(ProbeError::Failed {
                    status: format!("still running after {PROBE_TIMEOUT:?}"),
                    bwrap_said: String::new(),
                });
            }
        };
        if output.status.success() {
            return Ok(());
        }
        let bwrap_said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if identity == Identity::DaemonUser && mentions_user_namespaces(&bwrap_said) {
            return Err(ProbeError::UserNamespaces {
                uid: self.euid,
                bwrap_said,
                advice: userns_advice(|path| std::fs::read_to_string(path).ok()),
            });
        }
        Err(ProbeError::Failed {
            status: describe(output.status),
            bwrap_said,
        })
    }
}

async fn bwrap_version(bwrap: &Path) -> Result<BwrapVersion, ProbeError> {
    let output = tokio::process::Command::new(bwrap)
        .arg("--version")
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|error| ProbeError::NotInstalled {
            looked_for: format!("{}: {error}", bwrap.display()),
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    BwrapVersion::parse(&text).ok_or_else(|| ProbeError::Unrecognized {
        bwrap: bwrap.to_owned(),
        output: text.trim().to_owned(),
    })
}

fn find_in_path(program: &str, path: Option<OsString>) -> Option<PathBuf> {
    std::env::split_paths(&path?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Whether bwrap's error is about making the user namespace (or its uid map).
fn mentions_user_namespaces(bwrap_said: &str) -> bool {
    let said = bwrap_said.to_ascii_lowercase();
    ["namespace", "uid map", "setgroups", "uid_map"]
        .iter()
        .any(|word| said.contains(word))
}

/// What to change so that an ordinary user may make user namespaces, from the sysctls that
/// forbid it (`read` returns a file's contents).
pub(crate) fn userns_advice(read: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let is = |path: &str, value: &str| read(path).is_some_and(|text| text.trim() == value);
    let mut advice = Vec::new();
    if is("/proc/sys/kernel/unprivileged_userns_clone", "0") {
        advice.push(
            "kernel.unprivileged_userns_clone is 0: enable it with \
             `sysctl -w kernel.unprivileged_userns_clone=1`"
                .to_owned(),
        );
    }
    if is("/proc/sys/user/max_user_namespaces", "0") {
        advice.push(
            "user.max_user_namespaces is 0: raise it with \
             `sysctl -w user.max_user_namespaces=10000`"
                .to_owned(),
        );
    }
    if is(
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
    ) {
        advice.push(
            "kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 23.10 and later): give \
             bwrap an AppArmor profile that allows `userns`, or \
             `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
                .to_owned(),
        );
    }
    if advice.is_empty() {
        advice.push(
            "Check that unprivileged user namespaces are enabled (sysctls \
             kernel.unprivileged_userns_clone, user.max_user_namespaces, \
             kernel.apparmor_restrict_unprivileged_userns)"
                .to_owned(),
        );
    }
    advice
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_and_compared() {
        let v = |text| BwrapVersion::parse(text);
        assert_eq!(
            v("bubblewrap 0.8.0\n"),
            Some(BwrapVersion {
                major: 0,
                minor: 8,
                patch: 0
            })
        );
        assert_eq!(
            v("bubblewrap 0.11.1").map(|v| v.to_string()),
            Some("0.11.1".into())
        );
        assert_eq!(
            v("bubblewrap 0.6").map(|v| v.to_string()),
            Some("0.6.0".into())
        );
        assert_eq!(v("bwrap 1.0"), None);
        assert_eq!(v(""), None);
        assert!(v("bubblewrap 0.6.1") < Some(BwrapVersion::minimum(false)));
        assert!(v("bubblewrap 0.6.1") > Some(BwrapVersion::minimum(true)));
        assert!(v("bubblewrap 0.10.0") > Some(BwrapVersion::minimum(false)));
    }

    #[test]
    fn user_namespace_advice_names_the_sysctl_that_forbids_them() {
        let host = |values: &'static [(&'static str, &'static str)]| {
            move |path: &str| {
                values
                    .iter()
                    .find(|(p, _)| path.ends_with(p))
                    .map(|(_, v)| format!("{v}\n"))
            }
        };
        let debian_old = userns_advice(host(&[
            ("unprivileged_userns_clone", "0"),
            ("max_user_namespaces", "15000"),
        ]));
        assert_eq!(debian_old.len(), 1);
        assert!(debian_old[0].contains("sysctl -w kernel.unprivileged_userns_clone=1"));

        let ubuntu = userns_advice(host(&[
            ("max_user_namespaces", "15000"),
            ("apparmor_restrict_unprivileged_userns", "1"),
        ]));
        assert_eq!(ubuntu.len(), 1);
        assert!(ubuntu[0].contains("kernel.apparmor_restrict_unprivileged_userns"));

        let hardened = userns_advice(host(&[("max_user_namespaces", "0")]));
        assert!(hardened[0].contains("sysctl -w user.max_user_namespaces="));

        let unknown = userns_advice(host(&[("max_user_namespaces", "15000")]));
        assert!(unknown[0].contains("user.max_user_namespaces"));
        assert!(unknown[0].contains("kernel.unprivileged_userns_clone"));
    }
}
