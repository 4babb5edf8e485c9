//! What the tests run against: fleet (the in-repo fake, or a real fleetd
//! named by `NAP_FLEET_ENDPOINT`), a real etcd, a real systemd user manager,
//! and a small HTTP server that hands out a release tarball.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use nap_fleet::fake::{FAKE, FakeFleet, FakeOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The fleet a test talks to.
pub struct FleetUnderTest {
    /// `http://…` or `unix://…`.
    pub endpoint: String,
    /// The fake, when no real fleetd was named.
    pub fake: Option<FakeFleet>,
    /// Items per page of that fleet.
    pub page_size: usize,
    /// What to call units so that tests never touch others' units.
    pub prefix: String,
}

impl FleetUnderTest {
    /// A client of it.
    pub fn client(&self) -> nap_fleet::FleetClient {
        nap_fleet::FleetClient::new(&self.endpoint).expect("the endpoint is valid")
    }

    /// Whether it is the fake.
    pub fn is_fake(&self) -> bool {
        self.fake.is_some()
    }

    /// A unit name of this test: `PREFIX-what.service`.
    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}.service", self.prefix)
    }
}

/// `NAP_FLEET_ENDPOINT` unset: starts the fake (with `options`) and says
/// so; set: uses that fleetd (`NAP_FLEET_PAGE_SIZE` is its page size, 100
/// by default; run with `--test-threads 1` there, as tests that add and
/// remove units at once shift each other's pages). Either way it prints
/// which.
pub async fn fleet_under_test(test: &str, options: FakeOptions) -> FleetUnderTest {
    let prefix = format!("nap-contract-{}-{test}", std::process::id());
    match std::env::var("NAP_FLEET_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => {
            let page_size = std::env::var("NAP_FLEET_PAGE_SIZE")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(100);
            println!(
                "fleet API: the fleet at {endpoint} named by NAP_FLEET_ENDPOINT (not the fake), page size {page_size}"
            );
            FleetUnderTest {
                endpoint,
                fake: None,
                page_size,
                prefix,
            }
        }
        _ => {
            let page_size = usize::from(options.page_size);
            let fake = FakeFleet::start(options).await.expect("the fake starts");
            println!(
                "fleet API: in-repo fake (no real fleetd here): {FAKE} at {}",
                fake.endpoint()
            );
            FleetUnderTest {
                endpoint: fake.endpoint().to_owned(),
                fake: Some(fake),
                page_size,
                prefix,
            }
        }
    }
}

/// An answer to a hand-made request.
#[derive(Debug)]
pub struct RawReply {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
}

impl RawReply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Sends a request by hand, exactly as given (headers included), so that
/// tests can send what the client never would.
pub async fn raw(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawReply {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: fleet\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut answer = Vec::new();
    if let Some(path) = endpoint.strip_prefix("unix://") {
        let mut stream = tokio::net::UnixStream::connect(path)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        stream.read_to_end(&mut answer).await.expect("read");
    } else {
        let address = endpoint
            .strip_prefix("http://")
            .expect("http endpoint")
            .trim_end_matches('/');
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        stream.read_to_end(&mut answer).await.expect("read");
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    RawReply { status, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A free TCP port on 127.0.0.1 (free when asked).
pub fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A free TCP port on 127.0.0.1 for an instance: below 32768, where the
/// kernel does not hand out ports of its own to outgoing connections.
pub fn free_instance_port() -> u16 {
    // Start somewhere else in every process, so parallel tests rarely meet.
    let seed = u32::from(free_port()) * 7919 + std::process::id();
    for attempt in 0..2000u32 {
        let port = 20000 + ((seed + attempt * 104_729) % 12_000);
        let port = u16::try_from(port).expect("below 32768");
        if StdTcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000 on 127.0.0.1");
}

/// Runs a command and returns its output, saying what failed to start.
pub fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// A real etcd on 127.0.0.1, with a temporary data directory; killed on drop.
pub struct Etcd {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Its `etcd --version` first line.
    pub version: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd (installing Debian's `etcd-server` first if it is
    /// missing and we are root) and waits until it answers.
    pub fn start() -> Etcd {
        ensure_etcd_installed();
        let version_output = run(Command::new("etcd").arg("--version"));
        let version = String::from_utf8_lossy(&version_output.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        let dir = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
        let child = Command::new("etcd")
            .arg("--name=nap-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=nap-test={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        let mut etcd = Etcd {
            child,
            endpoint: client_url,
            version,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_get_ok(client, "/version") {
                break;
            }
            if let Ok(Some(status)) = etcd.child.try_wait() {
                panic!(
                    "etcd exited ({status}) before it answered; its log:\n{}",
                    etcd.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not answer within 30 s; its log:\n{}",
                etcd.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("etcd: real, {} at {}", etcd.version, etcd.endpoint);
        etcd
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// A client of it.
    pub fn client(&self) -> nap_fleet::EtcdClient {
        nap_fleet::EtcdClient::new(&[&self.endpoint]).expect("valid endpoint")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ensure_etcd_installed() {
    if Command::new("etcd").arg("--version").output().is_ok() {
        return;
    }
    let uid = run(Command::new("id").arg("-u"));
    assert!(
        String::from_utf8_lossy(&uid.stdout).trim() == "0",
        "etcd is missing and we are not root: install it with `apt-get install -y etcd-server`"
    );
    let install = run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "etcd-server"])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(
        install.status.success(),
        "etcd is missing and `apt-get install -y etcd-server` failed:\n{}",
        String::from_utf8_lossy(&install.stderr)
    );
}

fn http_get_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// A GET over plain TCP; the status and body, or `None` if nothing answers.
pub fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_owned()))
}

/// A systemd user manager, started as FLEET.md says (as root, in a private
/// mount namespace with a tmpfs on `/run/systemd`), with its own runtime
/// and config directories. Told to exit, and waited for, on drop.
pub struct SystemdUser {
    child: Child,
    /// Its `XDG_RUNTIME_DIR`.
    pub runtime_dir: PathBuf,
    dir: tempfile::TempDir,
}

impl SystemdUser {
    /// Starts the manager and waits until it runs; panics with the reason if
    /// systemd refuses.
    pub fn start() -> SystemdUser {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime_dir = dir.path().join("runtime");
        for sub in ["runtime", "config", "data", "state", "cache"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("dirs");
        }
        std::fs::set_permissions(
            &runtime_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod");
        let log = std::fs::File::create(dir.path().join("systemd.log")).expect("log");
        // systemd as PID 1 makes the nodes of /run/systemd/inaccessible at
        // boot; the namespaces of InaccessiblePaths=, ProtectHome= and the
        // kernel protections are built from them, also by a user manager.
        let script = "mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/system /run/systemd/inaccessible \
            && cd /run/systemd/inaccessible && mkdir -m 0 dir && : > reg && chmod 0 reg && mkfifo -m 0 fifo \
            && mknod -m 0 chr c 0 0 && mknod -m 0 blk b 0 0 && cd / && exec systemd --user";
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", script])
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run unshare to start systemd --user: {e}"));
        let mut manager = SystemdUser {
            child,
            runtime_dir,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = manager.child.try_wait() {
                panic!(
                    "systemd --user exited ({status}) instead of running, so the generated units cannot be run here.\n\
                     Its output:\n{}",
                    manager.log()
                );
            }
            let state = manager.systemctl(&["is-system-running"]);
            let said = String::from_utf8_lossy(&state.stdout).trim().to_owned();
            if said == "running" || said == "degraded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "systemd --user did not get to running within 30 s (it says {said:?}: {}).\nIts output:\n{}",
                String::from_utf8_lossy(&state.stderr).trim(),
                manager.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let version = run(Command::new("systemd").arg("--version"));
        println!(
            "systemd: real user manager ({}), pid {}, in a private mount namespace",
            String::from_utf8_lossy(&version.stdout)
                .lines()
                .next()
                .unwrap_or("?"),
            manager.child.id()
        );
        manager
    }

    /// The manager's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("systemd.log")).unwrap_or_default()
    }

    /// `systemctl --user ARGS`, run inside the manager's mount namespace
    /// (where `/run/systemd/system` says systemd runs).
    pub fn systemctl(&self, args: &[&str]) -> Output {
        run(Command::new("nsenter")
            .args([
                "--mount",
                "--target",
                &self.child.id().to_string(),
                "systemctl",
                "--user",
                "--no-pager",
            ])
            .args(args)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir))
    }

    /// Like [`SystemdUser::systemctl`], but panics unless it succeeds.
    pub fn systemctl_ok(&self, args: &[&str]) -> String {
        let output = self.systemctl(args);
        assert!(
            output.status.success(),
            "systemctl --user {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for SystemdUser {
    fn drop(&mut self) {
        // `exit` stops every unit first; then the namespace goes with the
        // manager, its last process.
        let _ = self.systemctl(&["exit"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request the tarball server saw.
#[derive(Debug, Clone)]
pub struct TarballRequest {
    /// The path.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
}

/// Serves one release tarball the way nap's HTTP API is to:
/// `GET /api/apps/APP/releases/RELEASE/tarball` with the release's bearer
/// token; 401 without it, 404 for anything else.
pub struct TarballServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// What it saw.
    pub seen: Arc<Mutex<Vec<TarballRequest>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TarballServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TarballServer {
    /// Serves `tarball` at `path` to holders of `token`.
    pub async fn start(path: &str, token: &str, tarball: Vec<u8>) -> TarballServer {
        TarballServer::start_releases(&[(path, token)], tarball).await
    }

    /// Serves `tarball` at each path to the holders of that path's token.
    pub async fn start_releases(releases: &[(&str, &str)], tarball: Vec<u8>) -> TarballServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let releases: Arc<Vec<(String, String)>> = Arc::new(
            releases
                .iter()
                .map(|(path, token)| ((*path).to_owned(), format!("Bearer {token}")))
                .collect(),
        );
        let tarball = Bytes::from(tarball);
        let recorded = seen.clone();
        let server = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (releases, tarball, recorded) =
                    (releases.clone(), tarball.clone(), recorded.clone());
                connections.spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let authorization = request
                                .headers()
                                .get(hyper::header::AUTHORIZATION)
                                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                            recorded.lock().expect("lock").push(TarballRequest {
                                path: request.uri().path().to_owned(),
                                authorization: authorization.clone(),
                            });
                            let expected = releases
                                .iter()
                                .find(|(path, _)| path == request.uri().path())
                                .map(|(_, expected)| expected.as_str());
                            let (status, body) = if expected.is_none() {
                                (404, Bytes::from_static(b"no such release\n"))
                            } else if authorization.as_deref() != expected {
                                (
                                    401,
                                    Bytes::from_static(b"a valid release token is needed\n"),
                                )
                            } else {
                                (200, tarball.clone())
                            };
                            let mut response = hyper::Response::new(Full::new(body));
                            *response.status_mut() =
                                hyper::StatusCode::from_u16(status).expect("status");
                            if status == 200 {
                                response.headers_mut().insert(
                                    hyper::header::CONTENT_TYPE,
                                    hyper::header::HeaderValue::from_static("application/gzip"),
                                );
                            }
                            async move { Ok::<_, std::convert::Infallible>(response) }
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        TarballServer { url, seen, server }
    }
}

/// `tar -czf - -C dir .`: a release tarball as nap's HTTP API serves it.
pub fn tarball_of(dir: &Path) -> Vec<u8> {
    let output = run(Command::new("tar")
        .arg("-czf")
        .arg("-")
        .arg("-C")
        .arg(dir)
        .arg("."));
    assert!(
        output.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Polls `check` every 100 ms until it gives something or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
