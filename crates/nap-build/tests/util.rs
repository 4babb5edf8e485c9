//! Fixtures: a fake nap data directory outside `/tmp` (the sandbox has a `/tmp` of its own),
//! a probed sandbox, one app's storage and cache, and release trees to build.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nap_build::{BuildError, BuildRequest, Built};
use nap_sandbox::{Identity, Protected, Sandbox, SandboxOptions};

/// Long enough for a cold pip or npm install on a loaded 2-core machine.
pub const BUILD_LIMIT: Duration = Duration::from_secs(120);

pub struct Fixture {
    _root: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub storage: PathBuf,
    pub cache: PathBuf,
    pub identity: Identity,
    pub sandbox: Sandbox,
    releases: AtomicU32,
    _socket: UnixListener,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let root = tempfile::Builder::new()
            .prefix("nap-build-test.")
            .tempdir_in("/var/tmp")
            .expect("temp dir in /var/tmp");
        let data_dir = root.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("data dir");
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod data dir");
        let control_socket = data_dir.join("nap.sock");
        let socket = UnixListener::bind(&control_socket).expect("listen on nap.sock");
        let identity = if nix::unistd::geteuid().is_root() {
            let uid = next_app_uid();
            Identity::AppUser { uid, gid: uid }
        } else {
            Identity::DaemonUser
        };
        let storage = data_dir.join("storage/myapp");
        nap_sandbox::prepare_writable_dir(&storage, identity).expect("storage");
        let cache = data_dir.join("cache/myapp");
        nap_sandbox::prepare_writable_dir(&cache, identity).expect("cache");
        let sandbox = Sandbox::probe(&SandboxOptions {
            bwrap: None,
            ro_paths: Vec::new(),
            protected: Protected {
                data_dir: data_dir.clone(),
                home: None,
                control_socket,
            },
            state_dir: data_dir.join("sandbox"),
        })
        .await
        .expect("a sandbox can be made on this host");
        Fixture {
            _root: root,
            data_dir,
            storage,
            cache,
            identity,
            sandbox,
            releases: AtomicU32::new(0),
            _socket: socket,
        }
    }

    /// A new release tree holding `files` (path, contents), owned by the app as the deployer
    /// makes it.
    pub fn release(&self, files: &[(&str, &str)]) -> PathBuf {
        let n = self.releases.fetch_add(1, Ordering::Relaxed) + 1;
        let release = self.data_dir.join(format!("apps/myapp/releases/v{n}"));
        std::fs::create_dir_all(&release).expect("release dir");
        for (path, contents) in files {
            write(&release.join(path), contents);
        }
        if let Identity::AppUser { uid, gid } = self.identity {
            std::os::unix::fs::chown(&release, Some(uid), Some(gid)).expect("chown release");
        }
        std::fs::set_permissions(&release, std::fs::Permissions::from_mode(0o755))
            .expect("chmod release");
        release
    }

    pub fn request(&self, release: &Path, env: &[(&str, &str)]) -> BuildRequest {
        BuildRequest {
            app: "myapp".to_owned(),
            release: release.to_owned(),
            storage: self.storage.clone(),
            cache: self.cache.clone(),
            env: vars(env),
            identity: self.identity,
            build_command: None,
            time_limit: BUILD_LIMIT,
            memory_cgroup: None,
        }
    }

    /// Builds, collecting what the pusher would see.
    pub async fn build(&self, request: &BuildRequest) -> (Result<Built, BuildError>, Vec<String>) {
        let mut lines = Vec::new();
        let mut sink = |line: &str| lines.push(line.to_owned());
        let result = nap_build::build(&self.sandbox, request, &mut sink).await;
        (result, lines)
    }

    /// Runs `command` in `release` as its release phase, returning the code and every line.
    pub async fn run_in(&self, release: &Path, command: &str) -> (i32, Vec<String>) {
        let request = nap_build::ReleasePhaseRequest {
            app: "myapp".to_owned(),
            command: command.to_owned(),
            release: release.to_owned(),
            storage: self.storage.clone(),
            env: BTreeMap::new(),
            identity: self.identity,
            time_limit: BUILD_LIMIT,
            memory_cgroup: None,
        };
        let mut lines = Vec::new();
        let mut sink = |line: &str| lines.push(line.to_owned());
        let ended = nap_build::run_release_phase(&self.sandbox, &request, &mut sink)
            .await
            .expect("the release phase runs");
        (ended.code, lines)
    }
}

pub fn vars(env: &[(&str, &str)]) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A uid for the next fixture's app, different for every fixture of every test process.
fn next_app_uid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    230_000 + (std::process::id() % 1000) * 20 + NEXT.fetch_add(1, Ordering::Relaxed) % 20
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// Whether the build's output shows `line` (indented as the pusher sees it).
pub fn shows(lines: &[String], line: &str) -> bool {
    lines.iter().any(|l| l == &format!("       {line}"))
}

/// The live (not zombie) processes whose command line holds `marker`.
pub fn live_processes_with(marker: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32)
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let state = stat[stat.rfind(')')? + 2..].chars().next()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (state != 'Z' && state != 'X' && cmdline.contains(marker))
                .then(|| format!("{pid} {state} {cmdline}"))
        })
        .collect()
}
