//! Where the daemon runs the system git, and nowhere else:
//!
//! - `git receive-pack` and `git upload-pack` for pushes and fetches over SSH:
//!   access is checked, then git runs with the channel bridged to it both ways
//!   (a push inside an operation that outlives its client, `push.rs`);
//! - `git fetch` for `deploy NEW --from URL` ([`fetch`]): into the new app's
//!   repository, with only the transport the URL names, connecting only to the
//!   addresses `remote_check` checked, no redirects and no proxy, within a time
//!   and size budget.
//!
//! gitoxide does everything else with repositories (nap-git).

use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nap_core::remote::{Host, Transport};
use nap_core::{Action, Caller};
use tokio::io::AsyncRead;
use tokio::process::Command;
use tracing::{info, warn};

use crate::remote_check::Checked;
use crate::{Daemon, Out};

/// `'app'`, `'/app'`, `'app.git'` and `'/app.git'` all name app `app`.
fn app_from_path(path: &str) -> &str {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.strip_suffix(".git").unwrap_or(path)
}

pub async fn run(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    service: &'static str,
    path: &str,
    mut stdin: Box<dyn AsyncRead + Send + Unpin + '_>,
    out: &mut Out<'_>,
) -> u32 {
    let name = app_from_path(path);
    let authorized = if service == "receive-pack" {
        daemon.apps.create_or_get(caller, name).await
    } else {
        daemon.apps.existing(caller, name, Action::Read)
    };
    let app = match authorized {
        Ok((app, _)) => app,
        Err(e) => {
            info!(user = %caller.user, app = %name.escape_debug(), error = %e, "git {service} refused");
            out.err(&format!(" !     {e}")).await;
            return 1;
        }
    };
    if service == "receive-pack" {
        // A push changes what runs: it is an operation of its own (`push.rs`).
        return crate::push::receive_pack(daemon, caller, app, stdin, out).await;
    }
    // A fetch changes nothing: it lasts as long as its client, and git goes with it.
    let mut command = git_service(daemon, service, &app);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            warn!(error = %e, "cannot start git");
            out.err(&format!(" !     cannot start git {service}: {e}"))
                .await;
            return 1;
        }
    };
    info!(user = %caller.user, app = %app, service, "git started");
    let (Some(mut child_in), Some(mut child_out), Some(mut child_err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return 1;
    };
    let (stdout, stderr) = out.streams();
    // The client's bytes go to git until the client sends EOF; then git's
    // stdin closes. Git may finish first (a fetch), so its side decides.
    let to_git = async move {
        let _ = tokio::io::copy(&mut stdin, &mut child_in).await;
    };
    let from_git = async {
        let _ = tokio::join!(
            tokio::io::copy(&mut child_out, stdout),
            tokio::io::copy(&mut child_err, stderr)
        );
        child.wait().await
    };
    tokio::pin!(to_git, from_git);
    let mut client_done = false;
    let status = loop {
        tokio::select! {
            status = &mut from_git => break status,
            () = &mut to_git, if !client_done => client_done = true,
        }
    };
    exit_code(status)
}

/// `git SERVICE` on the app's repository, with nothing of the daemon's environment but
/// `PATH`, and its three streams piped. It is killed if its handle is dropped.
pub(crate) fn git_service(daemon: &Daemon, service: &str, app: &nap_core::AppName) -> Command {
    let repo = daemon.data.repo(app.as_str());
    let mut command = Command::new(&daemon.settings.git);
    if service == "receive-pack" {
        // No `git maintenance --auto` inside the push: the pusher would wait for it. nap
        // packs the repository after the push instead (`push::pack_in_background`).
        command.args(["-c", "receive.autogc=false"]);
        // Every pack is kept as it came (`index-pack`), also one of fewer than 100 objects,
        // which git would otherwise explode into loose objects (`unpack-objects`): a small
        // push then writes a pack and its index instead of a file and maybe a directory per
        // object, the deploy reads its commit from one pack, and moving the quarantine into
        // the repository after the hook is two renames rather than a link and an unlink per
        // object. About a fifth of receive-pack's syscalls for a 16-object push. The packs
        // add up, one per push, until `git gc --auto` (after the push, above) repacks them
        // at `gc.autoPackLimit` (50).
        command.args(["-c", "receive.unpackLimit=1"]);
    }
    command.arg(service).arg(&repo);
    in_repo(daemon, &mut command, &repo);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `command` (the system git) in `repo` with nothing of the daemon's environment but
/// `PATH`, no system config, and the data directory as `HOME`.
pub(crate) fn in_repo(daemon: &Daemon, command: &mut Command, repo: &Path) {
    command
        .current_dir(repo)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", daemon.data.root());
}

/// git's exit status as nap's.
pub(crate) fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> u32 {
    match status {
        Ok(status) => status.code().map_or(1, |code| code as u32),
        Err(e) => {
            warn!(error = %e, "waiting for git failed");
            1
        }
    }
}

/// Most bytes a repository fetched by `deploy --from` may take on disk.
const MAX_FETCH_BYTES: u64 = 1 << 30;
/// Longest a fetch may run.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a running fetch is measured against its budget.
const FETCH_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Most of git's stderr kept for the error message: its last lines say why.
const MAX_FETCH_STDERR: usize = 16 * 1024;

/// The ssh every fetch runs: never the server's own ssh identity, agent or
/// config, no host key kept.
const FETCH_SSH: &str = "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityFile=/dev/null -o IdentityAgent=none -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/dev/null";

/// What to fetch, already checked by the caller.
pub(crate) struct FetchSource<'a> {
    /// The URL as given.
    pub(crate) url: &'a str,
    /// The URL as it may be shown (without a password).
    pub(crate) shown: &'a str,
    /// What the check made of it: its transport, and the addresses the
    /// fetch must connect to.
    pub(crate) checked: &'a Checked,
    /// The branch, tag or `HEAD` to fetch.
    pub(crate) reference: &'a str,
}

/// Why a fetch failed; nothing of it is kept.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// git could not be started or waited for.
    #[error("cannot start git fetch: {0}")]
    Start(std::io::Error),
    /// It ran out of time.
    #[error("fetching took longer than {}s; gave up", FETCH_TIMEOUT.as_secs())]
    TooSlow,
    /// The repository grew over the budget.
    #[error("the repository is larger than {} MiB; gave up", MAX_FETCH_BYTES >> 20)]
    TooLarge,
    /// The server answered with a redirect, which could lead anywhere.
    #[error(
        "cannot fetch {url}: the server redirects (HTTP {status}) and redirects are not followed; give the URL it redirects to"
    )]
    Redirected {
        /// The URL as it may be shown.
        url: String,
        /// The redirect's status.
        status: String,
    },
    /// git said no.
    #[error("cannot fetch {reference} from {url}: {reason}")]
    Refused {
        /// The ref.
        reference: String,
        /// The URL as it may be shown.
        url: String,
        /// git's last line.
        reason: String,
    },
}

/// Runs `git fetch` of `source` into the repository at `repo` (as its
/// `refs/heads/master`), within a time and size budget.
pub(crate) async fn fetch(
    daemon: &Daemon,
    repo: &Path,
    source: &FetchSource<'_>,
) -> Result<(), FetchError> {
    fetch_with(&daemon.settings.git, daemon.data.root(), repo, source).await
}

/// The `git fetch` of `source` as `git` at `home` runs it: only the checked
/// transport, no redirects, no proxy, and for a checked URL the checked
/// addresses and no others (see [`Checked`]).
pub(crate) fn fetch_command(
    git: &Path,
    home: &Path,
    repo: &Path,
    source: &FetchSource<'_>,
) -> Command {
    let mut command = Command::new(git);
    // An empty proxy turns off curl's own reading of proxy variables, besides
    // the cleared environment: a proxy would connect wherever it likes.
    command.args(["-c", "http.proxy="]);
    let (allowed, url, ssh) = match source.checked {
        Checked::Local => ("file", source.url.to_owned(), FETCH_SSH.to_owned()),
        Checked::Remote { url, pin } => {
            let mut fetched = source.url.to_owned();
            let mut ssh = FETCH_SSH.to_owned();
            if let Some(pin) = pin {
                // Redirects and http-alternates (which git treats alike)
                // could lead anywhere, past the check. An admin's fetch,
                // unchecked, keeps git's default (the first request may be
                // redirected).
                command.args(["-c", "http.followRedirects=false"]);
                let first = *pin
                    .addresses
                    .first()
                    .expect("remote_check pins at least one address");
                match url.transport {
                    // curl looks the host up by its text: answer with the
                    // checked addresses, also for the name without a
                    // trailing dot, however curl spells it.
                    Transport::Http | Transport::Https if matches!(url.host, Host::Name(_)) => {
                        let addresses: Vec<String> = pin
                            .addresses
                            .iter()
                            .map(|a| match a {
                                IpAddr::V4(v4) => v4.to_string(),
                                IpAddr::V6(v6) => format!("[{v6}]"),
                            })
                            .collect();
                        let mut names = vec![url.host_text.as_str()];
                        if let Some(bare) = url.host_text.strip_suffix('.') {
                            names.push(bare);
                        }
                        for name in names {
                            command.arg("-c").arg(format!(
                                "http.curloptResolve={name}:{}:{}",
                                url.port,
                                addresses.join(",")
                            ));
                        }
                    }
                    // An address: curl connects to it as it is.
                    Transport::Http | Transport::Https => {}
                    // git:// has no resolve option: the URL names the address.
                    Transport::Git => fetched = url.with_address(source.url, first),
                    // ssh connects to HostName, whatever the destination says.
                    Transport::Ssh => {
                        ssh.push_str(&format!(" -o HostName={first} -o CheckHostIP=no"))
                    }
                }
            }
            (url.transport.name(), fetched, ssh)
        }
    };
    command
        .args([
            "fetch",
            "--no-tags",
            "--quiet",
            "--no-recurse-submodules",
            "--",
        ])
        .arg(url)
        .arg(format!("+{}:refs/heads/master", source.reference))
        .current_dir(repo)
        // Nothing of the daemon's environment: no proxy, no askpass.
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", home)
        .env("GIT_DIR", repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_ALLOW_PROTOCOL", allowed)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSH_COMMAND", ssh)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// [`fetch`] with the git program and its home given.
pub(crate) async fn fetch_with(
    git: &Path,
    home: &Path,
    repo: &Path,
    source: &FetchSource<'_>,
) -> Result<(), FetchError> {
    let mut child = fetch_command(git, home, repo, source)
        .spawn()
        .map_err(FetchError::Start)?;
    let Some(stderr) = child.stderr.take() else {
        return Err(FetchError::Start(std::io::Error::other(
            "git has no stderr",
        )));
    };
    let errors = tokio::spawn(read_tail(stderr, MAX_FETCH_STDERR));
    let deadline = tokio::time::Instant::now() + FETCH_TIMEOUT;
    let mut ticker = tokio::time::interval(FETCH_CHECK_INTERVAL);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(FetchError::Start)?,
            _ = ticker.tick() => {
                if tokio::time::Instant::now() > deadline {
                    let _ = child.kill().await;
                    return Err(FetchError::TooSlow);
                }
                // Walking the repository is file work: not on the async threads.
                let measured = repo.to_owned();
                let size = tokio::task::spawn_blocking(move || dir_size(&measured))
                    .await
                    .unwrap_or(0);
                if size > MAX_FETCH_BYTES {
                    let _ = child.kill().await;
                    return Err(FetchError::TooLarge);
                }
            }
        }
    };
    let text = errors.await.unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("git fetch failed");
    // curl's words when git will not follow: "The requested URL returned error: 301".
    if let Some((_, code)) = last.split_once("returned error: ")
        && let Some(status) = code.get(..3).filter(|c| c.starts_with('3'))
    {
        return Err(FetchError::Redirected {
            url: source.shown.to_owned(),
            status: status.to_owned(),
        });
    }
    Err(FetchError::Refused {
        reference: source.reference.to_owned(),
        url: source.shown.to_owned(),
        reason: last.trim_start_matches("fatal: ").to_owned(),
    })
}

/// Reads `reader` to its end and keeps the last `max` bytes (or a little
/// more), as text: a chatty or hostile server cannot grow the daemon.
async fn read_tail(mut reader: impl tokio::io::AsyncRead + Unpin, max: usize) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 8192];
    loop {
        match tokio::io::AsyncReadExt::read(&mut reader, &mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buffer[..n]);
                if kept.len() > 2 * max {
                    kept.drain(..kept.len() - max);
                }
            }
        }
    }
    if kept.len() > max {
        kept.drain(..kept.len() - max);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
#[path = "git_exec_fetch_tests.rs"]
mod fetch_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that writes megabytes of errors: the daemon keeps the last
    /// few KiB, which say why.
    #[tokio::test]
    async fn only_the_tail_of_gits_errors_is_kept() {
        let mut chatter = "remote: noise\n".repeat(100_000);
        chatter.push_str("fatal: the reason\n");
        let tail = read_tail(chatter.as_bytes(), MAX_FETCH_STDERR).await;
        assert!(tail.len() <= MAX_FETCH_STDERR, "{} bytes kept", tail.len());
        assert!(tail.ends_with("fatal: the reason\n"));
        assert_eq!(read_tail(&b"short"[..], MAX_FETCH_STDERR).await, "short");
    }

    #[test]
    fn paths_name_apps() {
        for path in ["web", "/web", "web.git", "/web.git"] {
            assert_eq!(app_from_path(path), "web");
        }
        assert_eq!(app_from_path("../x"), "../x");
    }
}
