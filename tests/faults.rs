//! Faults: a pushing client killed at each step of a deploy (the build among them), the
//! client of each other operation killed while it starts an instance, concurrent
//! creations of one app, and pushes too large to check out.
//!
//! After a client is killed, the test waits for the daemon's "the push is over" (or
//! "the operation is over") line, then checks what a careful operator would: every
//! process running under the data directory is an instance `ps` knows, all of the
//! release the app's record names; that release is the commit the branch points at; and
//! the next push gets a number never used before.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{Nap, User, server_profile, text};

/// A test app whose start and stop wait while the test holds them. Each instance
/// touches GATES/starting-RELEASE-INDEX, then waits while GATES/hold-start exists; on
/// SIGTERM it touches GATES/stopping-RELEASE-INDEX and waits while GATES/hold-stop
/// exists. GATES is the app's `$NAP_STORAGE`, the one directory that both the sandboxed
/// app and the test (as DATA/storage/APP) see.
const GATED_PY: &str = r#"
import http.server, os, pathlib, signal, sys, time
gates = pathlib.Path(os.environ["NAP_STORAGE"])
me = f"{os.environ['NAP_RELEASE']}-{os.environ['NAP_INSTANCE']}"
def wait_while(name):
    while (gates / name).exists():
        time.sleep(0.02)
def stop(*_):
    (gates / f"stopping-{me}").touch()
    wait_while("hold-stop")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
(gates / f"starting-{me}").touch()
wait_while("hold-start")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{me}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// A build step that touches GATES/building, then waits while GATES/hold-build exists.
const GATED_BUILD_PY: &str = r#"
import os, pathlib, time
gates = pathlib.Path(os.environ["NAP_STORAGE"])
(gates / "building").touch()
while (gates / "hold-build").exists():
    time.sleep(0.02)
"#;

/// Where a pushing client is killed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Point {
    /// Waiting for the app's lock, before git runs.
    BeforeGit,
    /// As the deploy begins: the checkout.
    Checkout,
    /// While the profile's `build:` runs.
    Build,
    /// While the new instances start.
    InstancesStart,
    /// While the old instances stop.
    OldStop,
}

/// A `git push` running in a process group of its own (git and its ssh), its stderr
/// lines read as they come.
struct Pushing {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Pushing {
    fn start(user: &User, dir: &Path, app: &str) -> Pushing {
        let mut child = user
            .git_command(dir, &["push", "--progress", &user.remote(app), "master"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start git push");
        let stderr = child.stderr.take().expect("stderr");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                for part in String::from_utf8_lossy(&line).split('\r') {
                    if send.send(part.to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        Pushing {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line of the push containing `needle`.
    fn wait_for_line(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.seen.iter().any(|line| line.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("the push never said {needle:?}:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Kills git and its ssh at once, as a client that vanishes.
    fn kill(&mut self) {
        kill_group(&mut self.child);
    }
}

impl Drop for Pushing {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills `child`, which leads a process group of its own, with all of its group (a
/// client and the ssh it started), and reaps it.
fn kill_group(child: &mut Child) {
    if child.try_wait().is_ok_and(|status| status.is_some()) {
        return;
    }
    let group = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

/// Waits until `path` exists (the test app touches it), at most a minute.
fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A config file giving the daemon uids of its own for its apps, so that the processes
/// of this test's apps are told apart from those of tests running beside it.
fn config_with_own_uids(dir: &Path, extra: &str) -> (PathBuf, std::ops::RangeInclusive<u32>) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let slot = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let first = 400_000 + (std::process::id() % 5_000) * 200 + slot * 20;
    let uids = first..=first + 19;
    let config = dir.join("nap.yaml");
    std::fs::write(
        &config,
        format!("app_uid_range: {}-{}\n{extra}", uids.start(), uids.end()),
    )
    .expect("config");
    (config, uids)
}

/// One line of /proc/PID/status, e.g. `Uid:` or `PPid:`, its first number.
fn status_number(pid: u32, key: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The processes of the daemon's apps: those running as one of the apps' `uids`
/// (sandboxed, as root) or with a working directory below `data` (unsandboxed). Returns,
/// for each recorded pid, whether any of them descends from it, and those that descend
/// from none (orphans).
fn app_processes(
    data: &Path,
    uids: &std::ops::RangeInclusive<u32>,
    recorded: &[u32],
) -> (Vec<u32>, Vec<u32>) {
    let mut reached = Vec::new();
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let of_an_app = status_number(pid, "Uid:").is_some_and(|uid| uids.contains(&uid))
            || std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(data));
        if !of_an_app {
            continue;
        }
        let mut ancestor = pid;
        loop {
            if recorded.contains(&ancestor) {
                reached.push(ancestor);
                break;
            }
            match status_number(ancestor, "PPid:") {
                Some(parent) if parent > 1 => ancestor = parent,
                // Gone meanwhile, or reparented to init: nobody recorded owns it.
                _ => {
                    if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                        orphans.push(pid);
                    }
                    break;
                }
            }
        }
    }
    reached.sort();
    reached.dedup();
    (reached, orphans)
}

/// `(release, last_release)` of the app's record.
fn record(nap: &Nap, app: &str) -> (Option<u64>, u64) {
    let text =
        std::fs::read_to_string(nap.data.join(format!("apps/{app}/app.json"))).expect("app record");
    let record: serde_json::Value = serde_json::from_str(&text).expect("app record json");
    (
        record["release"].as_u64(),
        record["last_release"].as_u64().unwrap_or(0),
    )
}

/// The commit `refs/heads/master` of the app's repository points at, if any.
fn branch_commit(nap: &Nap, app: &str) -> Option<String> {
    let output = Command::new("git")
        .arg("--git-dir")
        .arg(nap.data.join(format!("repos/{app}.git")))
        .args(["rev-parse", "--verify", "-q", "refs/heads/master"])
        .output()
        .expect("git rev-parse");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The commit of release `number`.
fn release_commit(nap: &Nap, app: &str, number: u64) -> String {
    let path = nap.data.join(format!("apps/{app}/releases/v{number}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let release: serde_json::Value = serde_json::from_str(&text).expect("release json");
    release["commit"].as_str().expect("commit").to_owned()
}

/// The consistency every fault must leave: the running release is the branch's commit,
/// `scale` instances of it run, and no process runs that `ps` does not know. Returns the
/// running release's number.
fn assert_consistent(
    nap: &Nap,
    uids: &std::ops::RangeInclusive<u32>,
    app: &str,
    scale: usize,
) -> u64 {
    let (release, last) = record(nap, app);
    let release = release.expect("the app has a running release");
    assert!(
        release <= last,
        "release v{release} above last_release {last}"
    );
    assert_eq!(
        branch_commit(nap, app).as_deref(),
        Some(release_commit(nap, app, release).as_str()),
        "the running release v{release} is not the commit master points at"
    );
    assert_instances_consistent(nap, uids, app, scale, release);
    release
}

/// `scale` instances of release `release` run, and no process runs that `ps` does not
/// know.
fn assert_instances_consistent(
    nap: &Nap,
    uids: &std::ops::RangeInclusive<u32>,
    app: &str,
    scale: usize,
    release: u64,
) {
    let instances = nap.ps(app);
    assert_eq!(instances.len(), scale, "{instances:?}");
    assert!(
        instances
            .iter()
            .all(|i| i.release == format!("v{release}") && i.state == "up"),
        "{instances:?}"
    );
    let mut recorded: Vec<u32> = instances.iter().filter_map(|i| i.pid).collect();
    recorded.sort();
    let (reached, orphans) = app_processes(&nap.data, uids, &recorded);
    assert_eq!(
        orphans,
        Vec::<u32>::new(),
        "processes of the apps that no recorded instance owns {instances:?}"
    );
    assert_eq!(
        reached, recorded,
        "recorded instances without a running process {instances:?}"
    );
}

fn kill_the_pusher(point: Point) {
    let config_dir = tempfile::tempdir().expect("temp dir");
    // A held instance listens nowhere; it must not count as a worker before the test
    // lets it go.
    let (config, uids) = config_with_own_uids(config_dir.path(), "boot_timeout_secs: 60\n");
    let nap = Nap::start_with(&["--config", config.to_str().expect("utf-8")]);
    let gates: PathBuf = nap.data.join("storage/web");
    let alice = nap.user("alice", "ed25519", false);
    let profile = "command: python3 gated.py\nscale: 2\n";
    let repo = alice.repo("web", &[("gated.py", GATED_PY), ("profile", profile)]);
    alice.deploy(&repo, "web");
    assert_eq!(assert_consistent(&nap, &uids, "web", 2), 1);
    let first_commit = branch_commit(&nap, "web");

    let built_profile = format!("{profile}build: python3 build.py\n");
    let second: &[(&str, &str)] = if point == Point::Build {
        &[
            ("version", "2"),
            ("build.py", GATED_BUILD_PY),
            ("profile", &built_profile),
        ]
    } else {
        &[("version", "2")]
    };
    alice.commit(&repo, second, "second");
    let hold = |name: &str| std::fs::write(gates.join(name), "").expect("hold");
    let release = |name: &str| std::fs::remove_file(gates.join(name)).expect("release");
    let mut restart = None;
    match point {
        Point::BeforeGit => {
            // A restart holds the app's lock while its new instance is held at start.
            hold("hold-start");
            // The restart's instance touches its file again: wait for the fresh one.
            let starting = gates.join("starting-v1-1");
            std::fs::remove_file(&starting).expect("v1's marker");
            restart = Some(
                alice
                    .ssh_command(&["restart", "web"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start restart"),
            );
            wait_for_file(&starting);
        }
        Point::Checkout => {}
        Point::Build => hold("hold-build"),
        Point::InstancesStart => hold("hold-start"),
        Point::OldStop => hold("hold-stop"),
    }
    let mut pushing = Pushing::start(&alice, &repo, "web");
    match point {
        Point::BeforeGit => pushing.wait_for_line("Waiting for the push or deploy of web"),
        Point::Checkout => pushing.wait_for_line("-----> Checking out"),
        Point::Build => wait_for_file(&gates.join("building")),
        Point::InstancesStart => {
            wait_for_file(&gates.join("starting-v2-1"));
            wait_for_file(&gates.join("starting-v2-2"));
        }
        Point::OldStop => wait_for_file(&gates.join("stopping-v1-1")),
    }
    pushing.kill();
    match point {
        Point::BeforeGit | Point::InstancesStart => release("hold-start"),
        Point::OldStop => release("hold-stop"),
        Point::Build => release("hold-build"),
        Point::Checkout => {}
    }
    if let Some(restart) = restart {
        let output = restart.wait_with_output().expect("restart");
        assert!(output.status.success(), "restart: {:?}", text(&output));
    }
    // The first push said it once; this is the killed one's.
    nap.wait_for_log("the push of web is over", 2);

    let running = assert_consistent(&nap, &uids, "web", 2);
    if point == Point::BeforeGit {
        // The pusher left before git ran: nothing was pushed.
        assert_eq!(running, 1);
        assert_eq!(branch_commit(&nap, "web"), first_commit);
        assert_eq!(record(&nap, "web").1, 1, "a release number was taken");
    } else {
        // Git had the whole pack: the push goes through without its client.
        assert_eq!(running, 2, "{}", nap.log_text());
    }

    // The next push works and gets a number never used.
    let taken = record(&nap, "web").1;
    alice.commit(&repo, &[("version", "3")], "third");
    let output = alice.deploy(&repo, "web");
    let next = assert_consistent(&nap, &uids, "web", 2);
    assert_eq!(next, taken + 1, "{output}");
}

#[test]
fn a_pusher_killed_before_git_runs_changes_nothing() {
    kill_the_pusher(Point::BeforeGit);
}

#[test]
fn a_pusher_killed_at_checkout_still_gets_a_consistent_deploy() {
    kill_the_pusher(Point::Checkout);
}

#[test]
fn a_pusher_killed_during_the_build_still_gets_a_consistent_deploy() {
    kill_the_pusher(Point::Build);
}

#[test]
fn a_pusher_killed_while_instances_start_leaves_no_orphan() {
    kill_the_pusher(Point::InstancesStart);
}

#[test]
fn a_pusher_killed_while_old_instances_stop_leaves_no_orphan() {
    kill_the_pusher(Point::OldStop);
}

/// An operation other than a push, whose client is killed while its first new instance
/// is held at start.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Operation {
    Restart,
    Scale,
    ConfigSet,
    Rollback,
}

fn kill_the_operator(operation: Operation) {
    let config_dir = tempfile::tempdir().expect("temp dir");
    let (config, uids) = config_with_own_uids(config_dir.path(), "boot_timeout_secs: 60\n");
    let nap = Nap::start_with(&["--config", config.to_str().expect("utf-8")]);
    let gates: PathBuf = nap.data.join("storage/web");
    let alice = nap.user("alice", "ed25519", false);
    let profile = "command: python3 gated.py\nscale: 2\n";
    let repo = alice.repo("web", &[("gated.py", GATED_PY), ("profile", profile)]);
    alice.deploy(&repo, "web");
    alice.commit(&repo, &[("version", "2")], "second");
    alice.deploy(&repo, "web");
    assert_eq!(assert_consistent(&nap, &uids, "web", 2), 2);
    let old_pids: Vec<u32> = nap.ps("web").iter().filter_map(|i| i.pid).collect();

    // The command, the file its first new instance touches, and the scale and release
    // the app must end with: the operation finishes without its client.
    let (args, marker, scale, release): (&[&str], &str, usize, u64) = match operation {
        Operation::Restart => (&["restart", "web"], "starting-v2-1", 2, 2),
        Operation::Scale => (&["scale", "web", "3"], "starting-v2-3", 3, 2),
        Operation::ConfigSet => (&["config:set", "web", "GREETING=hi"], "starting-v3-1", 2, 3),
        Operation::Rollback => (&["rollback", "web"], "starting-v3-1", 2, 3),
    };
    let marker = gates.join(marker);
    // A restart's instance touches the file of the one it replaces: wait for a fresh one.
    let _ = std::fs::remove_file(&marker);
    std::fs::write(gates.join("hold-start"), "").expect("hold");
    let mut client = alice
        .ssh_command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start the operation");
    wait_for_file(&marker);
    kill_group(&mut client);
    std::fs::remove_file(gates.join("hold-start")).expect("release");
    nap.wait_for_log(&format!("the operation {} is over", args[0]), 1);

    assert_eq!(record(&nap, "web").0, Some(release), "{}", nap.log_text());
    assert_instances_consistent(&nap, &uids, "web", scale, release);
    match operation {
        Operation::Restart => {
            let pids: Vec<u32> = nap.ps("web").iter().filter_map(|i| i.pid).collect();
            assert!(
                pids.iter().all(|pid| !old_pids.contains(pid)),
                "an instance was not restarted: {old_pids:?} then {pids:?}"
            );
        }
        Operation::Scale => {}
        Operation::ConfigSet => {
            let config = text(&alice.ssh(&["config", "web"])).0;
            assert!(config.contains("GREETING"), "{config}");
        }
        Operation::Rollback => assert_eq!(
            release_commit(&nap, "web", 3),
            release_commit(&nap, "web", 1),
            "v3 is not the rollback to v1"
        ),
    }

    // The app takes the next operation.
    let output = alice.ssh(&["restart", "web"]);
    assert!(output.status.success(), "restart: {:?}", text(&output));
    assert_instances_consistent(&nap, &uids, "web", scale, release);
}

#[test]
fn a_restart_whose_client_is_killed_still_restarts_every_instance() {
    kill_the_operator(Operation::Restart);
}

#[test]
fn a_scale_whose_client_is_killed_still_reaches_its_scale() {
    kill_the_operator(Operation::Scale);
}

#[test]
fn a_config_change_whose_client_is_killed_still_makes_its_release() {
    kill_the_operator(Operation::ConfigSet);
}

#[test]
fn a_rollback_whose_client_is_killed_still_rolls_back() {
    kill_the_operator(Operation::Rollback);
}

/// What a user sees of concurrent creations. The race itself (a check and a creation in
/// two steps) is too narrow to hit from here every time: `apps.rs`'s unit test lines the
/// creations up behind the creation lock, and fails on the two-step code.
#[test]
fn concurrent_creations_of_one_name_make_one_app() {
    let nap = Nap::start();
    let admin = nap.user("root", "ed25519", true);
    let source = admin.app_repo("upstream", &server_profile(""));
    let bare = nap.dir.path().join("upstream.git");
    let cloned = admin.git(
        &admin.home,
        &[
            "clone",
            "-q",
            "--bare",
            source.to_str().expect("utf-8"),
            bare.to_str().expect("utf-8"),
        ],
    );
    assert!(cloned.status.success(), "{:?}", text(&cloned));
    let url = format!("file://{}", bare.display());
    let creations: Vec<Child> = (0..4)
        .map(|_| {
            admin
                .ssh_command(&["deploy", "twin", "--from", &url])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start deploy")
        })
        .collect();
    let outputs: Vec<_> = creations
        .into_iter()
        .map(|child| child.wait_with_output().expect("deploy"))
        .collect();
    let won: Vec<_> = outputs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        outputs.iter().map(text).collect::<Vec<_>>()
    );
    for lost in outputs.iter().filter(|o| !o.status.success()) {
        let stderr = text(lost).1;
        assert!(stderr.contains("app twin already exists"), "{stderr}");
        assert!(
            !stderr.contains("was not created"),
            "a loser cleaned up: {stderr}"
        );
    }
    // The winner's app is whole and runs.
    assert_eq!(record(&nap, "twin"), (Some(1), 1));
    assert_eq!(nap.ps("twin").len(), 1);
    assert!(nap.data.join("repos/twin.git").exists());
}

#[test]
fn a_push_over_the_size_limits_is_refused_with_both_numbers_and_changes_nothing() {
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = config_dir.path().join("nap.yaml");
    std::fs::write(&config, "max_files: 5\nmax_bytes: 20000\n").expect("config");
    let nap = Nap::start_with(&["--config", config.to_str().expect("utf-8")]);
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    let before = (branch_commit(&nap, "web"), record(&nap, "web"));

    let many: Vec<(String, String)> = (0..8)
        .map(|n| (format!("many/{n}.txt"), format!("{n}\n")))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    alice.commit(&repo, &many, "too many files");
    let output = alice.push(&repo, "web");
    let stderr = text(&output).1;
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("has 10 files; at most 5 are allowed"),
        "{stderr}"
    );
    assert_eq!((branch_commit(&nap, "web"), record(&nap, "web")), before);

    assert!(
        alice
            .git(&repo, &["reset", "-q", "--hard", "HEAD~1"])
            .status
            .success()
    );
    let big = "x".repeat(30_000);
    alice.commit(&repo, &[("big.txt", big.as_str())], "too large");
    let output = alice.push(&repo, "web");
    let stderr = text(&output).1;
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("bytes; at most 20000 are allowed"),
        "{stderr}"
    );
    assert_eq!((branch_commit(&nap, "web"), record(&nap, "web")), before);
    assert_eq!(nap.ps("web").len(), 1);
    assert!(
        !nap.data.join("apps/web/releases/v2").exists(),
        "a refused tree was left behind"
    );
}

#[test]
fn a_deploy_whose_ref_git_refuses_to_move_is_undone() {
    let config_dir = tempfile::tempdir().expect("temp dir");
    let (config, uids) = config_with_own_uids(config_dir.path(), "");
    let nap = Nap::start_with(&["--config", config.to_str().expect("utf-8")]);
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    let first = text(&alice.git(&repo, &["rev-parse", "HEAD"])).0;
    alice.commit(&repo, &[("version", "2")], "second");
    alice.deploy(&repo, "web");
    assert_eq!(assert_consistent(&nap, &uids, "web", 1), 2);
    // git checks fast-forwards after the pre-receive hook: the deploy succeeds, then
    // git refuses to move the branch.
    let config = Command::new("git")
        .arg("--git-dir")
        .arg(nap.data.join("repos/web.git"))
        .args(["config", "receive.denyNonFastForwards", "true"])
        .status()
        .expect("git config");
    assert!(config.success());
    assert!(
        alice
            .git(&repo, &["reset", "-q", "--hard", first.trim()])
            .status
            .success()
    );
    alice.commit(&repo, &[("version", "3")], "diverged");
    let output = alice.git(&repo, &["push", "--force", &alice.remote("web"), "master"]);
    let stderr = text(&output).1;
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("undoing web v3"), "{stderr}");
    nap.wait_for_log("the push of web is over", 3);
    // v2 runs again, master still points at it, and v3's number stays taken.
    assert_eq!(assert_consistent(&nap, &uids, "web", 1), 2, "{stderr}");
    assert_eq!(record(&nap, "web").1, 3);
    assert!(!nap.data.join("apps/web/releases/v3.json").exists());
}
