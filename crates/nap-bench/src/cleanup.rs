//! Everything the benchmark starts is stopped again: child processes are held by
//! [`ChildGuard`]s that kill on drop, temp directories by [`BenchDir`]s that first kill
//! every process still working inside them (nap's instances), then delete them. A
//! Ctrl-C or SIGTERM runs the same cleanup for everything still registered.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// What is still running or on disk, for the signal handler.
struct Registry {
    procs: Vec<(u32, bool)>,
    dirs: Vec<PathBuf>,
    users: Vec<String>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    procs: Vec::new(),
    dirs: Vec::new(),
    users: Vec::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// On SIGINT, SIGTERM or SIGHUP: stop everything registered, delete the temp dirs, exit 130.
pub fn install_signal_handler() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime for signal handling")?;
    // Register the handlers now, on this thread, so a signal that arrives at once is caught.
    let (mut int, mut term, mut hup) = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        anyhow::Ok((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        ))
    })?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
        });
        eprintln!("nap-bench: interrupted; stopping everything it started");
        emergency_cleanup();
        std::process::exit(130);
    });
    Ok(())
}

fn emergency_cleanup() {
    let (procs, dirs, users) = {
        let registry = registry();
        (
            registry.procs.clone(),
            registry.dirs.clone(),
            registry.users.clone(),
        )
    };
    for &(pid, group) in &procs {
        signal(pid, group, Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && procs.iter().any(|&(pid, _)| alive(pid)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &(pid, group) in &procs {
        signal(pid, group, Signal::SIGKILL);
    }
    for dir in &dirs {
        kill_processes_in(dir);
        let _ = std::fs::remove_dir_all(dir);
    }
    for user in &users {
        delete_user(user);
    }
}

fn delete_user(name: &str) {
    let _ = std::process::Command::new("userdel")
        .arg(name)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// A system user made for the reference sshd's sessions (shell /bin/sh, no dotfiles), so
/// that the reference measures sshd + git and not the benchmark user's shell startup
/// files. Deleted on drop.
pub struct TempUser {
    pub name: String,
}

impl TempUser {
    /// `useradd --system -M -d HOME -s /bin/sh NAME`.
    pub fn create(home: &Path) -> anyhow::Result<TempUser> {
        let name = format!("napbench{}", std::process::id() % 100_000);
        let output = std::process::Command::new("useradd")
            // `-p '*'`: no password, but not locked ("!"), which sshd without PAM refuses.
            .args(["--system", "-M", "-p", "*", "-s", "/bin/sh", "-d"])
            .arg(home)
            .arg(&name)
            .output()
            .context("cannot run useradd")?;
        if !output.status.success() {
            anyhow::bail!(
                "useradd {name} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        registry().users.push(name.clone());
        Ok(TempUser { name })
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        delete_user(&self.name);
        registry().users.retain(|u| u != &self.name);
    }
}

fn signal(pid: u32, group: bool, signal: Signal) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if group {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
    let _ = kill(Pid::from_raw(pid), signal);
}

/// Whether `pid` runs (a zombie does not count).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// SIGKILLs every process whose working directory is `dir` or below it: nap's instances
/// run in their release directories, so none can outlive the benchmark.
pub fn kill_processes_in(dir: &Path) -> usize {
    let own = std::process::id();
    let mut killed = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(dir)
            && alive(pid)
        {
            signal(pid, false, Signal::SIGKILL);
            killed += 1;
        }
    }
    killed
}

/// A child process, stopped when dropped: SIGTERM (to its process group too, if it leads
/// one), then SIGKILL if it has not exited after a while.
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
    group: bool,
}

impl ChildGuard {
    /// Holds `child`; `group` when it was spawned as leader of its own process group.
    pub fn new(child: Child, name: &str, group: bool) -> Self {
        registry().procs.push((child.id(), group));
        ChildGuard {
            child: Some(child),
            name: name.to_owned(),
            group,
        }
    }

    /// Whether the process has exited (or was stopped already).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|child| !matches!(child.try_wait(), Ok(None)))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops the process and waits for it; `None` if it had to be killed.
    pub fn stop(&mut self, patience: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.id();
        registry().procs.retain(|&(p, _)| p != pid);
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        signal(pid, self.group, Signal::SIGTERM);
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                if self.group {
                    signal(pid, true, Signal::SIGKILL);
                }
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "nap-bench: {} (pid {pid}) did not stop in {patience:?}; killing it",
            self.name
        );
        signal(pid, self.group, Signal::SIGKILL);
        let _ = child.wait();
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}

/// A temp directory; on drop, every process working inside it is killed, then it is deleted.
pub struct BenchDir {
    dir: Option<tempfile::TempDir>,
}

impl BenchDir {
    /// A new directory below the system temp dir.
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }

    /// A new directory below `parent`.
    pub fn new_in(parent: &Path, prefix: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a temp dir in {}", parent.display()))?;
        registry().dirs.push(dir.path().to_owned());
        Ok(BenchDir { dir: Some(dir) })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            let killed = kill_processes_in(&path);
            if killed > 0 {
                eprintln!(
                    "nap-bench: killed {killed} leftover process(es) in {}",
                    path.display()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            registry().dirs.retain(|d| d != &path);
            if let Err(error) = dir.close() {
                eprintln!("nap-bench: cannot remove {}: {error}", path.display());
            }
        }
    }
}
