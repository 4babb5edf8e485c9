//! The fake machines' systemd: runs each launched unit as a fleet machine's
//! systemd would, so that what the units do (fetch their release with
//! their URL and token, unpack it, start the app) happens, and fails, as on
//! a real cluster.
//!
//! Each machine has a directory of its own standing in for its `/var/lib`,
//! `/run`, `/var/cache`, `/var/log` and, for `EnvironmentFile=`, `/etc`.
//! Every command of a unit runs in bubblewrap with those directories
//! mounted in their places, so the unit's paths (`%S/…`, `%t/…`) work
//! unchanged, and in a PID namespace of its own, so that stopping a unit
//! kills everything it started. Of the sandbox options the fake applies
//! those that decide what a command sees where: `BindPaths=`,
//! `BindReadOnlyPaths=`, `TemporaryFileSystem=`, and for unprivileged
//! commands `InaccessiblePaths=` and `PrivateTmp=`, as systemd does.
//! `User=`, `DynamicUser=` and the other protections are not applied:
//! commands run as the test's user (the real systemd run of the units is in
//! nap-fleet's tests).
//!
//! A unit runs `ExecStartPre=` in order, then `ExecStart=`; it is
//! `activating/start-pre` until then, `active/running` while the main
//! command runs. When a command fails, or the main command exits, the unit
//! runs `ExecStopPost=` (with `$SERVICE_RESULT`), then either restarts
//! after `RestartSec=` (`activating/auto-restart` meanwhile) as `Restart=`
//! says, or ends `failed/failed` (`inactive/dead` after a clean exit). A
//! unit deleted from fleet is killed without its stop commands, as fleet's
//! unload path does (it removes the unit file while systemd stops the
//! unit); a unit fleet only stops (`loaded`) runs `ExecStopPost=`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::systemd::{self, CACHE_DIR, ExecCommand, LOGS_DIR, RUNTIME_DIR, STATE_DIR, Service};
use super::{Shared, lock};
use crate::unit::UnitOption;

/// What the test output says about the fake's machines.
pub const RUNS_UNITS: &str = "fake fleet: runs ExecStartPre, ExecStart and ExecStopPost of each launched unit (in bubblewrap, as the test's user; systemd's own sandbox is not applied)";

/// How a unit stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Deleted from fleet, or its machine is gone: killed, nothing more runs.
    Unloaded,
    /// fleet asked for `loaded`: killed, then `ExecStopPost=`.
    Stopped,
}

struct Runner {
    machine: String,
    options: Vec<UnitOption>,
    stop: watch::Sender<Option<Stop>>,
    task: JoinHandle<()>,
}

/// The machines' systemd: which unit runs where.
pub(crate) struct Executor {
    root: PathBuf,
    runtime: tokio::runtime::Handle,
    runners: HashMap<String, Runner>,
    /// Which run of a unit may report its state.
    current: HashMap<String, u64>,
    next_generation: u64,
}

impl Drop for Executor {
    fn drop(&mut self) {
        for runner in self.runners.values() {
            runner.task.abort();
        }
    }
}

impl Executor {
    pub(crate) fn new(root: PathBuf) -> Executor {
        Executor {
            root,
            runtime: tokio::runtime::Handle::current(),
            runners: HashMap::new(),
            current: HashMap::new(),
            next_generation: 1,
        }
    }

    /// The directory standing in for machine `id`'s file system.
    pub(crate) fn machine_root(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// What the units of `name` wrote to their standard output and error,
    /// and what the fake did with them.
    pub(crate) fn journal(&self, name: &str) -> String {
        std::fs::read_to_string(journal_path(&self.root, name)).unwrap_or_default()
    }

    /// Starts the units of `wanted` (name: machine and options) that are not
    /// running, and stops those that should not run anymore (or run
    /// elsewhere, or changed). `still_there(unit, machine)`: whether the
    /// unit is still in fleet and the machine in the cluster (then the
    /// unit's stop commands run).
    pub(crate) fn reconcile(
        &mut self,
        shared: &Shared,
        wanted: &BTreeMap<String, (String, Vec<UnitOption>)>,
        still_there: &dyn Fn(&str, &str) -> bool,
        runs: &mut BTreeMap<String, (String, String)>,
    ) {
        let doomed: Vec<String> = self
            .runners
            .iter()
            .filter(|(name, runner)| {
                wanted.get(*name).is_none_or(|(machine, options)| {
                    *machine != runner.machine || *options != runner.options
                })
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in doomed {
            let Some(runner) = self.runners.remove(&name) else {
                continue;
            };
            let how = if still_there(&name, &runner.machine) {
                Stop::Stopped
            } else {
                Stop::Unloaded
            };
            if how == Stop::Unloaded {
                self.current.remove(&name);
                runs.remove(&name);
            } else {
                runs.insert(name.clone(), ("deactivating".into(), "stop".into()));
            }
            // The runner ends by itself once it has stopped its commands.
            let _ = runner.stop.send(Some(how));
        }
        for (name, (machine, options)) in wanted {
            if self.runners.contains_key(name) {
                continue;
            }
            let generation = self.next_generation;
            self.next_generation += 1;
            self.current.insert(name.clone(), generation);
            runs.insert(name.clone(), ("activating".into(), "start".into()));
            let (stop, stopped) = watch::channel(None);
            let launch = Launch {
                shared: shared.clone(),
                name: name.clone(),
                machine_id: machine.clone(),
                machine_root: self.machine_root(machine),
                journal: journal_path(&self.root, name),
                options: options.clone(),
                generation,
            };
            let task = self.runtime.spawn(run(launch, stopped));
            self.runners.insert(
                name.clone(),
                Runner {
                    machine: machine.clone(),
                    options: options.clone(),
                    stop,
                    task,
                },
            );
        }
    }
}

fn journal_path(root: &Path, name: &str) -> PathBuf {
    root.join("journal").join(format!("{name}.log"))
}

/// One run of a unit on a machine.
struct Launch {
    shared: Shared,
    name: String,
    machine_id: String,
    machine_root: PathBuf,
    journal: PathBuf,
    options: Vec<UnitOption>,
    generation: u64,
}

impl Launch {
    fn set_state(&self, active: &str, sub: &str) {
        let mut state = lock(&self.shared);
        let current = state
            .executor
            .as_ref()
            .and_then(|e| e.current.get(&self.name).copied());
        if current == Some(self.generation) {
            state
                .registry
                .runs
                .get_or_insert_with(BTreeMap::new)
                .insert(self.name.clone(), (active.to_owned(), sub.to_owned()));
        }
    }

    fn note(&self, line: &str) {
        use std::io::Write as _;
        let opened = std::fs::create_dir_all(self.journal.parent().unwrap_or(Path::new(".")))
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.journal)
            });
        if let Ok(mut file) = opened {
            let _ = writeln!(file, "fake fleet on {}: {line}", self.machine_id);
        }
    }

    /// Where machine path `path` is on the host.
    fn host_path(&self, path: &str) -> PathBuf {
        self.machine_root.join(path.trim_start_matches('/'))
    }
}

enum Outcome {
    /// Whether it succeeded.
    Exited(bool),
    Stop(Stop),
}

async fn run(launch: Launch, mut stop: watch::Receiver<Option<Stop>>) {
    let service = match systemd::service(&launch.options, &launch.name, &launch.machine_id) {
        Ok(service) => service,
        Err(reason) => {
            launch.note(&format!("cannot run the unit: {reason}"));
            launch.set_state("failed", "failed");
            let _ = stop_requested(&mut stop).await;
            return;
        }
    };
    loop {
        launch.set_state("activating", "start-pre");
        let mut result = "success";
        for command in &service.start_pre {
            match execute(&launch, &service, "ExecStartPre", command, &[], &mut stop).await {
                Outcome::Stop(how) => return stopped(&launch, &service, how).await,
                Outcome::Exited(true) => {}
                Outcome::Exited(false) if command.ignore_failure => {}
                Outcome::Exited(false) => {
                    result = "exit-code";
                    break;
                }
            }
        }
        if result == "success" {
            let Some(main) = &service.start else {
                launch.note("the unit has no ExecStart=");
                launch.set_state("failed", "failed");
                let _ = stop_requested(&mut stop).await;
                return;
            };
            launch.set_state("active", "running");
            match execute(&launch, &service, "ExecStart", main, &[], &mut stop).await {
                Outcome::Stop(how) => return stopped(&launch, &service, how).await,
                Outcome::Exited(true) => {}
                Outcome::Exited(false) => result = "exit-code",
            }
        }
        for command in &service.stop_post {
            let env = [("SERVICE_RESULT", result)];
            if let Outcome::Stop(how) =
                execute(&launch, &service, "ExecStopPost", command, &env, &mut stop).await
            {
                return stopped(&launch, &service, how).await;
            }
        }
        let again = match service.restart {
            systemd::Restart::Always => true,
            systemd::Restart::OnFailure => result != "success",
            systemd::Restart::No => false,
        };
        if !again {
            if result == "success" {
                launch.set_state("inactive", "dead");
            } else {
                launch.set_state("failed", "failed");
            }
            let how = stop_requested(&mut stop).await;
            return stopped(&launch, &service, how).await;
        }
        launch.set_state("activating", "auto-restart");
        launch.note(&format!(
            "result {result}; restarting in {:?} (Restart=)",
            service.restart_sec
        ));
        tokio::select! {
            () = tokio::time::sleep(service.restart_sec) => {}
            how = stop_requested(&mut stop) => return stopped(&launch, &service, how).await,
        }
    }
}

/// Waits until the unit is to stop.
async fn stop_requested(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    loop {
        if let Some(how) = *stop.borrow_and_update() {
            return how;
        }
        if stop.changed().await.is_err() {
            // The fake itself is going away.
            return Stop::Unloaded;
        }
    }
}

/// After the unit's commands were killed.
async fn stopped(launch: &Launch, service: &Service, how: Stop) {
    if how == Stop::Unloaded {
        launch.note("unloaded: killed, no stop commands (as fleet's unload path)");
        return;
    }
    // A second stop request cannot come: this run is no longer current.
    let (_keep, mut never) = watch::channel(None::<Stop>);
    for command in &service.stop_post {
        let env = [("SERVICE_RESULT", "success")];
        let _ = execute(launch, service, "ExecStopPost", command, &env, &mut never).await;
    }
    launch.set_state("inactive", "dead");
}

/// Runs one command to its end, or until the unit is to stop (then kills it).
async fn execute(
    launch: &Launch,
    service: &Service,
    what: &str,
    command: &ExecCommand,
    extra_env: &[(&str, &str)],
    stop: &mut watch::Receiver<Option<Stop>>,
) -> Outcome {
    let prepared = prepare(launch, service, command, extra_env);
    let mut process = match prepared {
        Ok(mut process) => match process.spawn() {
            Ok(child) => Sandboxed(child),
            Err(e) => {
                launch.note(&format!("{what}: cannot run bwrap: {e}"));
                return Outcome::Exited(false);
            }
        },
        Err(reason) => {
            launch.note(&format!("{what}: {reason}"));
            return Outcome::Exited(false);
        }
    };
    tokio::select! {
        status = process.0.wait() => {
            let (ok, said) = match status {
                Ok(status) => (status.success(), status.to_string()),
                Err(e) => (false, e.to_string()),
            };
            launch.note(&format!("{what} {}: {said}", command.argv[0]));
            Outcome::Exited(ok)
        }
        how = stop_requested(stop) => {
            process.kill_inside();
            let _ = process.0.wait().await;
            launch.note(&format!("{what} {}: killed", command.argv[0]));
            Outcome::Stop(how)
        }
    }
}

/// A command in bubblewrap. bwrap's child is the init of the command's PID
/// namespace: killing it kills everything in there, and it reaps them
/// before it goes; bwrap itself then exits and is reaped by tokio. (Killing
/// bwrap instead would leave its child to whoever reaps orphans, and some
/// containers' PID 1 never does.) Dropped, it kills too.
struct Sandboxed(tokio::process::Child);

impl Sandboxed {
    fn kill_inside(&mut self) {
        let Some(bwrap) = self.0.id() else {
            return;
        };
        let inside = children_of(bwrap);
        if inside.is_empty() {
            // Not forked yet: bwrap alone.
            let _ = self.0.start_kill();
        }
        for pid in inside {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Sandboxed {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        self.kill_inside();
        // Reap bwrap here: this runs when the fake goes away, often as the
        // test's runtime shuts down, after which nothing would.
        for _ in 0..200 {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.0.start_kill();
    }
}

/// The processes whose parent is `parent`, from `/proc/PID/stat`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // "PID (COMM) STATE PPID …"; COMM may hold spaces and parentheses.
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// The command line in bubblewrap, with the machine's directories and the
/// mounts of the unit's options.
fn prepare(
    launch: &Launch,
    service: &Service,
    command: &ExecCommand,
    extra_env: &[(&str, &str)],
) -> Result<Command, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::from([
        (
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ),
        ("HOME".to_owned(), "/".to_owned()),
    ]);
    env.extend(service.environment.clone());
    for (path, optional) in &service.environment_files {
        match std::fs::read_to_string(launch.host_path(path)) {
            Ok(text) => env.extend(systemd::environment_file(&text)),
            Err(_) if *optional => {}
            Err(e) => return Err(format!("EnvironmentFile={path}: {e}")),
        }
    }
    for (variable, paths) in &service.directories {
        for path in paths {
            let host = launch.host_path(path);
            std::fs::create_dir_all(&host)
                .map_err(|e| format!("cannot make {}: {e}", host.display()))?;
        }
        env.insert((*variable).to_owned(), paths.join(":"));
    }
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let argv = systemd::substitute(command, &env);

    let mut args: Vec<String> = [
        "--die-with-parent",
        "--unshare-pid",
        "--bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev-bind",
        "/dev",
        "/dev",
    ]
    .map(str::to_owned)
    .to_vec();
    for base in [STATE_DIR, RUNTIME_DIR, CACHE_DIR, LOGS_DIR] {
        let host = launch.host_path(base);
        std::fs::create_dir_all(&host)
            .map_err(|e| format!("cannot make {}: {e}", host.display()))?;
        args.extend(["--bind".to_owned(), path_text(&host), base.to_owned()]);
    }
    // Mounts by target, parents first, as systemd orders them.
    let mut mounts: Vec<(String, Vec<String>)> = Vec::new();
    for bind in &service.binds {
        let source = launch.host_path(&bind.source);
        if !source.exists() {
            if bind.optional {
                continue;
            }
            return Err(format!(
                "{} does not exist (status 226/NAMESPACE)",
                bind.source
            ));
        }
        let kind = if bind.read_only {
            "--ro-bind"
        } else {
            "--bind"
        };
        mounts.push((
            bind.target.clone(),
            vec![kind.to_owned(), path_text(&source), bind.target.clone()],
        ));
    }
    for (path, read_only) in &service.temporary {
        let mut mount = vec!["--tmpfs".to_owned(), path.clone()];
        if *read_only {
            mount.extend(["--remount-ro".to_owned(), path.clone()]);
        }
        mounts.push((path.clone(), mount));
    }
    if !command.privileged {
        for (path, optional) in &service.inaccessible {
            let host = launch.host_path(path);
            if !host.exists() {
                if *optional {
                    continue;
                }
                return Err(format!("{path} does not exist (status 226/NAMESPACE)"));
            }
            let mount = if host.is_dir() {
                vec![
                    "--tmpfs".to_owned(),
                    path.clone(),
                    "--remount-ro".to_owned(),
                    path.clone(),
                ]
            } else {
                vec!["--ro-bind".to_owned(), "/dev/null".to_owned(), path.clone()]
            };
            mounts.push((path.clone(), mount));
        }
        if service.private_tmp {
            for path in ["/tmp", "/var/tmp"] {
                mounts.push((path.to_owned(), vec!["--tmpfs".to_owned(), path.to_owned()]));
            }
        }
    }
    mounts.sort_by(|a, b| a.0.cmp(&b.0));
    args.extend(mounts.into_iter().flat_map(|(_, mount)| mount));
    args.extend(["--chdir".to_owned(), "/".to_owned(), "--".to_owned()]);
    args.extend(argv);

    std::fs::create_dir_all(launch.journal.parent().unwrap_or(Path::new(".")))
        .map_err(|e| format!("cannot make the journal directory: {e}"))?;
    let journal = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.journal)
        .map_err(|e| format!("cannot open {}: {e}", launch.journal.display()))?;
    let errors = journal
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", launch.journal.display()))?;
    let mut process = Command::new("bwrap");
    process
        .args(&args)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(journal))
        .stderr(Stdio::from(errors));
    Ok(process)
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
