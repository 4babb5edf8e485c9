//! The two servers under test, `nap serve` and OpenSSH's `sshd`, and the client side
//! (one key, `ssh`, `git push`) shared by both.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::cleanup::{ChildGuard, TempUser};

/// PATH for the servers and their children: a stock Debian root PATH, so that `python3`
/// is Debian's /usr/bin/python3 and not a pyenv shim (which costs ~140 ms per start),
/// and `git` is the same for nap and for sshd's sessions.
pub const SERVER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `command`, fails with its stderr unless it succeeds.
pub fn run_ok(command: &mut Command) -> anyhow::Result<Output> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// The benchmark's SSH identity (ed25519, as users of both servers would have).
pub struct Client {
    pub key: PathBuf,
    /// An empty HOME for git, so no user configuration applies.
    pub home: PathBuf,
}

impl Client {
    pub fn new(dir: &Path) -> anyhow::Result<Client> {
        let home = dir.join("client-home");
        std::fs::create_dir_all(&home)?;
        let key = home.join("id_ed25519");
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-N", "", "-C", "bench@nap", "-t", "ed25519", "-f"])
                .arg(&key),
        )?;
        Ok(Client { key, home })
    }

    pub fn public_key(&self) -> PathBuf {
        self.key.with_extension("pub")
    }
}

/// One SSH server as the client sees it.
#[derive(Clone)]
pub struct SshTarget {
    pub port: u16,
    pub user: String,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub home: PathBuf,
}

impl SshTarget {
    fn options(&self) -> Vec<String> {
        let mut options: Vec<String> = ["-F", "/dev/null", "-i"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        options.push(self.key.display().to_string());
        for option in [
            "IdentitiesOnly=yes".to_owned(),
            "IdentityAgent=none".to_owned(),
            "BatchMode=yes".to_owned(),
            "StrictHostKeyChecking=accept-new".to_owned(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "LogLevel=ERROR".to_owned(),
        ] {
            options.push("-o".into());
            options.push(option);
        }
        options.push("-p".into());
        options.push(self.port.to_string());
        options
    }

    /// `ssh USER@127.0.0.1 ARGS`, not yet started.
    pub fn ssh(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(self.options())
            .arg(format!("{}@127.0.0.1", self.user))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// The key exchange and cipher the client negotiates with this server (`ssh -v`).
    pub fn negotiated(&self, args: &[&str]) -> String {
        let mut options = self.options();
        for option in &mut options {
            if option == "LogLevel=ERROR" {
                *option = "LogLevel=DEBUG1".into();
            }
        }
        let output = Command::new("ssh")
            .args(options)
            .arg(format!("{}@127.0.0.1", self.user))
            .args(args)
            .stdin(Stdio::null())
            .output();
        let Ok(output) = output else {
            return "?".into();
        };
        let text = String::from_utf8_lossy(&output.stderr);
        let mut found: Vec<&str> = text
            .lines()
            .filter_map(|l| {
                l.strip_prefix("debug1: kex: algorithm: ")
                    .or_else(|| l.strip_prefix("debug1: kex: server->client cipher: "))
            })
            .collect();
        found.dedup();
        found.join("; ")
    }

    /// `git push ssh://USER@127.0.0.1:PORT/PATH master` from `repo`; `receive_pack`
    /// overrides the remote command.
    pub fn push(&self, repo: &Path, path: &str, receive_pack: Option<&str>) -> anyhow::Result<()> {
        let mut command = Command::new("git");
        command.arg("-C").arg(repo).arg("push").arg("--quiet");
        if let Some(receive_pack) = receive_pack {
            command.arg(format!("--receive-pack={receive_pack}"));
        }
        command
            .arg(format!(
                "ssh://{}@127.0.0.1:{}/{path}",
                self.user, self.port
            ))
            .arg("master")
            .env(
                "GIT_SSH_COMMAND",
                format!("ssh {}", self.options().join(" ")),
            )
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.home);
        run_ok(&mut command).map(|_| ())
    }
}

/// A free port on 127.0.0.1, as the kernel hands them out.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Reads `reader` line by line on a thread: lines go to `log`; the first line that
/// `wanted` accepts is sent back. Returns the receiver of that line.
fn watch_lines(
    reader: impl std::io::Read + Send + 'static,
    log: PathBuf,
    wanted: fn(&str) -> bool,
) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .ok();
        let mut tx = Some(tx);
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if let Some(log) = log.as_mut() {
                let _ = writeln!(log, "{line}");
            }
            if wanted(&line)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line);
            }
        }
    });
    rx
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One instance, as `nap ps APP --json` reports it.
#[derive(Debug, Deserialize)]
pub struct PsRow {
    pub instance: String,
    pub release: String,
    pub state: String,
    pub port: u16,
    #[serde(default)]
    pub limit_enforced: bool,
}

/// A running `nap serve` with its own data directory.
pub struct NapServer {
    pub guard: ChildGuard,
    pub data: PathBuf,
    pub target: SshTarget,
    bin: PathBuf,
    log: PathBuf,
}

impl NapServer {
    /// Starts `nap serve` in `dir` (its data directory is `dir/data`) with instance ports
    /// from `ports`, and waits for its "ssh listening" line. No key is registered yet.
    pub fn start(
        bin: &Path,
        dir: &Path,
        client: &Client,
        ports: &str,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let data = dir.join("data");
        let log = dir.join("nap-serve.log");
        let stderr = std::fs::File::create(&log)?;
        let mut command = Command::new(bin);
        command
            .arg("--data")
            .arg(&data)
            .args(["serve", "--ssh", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--router", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            .args(["--ports", ports])
            .args(["--max-scale", "128"])
            .args(extra)
            .env("PATH", SERVER_PATH)
            .env_remove("NAP_LOG")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let guard = ChildGuard::new(child, "nap serve", false);
        let first = watch_lines(stdout, dir.join("nap-serve.stdout"), |line| {
            line.starts_with("nap: ssh listening on ")
        });
        let Ok(line) = first.recv_timeout(Duration::from_secs(30)) else {
            bail!("nap serve did not say it listens; its log:\n{}", tail(&log));
        };
        let address = line
            .trim_start_matches("nap: ssh listening on ")
            .split([',', ' '])
            .next()
            .unwrap_or_default();
        let port = address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("cannot read the port in {line:?}"))?;
        let home = dir.join("client");
        std::fs::create_dir_all(&home)?;
        Ok(NapServer {
            guard,
            data,
            target: SshTarget {
                port,
                user: "iwanna".into(),
                key: client.key.clone(),
                known_hosts: home.join("known_hosts"),
                home: client.home.clone(),
            },
            bin: bin.to_owned(),
            log,
        })
    }

    /// `nap keys add bench --admin KEY`.
    pub fn add_key(&self, client: &Client) -> anyhow::Result<()> {
        let key = client.public_key();
        let key = key.to_str().context("key path is not UTF-8")?;
        self.cli(&["keys", "add", "bench", "--admin", key])
            .map(|_| ())
    }

    /// `nap --data DATA ARGS`, which must succeed.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        run_ok(
            Command::new(&self.bin)
                .arg("--data")
                .arg(&self.data)
                .args(args),
        )
        .with_context(|| format!("daemon log:\n{}", tail(&self.log)))
    }

    /// `nap ps APP --json`.
    pub fn ps(&self, app: &str) -> anyhow::Result<Vec<PsRow>> {
        let output = self.cli(&["ps", app, "--json"])?;
        serde_json::from_slice(&output.stdout).context("cannot read `ps --json`")
    }

    /// Destroys `app` and its instances (between runs, untimed).
    pub fn destroy(&self, app: &str) -> anyhow::Result<()> {
        self.cli(&["destroy", app, "--force"]).map(|_| ())
    }

    /// The daemon's resident set size, KiB (VmRSS from /proc).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.guard.pid()))
            .context("cannot read the daemon's /proc status")?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc status")
    }

    /// Stops the daemon (SIGTERM, which stops its instances).
    pub fn stop(&mut self) {
        self.guard.stop(Duration::from_secs(30));
    }
}

/// OpenSSH's sshd on a free 127.0.0.1 port with its own configuration, host key and
/// authorized_keys, serving a temporary user (or, failing that, the current one) with
/// the client's key.
pub struct Sshd {
    /// Stops sshd (and its sessions) when dropped; first, before the user goes.
    _guard: ChildGuard,
    _user: Option<TempUser>,
    pub target: SshTarget,
    /// Where the reference's bare repositories go (owned by the session user).
    pub repos: PathBuf,
    /// Who the sessions run as, for the report.
    pub note: String,
}

pub const SSHD: &str = "/usr/sbin/sshd";

impl Sshd {
    /// `dir` must be a fresh directory that only this server uses.
    pub fn start(dir: &Path, client: &Client) -> anyhow::Result<Sshd> {
        if !Path::new(SSHD).exists() {
            bail!("{SSHD} is missing (run nap-bench as root to have it install openssh-server)");
        }
        // The privilege separation directory sshd insists on (Debian creates it at boot).
        std::fs::create_dir_all("/run/sshd").context("cannot create /run/sshd")?;
        std::fs::create_dir_all(dir)?;
        // Sessions run as another user: let it through to authorized_keys and its repos.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let host_key = dir.join("ssh_host_ed25519_key");
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-N", "", "-t", "ed25519", "-f"])
                .arg(&host_key),
        )?;
        let authorized_keys = dir.join("authorized_keys");
        std::fs::copy(client.public_key(), &authorized_keys)?;
        std::fs::set_permissions(&authorized_keys, std::fs::Permissions::from_mode(0o644))?;
        let repos = dir.join("home");
        std::fs::create_dir_all(&repos)?;
        let (temp_user, user, note) = match TempUser::create(&repos) {
            Ok(temp_user) => {
                run_ok(Command::new("chown").arg(&temp_user.name).arg(&repos))?;
                let name = temp_user.name.clone();
                let note = format!(
                    "OpenSSH sessions run as a temporary system user `{name}` (shell /bin/sh, no dotfiles)"
                );
                (Some(temp_user), name, note)
            }
            Err(error) => {
                let user = run_ok(Command::new("id").arg("-un"))?;
                let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
                let note = format!(
                    "OpenSSH sessions run as `{user}` ({error:#}); its shell startup files are included in the reference's times"
                );
                (None, user, note)
            }
        };

        let mut last_error = None;
        for _attempt in 0..5 {
            let port = free_port()?;
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\n\
                     ListenAddress 127.0.0.1\n\
                     HostKey {host_key}\n\
                     PidFile none\n\
                     AuthorizedKeysFile {authorized_keys}\n\
                     UsePAM no\n\
                     StrictModes no\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\n\
                     AllowTcpForwarding no\n\
                     AllowAgentForwarding no\n\
                     AllowStreamLocalForwarding no\n\
                     X11Forwarding no\n\
                     PermitTunnel no\n\
                     PrintMotd no\n\
                     UseDNS no\n\
                     MaxStartups 100\n\
                     MaxSessions 100\n\
                     LogLevel INFO\n",
                    host_key = host_key.display(),
                    authorized_keys = authorized_keys.display(),
                ),
            )?;
            run_ok(Command::new(SSHD).arg("-t").arg("-f").arg(&config))?;
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .env("PATH", SERVER_PATH)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()
                .context("cannot start sshd")?;
            let stderr = child.stderr.take().context("no stderr")?;
            let mut guard = ChildGuard::new(child, "sshd", true);
            let log = dir.join("sshd.log");
            let ready = watch_lines(stderr, log.clone(), |line| {
                line.contains("Server listening on") || line.contains("Bind to port")
            });
            let started = Instant::now();
            match ready.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.contains("Server listening on") => {
                    return Ok(Sshd {
                        _guard: guard,
                        _user: temp_user,
                        target: SshTarget {
                            port,
                            user,
                            key: client.key.clone(),
                            known_hosts: dir.join("known_hosts"),
                            home: client.home.clone(),
                        },
                        repos,
                        note,
                    });
                }
                _ => {
                    guard.stop(Duration::from_secs(2));
                    last_error = Some(format!(
                        "sshd did not start on port {port} within {:?}:\n{}",
                        started.elapsed(),
                        tail(&log)
                    ));
                }
            }
        }
        bail!(last_error.unwrap_or_else(|| "sshd did not start".into()))
    }
}

/// The receive-pack nap runs (`git receive-pack`, git from [`SERVER_PATH`]), as one
/// program path for the reference's `--receive-pack`.
pub fn receive_pack_path() -> anyhow::Result<String> {
    let output = run_ok(
        Command::new("sh")
            .args(["-c", "command -v git-receive-pack"])
            .env("PATH", SERVER_PATH),
    )?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
