//! A daemon in a temp dir, users with real keys, and helpers to run `ssh`
//! and `git` against it. Everything a test starts is stopped on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The nap binary under test.
pub fn nap_bin() -> &'static str {
    env!("CARGO_BIN_EXE_nap")
}

/// Runs a command and returns its output; panics if it cannot start.
pub fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// Runs a command with `input` on its stdin and returns its output.
pub fn run_with_input(command: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("output")
}

/// Text of stdout and stderr, for assertions and failure messages.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running `nap serve` with its own data directory.
pub struct Nap {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub ssh_port: u16,
    pub http_port: u16,
    pub router_port: u16,
    pub https_port: u16,
    child: Option<Child>,
    log: PathBuf,
    ports: String,
    extra: Vec<String>,
}

impl Nap {
    pub fn start() -> Nap {
        Nap::start_with(&[])
    }

    /// Starts a daemon with extra `nap serve` arguments (e.g. `--config FILE`).
    pub fn start_with(extra: &[&str]) -> Nap {
        Nap::start_on(0, extra)
    }

    /// Like [`Nap::start_with`], with the HTTP API on 127.0.0.1:`http_port`
    /// (0: any), for configs that must name it before the daemon starts.
    pub fn start_on(http_port: u16, extra: &[&str]) -> Nap {
        Nap::start_on_ports(http_port, 0, extra)
    }

    /// Like [`Nap::start_on`], with the router's plain HTTP on
    /// 127.0.0.1:`router_port` too (an ACME server must know where to
    /// validate before the daemon starts).
    pub fn start_on_ports(http_port: u16, router_port: u16, extra: &[&str]) -> Nap {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let mut nap = Nap {
            data,
            ssh_port: 0,
            http_port,
            router_port,
            https_port: 0,
            child: None,
            log: dir.path().join("serve.log"),
            ports: String::new(),
            extra: Vec::new(),
            dir,
        };
        nap.extra = extra.iter().map(|a| (*a).to_owned()).collect();
        nap.spawn(0);
        nap
    }

    /// Starts the daemon; waits for the line that says it listens (a
    /// signal, not a sleep).
    fn spawn(&mut self, port: u16) {
        // Each daemon of this test run gets its own instance ports, so that
        // tests running side by side never answer for each other.
        static NEXT_RANGE: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        if self.ports.is_empty() {
            let n = NEXT_RANGE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // 21000-29999: below the kernel's ephemeral ports (32768 and
            // up), which any client socket may be holding.
            let first = 21000 + (n % 90) * 100;
            self.ports = format!("{first}-{}", first + 99);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let mut child = Command::new(nap_bin())
            .args(["serve", "--data"])
            .arg(&self.data)
            .args(["--ssh", &format!("127.0.0.1:{port}")])
            .args(["--ports", &self.ports])
            .args(["--http", &format!("127.0.0.1:{}", self.http_port)])
            .args(["--router", &format!("127.0.0.1:{}", self.router_port)])
            .args(["--https", &format!("127.0.0.1:{}", self.https_port)])
            .args(&self.extra)
            .env("NAP_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start nap serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read nap's first line");
        // "nap: ssh listening on A, http on B, router on C, https on D"
        let ports: Vec<u16> = line
            .trim()
            .strip_prefix("nap: ssh listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}; log:\n{}", self.log_text()))
            .split(", ")
            .filter_map(|part| part.rsplit(':').next()?.parse().ok())
            .collect();
        let [ssh, http, router, https] = ports[..] else {
            panic!("cannot read ports from {line:?}")
        };
        (self.ssh_port, self.http_port, self.router_port) = (ssh, http, router);
        self.https_port = https;
        self.child = Some(child);
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until the daemon's log has `count` lines containing `needle` (a signal the
    /// daemon writes), at most a minute.
    pub fn wait_for_log(&self, needle: &str, count: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let log = self.log_text();
            if log.lines().filter(|line| line.contains(needle)).count() >= count {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not {count} lines with {needle:?} in the daemon's log after 60s:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the daemon (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let status = child.wait().expect("wait for nap");
            assert!(
                status.success(),
                "nap serve exited with {status}; log:\n{}",
                self.log_text()
            );
        }
    }

    /// Stops and starts the daemon on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.ssh_port;
        self.spawn(port);
    }

    /// `nap ARGS` as the local operator.
    pub fn cli(&self, args: &[&str]) -> Output {
        run(Command::new(nap_bin())
            .arg("--data")
            .arg(&self.data)
            .args(args))
    }

    /// `nap ARGS` with `input` on stdin.
    pub fn cli_with_input(&self, args: &[&str], input: &str) -> Output {
        run_with_input(
            Command::new(nap_bin())
                .arg("--data")
                .arg(&self.data)
                .args(args),
            input,
        )
    }

    /// Makes a key of `kind` (ed25519, ecdsa, rsa) and registers it for `name`.
    pub fn user(&self, name: &str, kind: &str, admin: bool) -> User {
        let user = User::new(self, name, kind);
        let mut args = vec!["keys", "add", name];
        if admin {
            args.push("--admin");
        }
        let key = user.public_key_path();
        let key = key.to_str().expect("utf-8 path");
        args.push(key);
        let output = self.cli(&args);
        assert!(
            output.status.success(),
            "keys add failed: {:?}",
            text(&output)
        );
        user
    }

    /// A user whose key is not registered.
    pub fn stranger(&self, name: &str) -> User {
        User::new(self, name, "ed25519")
    }

    /// Every file and directory below the data directory, except the
    /// socket, host key and logs that exist from the start.
    pub fn tree(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    out.push(
                        path.strip_prefix(base)
                            .expect("below")
                            .display()
                            .to_string(),
                    );
                    if path.is_dir() {
                        walk(&path, base, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data, &self.data, &mut out);
        out.sort();
        out
    }
}

impl Drop for Nap {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// Someone with an SSH key, talking to one daemon.
pub struct User {
    pub name: String,
    key: PathBuf,
    known_hosts: PathBuf,
    port: u16,
    pub home: PathBuf,
}

impl User {
    fn new(nap: &Nap, name: &str, kind: &str) -> User {
        let home = nap.dir.path().join(format!("home-{name}"));
        std::fs::create_dir_all(&home).expect("home");
        let key = home.join("id");
        let mut keygen = Command::new("ssh-keygen");
        keygen
            .args([
                "-q",
                "-N",
                "",
                "-C",
                &format!("{name}@test"),
                "-t",
                kind,
                "-f",
            ])
            .arg(&key);
        if kind == "rsa" {
            keygen.args(["-b", "3072"]);
        }
        let output = run(&mut keygen);
        assert!(output.status.success(), "ssh-keygen: {:?}", text(&output));
        User {
            name: name.into(),
            key,
            known_hosts: home.join("known_hosts"),
            port: nap.ssh_port,
            home,
        }
    }

    pub fn public_key_path(&self) -> PathBuf {
        self.key.with_extension("pub")
    }

    pub fn public_key(&self) -> String {
        std::fs::read_to_string(self.public_key_path()).expect("public key")
    }

    /// The ssh options every call uses: this key only, no agent, no config.
    pub fn ssh_options(&self, strict: &str) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.key.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "IdentityAgent=none".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("StrictHostKeyChecking={strict}"),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-p".into(),
            self.port.to_string(),
        ]
    }

    /// `ssh iwanna@127.0.0.1 ARGS`.
    pub fn ssh(&self, args: &[&str]) -> Output {
        self.ssh_as("iwanna", args)
    }

    pub fn ssh_as(&self, login: &str, args: &[&str]) -> Output {
        run(Command::new("ssh")
            .args(self.ssh_options("accept-new"))
            .arg(format!("{login}@127.0.0.1"))
            .args(args)
            .stdin(Stdio::null()))
    }

    /// `ssh ... ARGS` with `input` on stdin.
    pub fn ssh_with_input(&self, args: &[&str], input: &str) -> Output {
        run_with_input(
            Command::new("ssh")
                .args(self.ssh_options("accept-new"))
                .arg("iwanna@127.0.0.1")
                .args(args),
            input,
        )
    }

    /// The remote URL of `app`.
    pub fn remote(&self, app: &str) -> String {
        format!("ssh://iwanna@127.0.0.1:{}/{app}", self.port)
    }

    /// `git ARGS` in `dir`, speaking ssh with this user's key.
    pub fn git(&self, dir: &Path, args: &[&str]) -> Output {
        run(&mut self.git_command(dir, args))
    }

    /// The command [`User::git`] runs, for a test that starts it itself.
    pub fn git_command(&self, dir: &Path, args: &[&str]) -> Command {
        let ssh = format!("ssh {}", self.ssh_options("accept-new").join(" "));
        let mut command = Command::new("git");
        command
            .current_dir(dir)
            .args(args)
            .env("GIT_SSH_COMMAND", ssh)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.home)
            .env("GIT_AUTHOR_NAME", &self.name)
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", &self.name)
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid");
        command
    }

    /// `ssh iwanna@127.0.0.1 ARGS` as a command a test starts itself.
    pub fn ssh_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(self.ssh_options("accept-new"))
            .arg("iwanna@127.0.0.1")
            .args(args);
        command
    }

    /// A fresh work tree with `files` committed on master.
    pub fn repo(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.home.join(name);
        std::fs::create_dir_all(&dir).expect("repo dir");
        assert!(
            self.git(&dir, &["init", "-q", "-b", "master"])
                .status
                .success()
        );
        self.commit(&dir, files, "first");
        dir
    }

    /// Writes `files` and commits them.
    pub fn commit(&self, dir: &Path, files: &[(&str, &str)], message: &str) {
        for (path, content) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
            std::fs::write(path, content).expect("write");
        }
        assert!(self.git(dir, &["add", "-A"]).status.success());
        let output = self.git(dir, &["commit", "-q", "--allow-empty", "-m", message]);
        assert!(output.status.success(), "commit: {:?}", text(&output));
    }

    /// `git push REMOTE(app) master`.
    pub fn push(&self, dir: &Path, app: &str) -> Output {
        self.git(dir, &["push", &self.remote(app), "master"])
    }
}

/// The fixture HTTP app's source.
pub const SERVER_PY: &str = include_str!("fixtures/server.py");

/// A profile running the fixture app.
pub fn server_profile(extra: &str) -> String {
    format!("command: python3 server.py\n{extra}")
}

/// `GET path` on 127.0.0.1:port; the body, or `None` if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

/// The ports a push or command announced: `APP@I up on port N` lines.
pub fn announced_ports(output: &str) -> Vec<(u32, u16)> {
    let mut ports: Vec<(u32, u16)> = output
        .lines()
        .filter_map(|line| {
            let (instance, port) = line.split_once(" up on port ")?;
            let index = instance.rsplit('@').next()?.parse().ok()?;
            Some((index, port.trim().parse().ok()?))
        })
        .collect();
    ports.sort();
    ports
}

/// One instance as `ps --json` reports it.
#[derive(Debug, serde::Deserialize)]
pub struct Instance {
    pub instance: String,
    pub release: String,
    pub state: String,
    pub port: u16,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub memory_limit: Option<u64>,
    pub limit_enforced: bool,
}

impl Nap {
    /// `nap ps APP --json`.
    pub fn ps(&self, app: &str) -> Vec<Instance> {
        let output = self.cli(&["ps", app, "--json"]);
        assert!(output.status.success(), "ps: {:?}", text(&output));
        serde_json::from_slice(&output.stdout).expect("ps --json")
    }

    /// Kills the daemon with SIGKILL, as a crash would, leaving its children.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            let _ = child.wait();
        }
    }

    /// Starts the daemon again after [`Nap::crash`] or [`Nap::stop`].
    pub fn start_again(&mut self) {
        let port = self.ssh_port;
        self.spawn(port);
    }
}

impl User {
    /// A work tree with the fixture app and `profile`.
    pub fn app_repo(&self, name: &str, profile: &str) -> PathBuf {
        self.repo(name, &[("server.py", SERVER_PY), ("profile", profile)])
    }

    /// Pushes and asserts success; returns the push's stderr (the deploy output).
    pub fn deploy(&self, dir: &Path, app: &str) -> String {
        let output = self.push(dir, app);
        let (_, stderr) = text(&output);
        assert!(output.status.success(), "push of {app} failed:\n{stderr}");
        stderr
    }
}

/// One HTTP/1.0 request to 127.0.0.1:port; `(status, body)`, or `None` if
/// nothing answered.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).ok()?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).ok()?;
    let response = String::from_utf8_lossy(&bytes);
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}
