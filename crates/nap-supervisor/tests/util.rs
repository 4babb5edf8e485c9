//! The test fixture: a supervisor with its own temp dir and port range, and small apps.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use nap_supervisor::{
    AppIds, Config, InstanceId, InstanceSpec, InstanceStatus, Isolation, LocalApp, Started,
    Supervisor,
};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long a test waits for something that should happen quickly, before failing.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A python HTTP server on $PORT answering `APP INSTANCE RELEASE GREETING leaked=N`, where N
/// counts variables of the test process's environment that leaked into the app's.
pub const SERVER_PY: &str = r#"
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        e = os.environ
        leaked = sum(1 for k in e if k.startswith("CARGO"))
        body = "%s %s %s %s leaked=%d\n" % (
            e["NAP_APP"], e["NAP_INSTANCE"], e["NAP_RELEASE"], e.get("GREETING", "-"), leaked)
        body = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
print("listening on", os.environ["PORT"], flush=True)
server.serve_forever()
"#;

/// Each fixture gets its own ports, so that tests running side by side never
/// compete. They lie below the kernel's ephemeral range (32768 and up), where
/// any client socket on the machine may hold a port and make a test that
/// counts on a free one fail; the end-to-end tests use 21000-29999.
fn next_port_range() -> Range<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 130;
    let start = 30100 + n * 20;
    start..start + 20
}

pub struct Fixture {
    pub dir: TempDir,
    pub supervisor: Supervisor,
    pub config: Config,
}

impl Fixture {
    pub async fn new() -> Fixture {
        Fixture::with(|_| {}).await
    }

    /// A fixture whose config the caller adjusts (timings, log size, ports). Its instances
    /// run in the sandbox, as the daemon runs them.
    pub async fn with(adjust: impl FnOnce(&mut Config)) -> Fixture {
        Fixture::make(true, adjust).await
    }

    /// A fixture whose instances run as plain child processes, as with `isolation: none`.
    pub async fn unsandboxed_with(adjust: impl FnOnce(&mut Config)) -> Fixture {
        Fixture::make(false, adjust).await
    }

    async fn make(sandboxed: bool, adjust: impl FnOnce(&mut Config)) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::new(
            next_port_range(),
            dir.path().join("logs"),
            dir.path().join("state"),
        );
        if sandboxed {
            let sandbox = nap_sandbox::Sandbox::probe(&nap_sandbox::SandboxOptions {
                bwrap: None,
                ro_paths: Vec::new(),
                protected: nap_sandbox::Protected {
                    data_dir: dir.path().to_owned(),
                    home: None,
                    control_socket: dir.path().join("nap.sock"),
                },
                state_dir: dir.path().join("sandbox"),
            })
            .await
            .expect("bubblewrap works here");
            config.isolation = Isolation::Sandbox(std::sync::Arc::new(sandbox));
        }
        adjust(&mut config);
        let supervisor = Supervisor::new(config.clone()).await.expect("supervisor");
        fs::create_dir_all(dir.path().join("app")).expect("app dir");
        Fixture {
            dir,
            supervisor,
            config,
        }
    }

    /// The app's directory (every instance's cwd).
    pub fn app_dir(&self) -> PathBuf {
        self.dir.path().join("app")
    }

    /// Writes a file into the app's directory.
    pub fn write(&self, name: &str, contents: &str) {
        fs::write(self.app_dir().join(name), contents).expect("write fixture file");
    }

    /// The storage directory of `app` (`$NAP_STORAGE`).
    pub fn storage(&self, app: &str) -> PathBuf {
        self.dir.path().join("storage").join(app)
    }

    pub fn spec(&self, app: &str, index: u32, command: &str) -> InstanceSpec {
        InstanceSpec {
            app: app.to_owned(),
            index,
            release: "v1".to_owned(),
            command: command.to_owned(),
            cwd: self.app_dir(),
            env: Vec::new(),
            memory: None,
            local: LocalApp {
                storage: self.storage(app),
                ids: Some(app_ids(app)),
            },
        }
    }

    /// Starts instance `index` of `app` running `command` (release v1), or fails the test.
    pub async fn start(&self, app: &str, index: u32, command: &str) -> Started {
        self.supervisor
            .start(self.spec(app, index, command))
            .await
            .expect("start")
    }

    pub async fn status(&self, id: &InstanceId) -> Option<InstanceStatus> {
        self.supervisor
            .list()
            .await
            .into_iter()
            .find(|status| &status.id == id)
    }

    /// Waits until `check` holds for the instance's status (polling `list`), or fails.
    pub async fn wait_for_status(
        &self,
        id: &InstanceId,
        what: &str,
        check: impl Fn(&InstanceStatus) -> bool,
    ) -> InstanceStatus {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let status = self.status(id).await;
            if let Some(status) = status.as_ref().filter(|s| check(s)) {
                return status.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting for {what}; last status: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Fixture {
    /// If a test failed half-way, kill what its supervisor left running, using the pid records.
    fn drop(&mut self) {
        kill_recorded_groups(&self.config.state_dir);
    }
}

/// Kills (SIGKILL) every process group recorded in a supervisor's state directory: what a
/// test's supervisor left running when the test failed half-way.
pub fn kill_recorded_groups(state_dir: &Path) {
    let Ok(entries) = fs::read_dir(state_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let Some(pgid) = record["pgid"].as_i64().and_then(|p| i32::try_from(p).ok())
            && pgid > 1
        {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

/// The uid and gid an app of these tests runs as when the tests run as root: one per app
/// name, from a range no other test uses.
pub fn app_ids(app: &str) -> AppIds {
    let sum: u32 = app.bytes().map(u32::from).sum();
    let uid = 262_000 + sum % 3000;
    AppIds { uid, gid: uid }
}

/// Whether the tests run as root (then sandboxed apps get uids of their own).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `GET /` on 127.0.0.1:PORT; the response body, or the error.
pub fn http_get(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or(response))
}

/// `GET /`, retried until the server answers (it may still be starting), or fails.
pub async fn http_get_eventually(port: u16) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::task::spawn_blocking(move || http_get(port))
            .await
            .expect("join")
        {
            Ok(body) => return body,
            Err(error) => assert!(
                tokio::time::Instant::now() < deadline,
                "port {port} never answered: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether process group `pgid` is gone entirely (no members, not even zombies).
pub fn group_is_gone(pgid: u32) -> bool {
    let pgid = i32::try_from(pgid).expect("pid fits in i32");
    killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH)
}

/// Whether a port can be bound on 127.0.0.1 (nobody holds it).
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The lines of a log file with their timestamps removed.
pub fn log_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            assert!(is_timestamped(line), "line without timestamp: {line:?}");
            line[25..].to_owned()
        })
        .collect()
}

/// `2024-05-01T12:34:56.789Z ` at the start of the line.
pub fn is_timestamped(line: &str) -> bool {
    let bytes = line.as_bytes();
    bytes.len() >= 25
        && bytes[4] == b'-'
        && bytes[10] == b'T'
        && bytes[19] == b'.'
        && bytes[23] == b'Z'
        && bytes[24] == b' '
        && line[..4].chars().all(|c| c.is_ascii_digit())
}
