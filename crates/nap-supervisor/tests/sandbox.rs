//! Instances in the sandbox: what they get (their storage, their environment, their uid),
//! that a stop waits for the app inside rather than for bwrap, and that a daemon which died
//! in the middle of a stop leaves nothing running for long.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nap_supervisor::{CgroupMode, Config, Isolation, Supervisor};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::util::{Fixture, PATIENCE, app_ids, is_root, kill_recorded_groups, log_lines};

/// Prints what the app sees as one line (`env KEY=VALUE ...`, `uid N`, `cwd PATH`), writes a
/// file into its storage, then waits.
const PROBE_PY: &str = r#"
import os, time
with open(os.path.join(os.environ["NAP_STORAGE"], "written"), "w") as f:
    f.write("by the app\n")
print("env " + " ".join("%s=%s" % kv for kv in sorted(os.environ.items())), flush=True)
print("uid %d gid %d" % (os.getuid(), os.getgid()), flush=True)
print("cwd " + os.getcwd(), flush=True)
time.sleep(300)
"#;

/// Waits until the instance's log has a line starting with `prefix`; its rest.
async fn log_line(fixture: &Fixture, app: &str, prefix: &str) -> String {
    let path = fixture.supervisor.log_path(app, 1);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(line) = log_lines(&path)
            .into_iter()
            .find_map(|line| line.strip_prefix(prefix).map(str::to_owned))
        {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no line {prefix:?} in {}: {:#?}",
            path.display(),
            log_lines(&path)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_instance_gets_its_storage_its_environment_and_its_own_uid() {
    let fixture = Fixture::new().await;
    fixture.write("probe.py", PROBE_PY);
    let mut spec = fixture.spec("probe", 1, "python3 probe.py");
    spec.env.push(("GREETING".to_owned(), "hi".to_owned()));
    // The runtime's names are its own: a spec cannot set them, not even the sandbox's.
    spec.env.push(("NAP_STORAGE".to_owned(), "/etc".to_owned()));
    spec.env.push(("NAP_APP".to_owned(), "other".to_owned()));
    let storage = spec.local.storage.clone();
    let started = fixture.supervisor.start(spec).await.expect("start");

    let env: BTreeMap<String, String> = log_line(&fixture, "probe", "env ")
        .await
        .split(' ')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let expected = [
        ("GREETING", "hi".to_owned()),
        ("HOME", "/tmp".to_owned()),
        ("LANG", "C.UTF-8".to_owned()),
        ("NAP_APP", "probe".to_owned()),
        ("NAP_INSTANCE", "1".to_owned()),
        ("NAP_RELEASE", "v1".to_owned()),
        ("NAP_STORAGE", "/storage".to_owned()),
        ("PATH", nap_sandbox::DEFAULT_PATH.to_owned()),
        ("PORT", started.port.to_string()),
        // Every shell exports its working directory.
        ("PWD", "/app".to_owned()),
    ];
    let expected: BTreeMap<String, String> = expected
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(env, expected, "nothing of the daemon's environment");
    assert_eq!(log_line(&fixture, "probe", "cwd ").await, "/app");

    let ids = log_line(&fixture, "probe", "uid ").await;
    let written = storage.join("written");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !written.exists() {
        assert!(tokio::time::Instant::now() < deadline, "nothing written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let meta = std::fs::metadata(&written).expect("written");
    if is_root() {
        let app = app_ids("probe");
        assert_eq!(ids, format!("{} gid {}", app.uid, app.gid));
        assert_eq!((meta.uid(), meta.gid()), (app.uid, app.gid));
        let dir = std::fs::metadata(&storage).expect("storage");
        assert_eq!((dir.uid(), dir.mode() & 0o777), (app.uid, 0o700));
    } else {
        let me = nix::unistd::geteuid().as_raw();
        assert!(ids.starts_with(&format!("{me} ")), "{ids}");
        assert_eq!(meta.uid(), me);
    }
    fixture.supervisor.shutdown().await;
}

#[tokio::test]
async fn without_a_sandbox_an_instance_still_gets_only_its_own_environment() {
    let fixture = Fixture::unsandboxed_with(|_| {}).await;
    fixture.write("probe.py", PROBE_PY);
    let spec = fixture.spec("probe", 1, "python3 probe.py");
    let storage = spec.local.storage.clone();
    let started = fixture.supervisor.start(spec).await.expect("start");
    let env = log_line(&fixture, "probe", "env ").await;
    assert!(!env.contains("CARGO"), "{env}");
    assert!(
        env.contains(&format!("NAP_STORAGE={} ", storage.display())),
        "{env}"
    );
    assert!(
        env.contains(&format!("PORT={} ", started.port)) && env.contains("LANG=C.UTF-8 "),
        "{env}"
    );
    assert_eq!(
        log_line(&fixture, "probe", "cwd ").await,
        fixture.app_dir().display().to_string()
    );
    fixture.supervisor.shutdown().await;
}

/// bwrap's outer process, which the supervisor started, dies of a stop's SIGTERM at once;
/// the app inside takes its time. The stop must wait for the app.
#[tokio::test]
async fn a_stop_waits_for_the_app_inside_the_sandbox() {
    let fixture = Fixture::with(|config| config.stop_grace = Duration::from_secs(20)).await;
    fixture.write(
        "slow_stop.py",
        r#"
import os, signal, sys, time
storage = os.environ["NAP_STORAGE"]
def stop(*_):
    time.sleep(0.5)
    open(os.path.join(storage, "stopped cleanly"), "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(1)
"#,
    );
    let spec = fixture.spec("slow", 1, "python3 slow_stop.py");
    let storage = spec.local.storage.clone();
    let started = fixture.supervisor.start(spec).await.expect("start");
    log_line(&fixture, "slow", "ready").await;
    fixture.supervisor.stop(&started.id).await.expect("stop");
    assert!(
        storage.join("stopped cleanly").exists(),
        "the stop returned before the app had finished"
    );
    assert!(crate::util::group_is_gone(started.pid));
}

/// bwrap's outer process exits without waiting for its init, which is left a zombie. The
/// supervisor adopts such orphans (its process is a child subreaper) and reaps them in the
/// stop: when the stop returns nothing of the instance is left, not even a zombie for an
/// init that reaps only every few seconds (as this machine's does), or never.
#[tokio::test]
async fn a_stopped_sandbox_leaves_no_zombie_behind() {
    let fixture = Fixture::new().await;
    assert!(
        nix::sys::prctl::get_child_subreaper().expect("prctl"),
        "the supervisor does not adopt its instances' orphans"
    );
    fixture.write("probe.py", PROBE_PY);
    let started = fixture
        .supervisor
        .start(fixture.spec("probe", 1, "python3 probe.py"))
        .await
        .expect("start");
    log_line(&fixture, "probe", "cwd ").await;
    fixture.supervisor.stop(&started.id).await.expect("stop");
    assert!(
        crate::util::group_is_gone(started.pid),
        "a zombie of the sandbox is left after the stop"
    );
    fixture.supervisor.shutdown().await;
}

/// Set (to a directory) in the environment of the test re-run as the daemon that dies.
const DYING_DAEMON: &str = "NAP_SUPERVISOR_TEST_DYING_DAEMON";
/// `off` or `auto`: the dying daemon's cgroup mode.
const DYING_DAEMON_CGROUPS: &str = "NAP_SUPERVISOR_TEST_DYING_DAEMON_CGROUPS";
const DYING_TEST: &str =
    "sandbox::an_instance_whose_daemon_died_during_its_stop_is_stopped_by_the_next_daemon";

/// An app that ignores SIGTERM, so that its stop takes the whole grace.
const STUBBORN_PY: &str = r#"
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
while True:
    time.sleep(1)
"#;

/// The supervisor's crash recovery must not miss an app whose daemon died while stopping it:
/// by then bwrap's outer process, the recorded group leader, is dead and reaped, and only the
/// group (bwrap's init and the app) and, with cgroups, the cgroup are left. Once without
/// cgroups, where only the process group can find the app, and once with.
#[tokio::test]
async fn an_instance_whose_daemon_died_during_its_stop_is_stopped_by_the_next_daemon() {
    if let Some(dir) = std::env::var_os(DYING_DAEMON) {
        let cgroups = match std::env::var(DYING_DAEMON_CGROUPS).as_deref() {
            Ok("off") => CgroupMode::Off,
            _ => CgroupMode::Auto,
        };
        die_while_stopping(Path::new(&dir), cgroups).await;
        return;
    }
    for cgroups in ["off", "auto"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let _guard = KillRecordedOnDrop(dir.path().join("state"));
        let mut daemon = tokio::process::Command::new(std::env::current_exe().expect("self"))
            .args(["--exact", DYING_TEST, "--nocapture", "--test-threads=1"])
            .env(DYING_DAEMON, dir.path())
            .env(DYING_DAEMON_CGROUPS, cgroups)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("run the dying daemon");
        let mut lines = BufReader::new(daemon.stdout.take().expect("stdout")).lines();
        let (app_pid, pgid) = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.expect("read") {
                // The test harness prints its own words before ours on the same line.
                if let Some((_, rest)) = line.split_once("stopping app pid ") {
                    let (app, group) = rest.split_once(" group ").expect("two pids");
                    return (
                        app.parse::<i32>().expect("pid"),
                        group.parse::<i32>().expect("pgid"),
                    );
                }
            }
            panic!("the dying daemon ended without stopping its app");
        })
        .await
        .expect("the dying daemon begins its stop");
        assert!(is_alive(app_pid), "the app lives through the grace");
        assert!(pgid > 1);

        daemon.start_kill().expect("kill -9 the daemon");
        daemon.wait().await.expect("wait");
        assert!(is_alive(app_pid), "the app outlived its daemon");

        let mut config = Config::new(
            30090..30095,
            dir.path().join("logs"),
            dir.path().join("state"),
        );
        config.stop_grace = Duration::from_millis(500);
        let supervisor = Supervisor::new(config).await.expect("the next daemon");
        assert!(
            !is_alive(app_pid),
            "the app of a stop cut short still runs (cgroups {cgroups})"
        );
        supervisor.shutdown().await;
    }
}

/// The dying daemon: a sandboxed instance that ignores SIGTERM, a stop that has begun (its
/// SIGTERM killed bwrap's outer process, which the supervisor has reaped), then it waits to
/// be killed.
async fn die_while_stopping(dir: &Path, cgroups: CgroupMode) {
    let app_dir = dir.join("app");
    std::fs::create_dir_all(&app_dir).expect("app dir");
    std::fs::write(app_dir.join("stubborn.py"), STUBBORN_PY).expect("app");
    let sandbox = nap_sandbox::Sandbox::probe(&nap_sandbox::SandboxOptions {
        bwrap: None,
        ro_paths: Vec::new(),
        protected: nap_sandbox::Protected {
            data_dir: dir.to_owned(),
            home: None,
            control_socket: dir.join("nap.sock"),
        },
        state_dir: dir.join("sandbox"),
    })
    .await
    .expect("bubblewrap works here");
    let mut config = Config::new(30095..30100, dir.join("logs"), dir.join("state"));
    config.isolation = Isolation::Sandbox(std::sync::Arc::new(sandbox));
    config.cgroups = cgroups;
    config.stop_grace = Duration::from_secs(120);
    let supervisor = Supervisor::new(config).await.expect("supervisor");
    let spec = nap_supervisor::InstanceSpec {
        app: "stubborn".to_owned(),
        index: 1,
        release: "v1".to_owned(),
        command: "python3 stubborn.py".to_owned(),
        cwd: PathBuf::from(&app_dir),
        env: Vec::new(),
        memory: None,
        local: nap_supervisor::LocalApp {
            storage: dir.join("storage"),
            ids: Some(app_ids("stubborn")),
        },
    };
    let started = supervisor.start(spec).await.expect("start");
    let leader = i32::try_from(started.pid).expect("pid");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let app_pid = loop {
        let pythons: Vec<i32> = group_members(leader)
            .into_iter()
            .filter(|(_, name)| name == "python3")
            .map(|(pid, _)| pid)
            .collect();
        let ready = log_lines(&supervisor.log_path("stubborn", 1))
            .iter()
            .any(|line| line == "ready");
        if let ([pid], true) = (pythons.as_slice(), ready) {
            break *pid;
        }
        assert!(tokio::time::Instant::now() < deadline, "the app never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stopping = supervisor.clone();
    let id = started.id.clone();
    tokio::spawn(async move { stopping.stop(&id).await });
    // bwrap's outer process dies of the SIGTERM and is reaped by the supervisor at once.
    while std::path::Path::new(&format!("/proc/{leader}")).exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bwrap outlived SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("stopping app pid {app_pid} group {leader}");
    std::future::pending::<()>().await;
}

/// `(pid, command name)` of the live members of process group `pgid`.
fn group_members(pgid: i32) -> Vec<(i32, String)> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let live = !matches!(fields.first(), Some(&"Z") | Some(&"X"));
            (live && fields.get(2)?.parse::<i32>().ok()? == pgid).then(|| (pid, name.to_owned()))
        })
        .collect()
}

/// Whether `pid` runs (a zombie waiting for init does not).
fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().next()),
            Some("Z") | Some("X")
        )
    })
}

/// Kills what the dying daemon left running when the test ends, passed or failed.
struct KillRecordedOnDrop(PathBuf);

impl Drop for KillRecordedOnDrop {
    fn drop(&mut self) {
        kill_recorded_groups(&self.0);
    }
}
