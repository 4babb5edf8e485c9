//! Where the daemon runs the system git, and nowhere else:
//!
//! - `git receive-pack` and `git upload-pack` for pushes and fetches over SSH:
//!   access is checked, then git runs with the channel bridged to it both ways
//!   (a push inside an operation that outlives its client, `push.rs`);
//! - `git fetch` for `deploy NEW --from URL` ([`fetch`]): into the new app's
//!   repository, with only the transports the caller may use, within a time and
//!   size budget.
//!
//! gitoxide does everything else with repositories (nap-git).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nap_core::{Action, Caller};
use tokio::io::AsyncRead;
use tokio::process::Command;
use tracing::{info, warn};

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
    command
        .arg(service)
        .arg(&repo)
        .current_dir(&repo)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", daemon.data.root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
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
/// Bytes of `git fetch`'s stderr kept for the error message; a remote may send any
/// amount.
const MAX_FETCH_STDERR: u64 = 64 * 1024;
/// Longest a fetch may run.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a running fetch is measured against its budget.
const FETCH_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// What to fetch, already checked by the caller.
pub(crate) struct FetchSource<'a> {
    /// The URL as given.
    pub(crate) url: &'a str,
    /// The URL as it may be shown (without a password).
    pub(crate) shown: &'a str,
    /// Its transport: `file` (admins only), or one of git's network transports.
    pub(crate) scheme: &'a str,
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
    let allowed = if source.scheme == "file" {
        "file"
    } else {
        "https:http:git:ssh"
    };
    let mut child = Command::new(&daemon.settings.git)
        .args(["fetch", "--no-tags", "--quiet", "--no-recurse-submodules", "--", source.url])
        .arg(format!("+{}:refs/heads/master", source.reference))
        .current_dir(repo)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .env("HOME", daemon.data.root())
        .env("GIT_DIR", repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_ALLOW_PROTOCOL", allowed)
        .env("GIT_TERMINAL_PROMPT", "0")
        // Never the server's own ssh identity or agent.
        .env(
            "GIT_SSH_COMMAND",
            "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityFile=/dev/null -o IdentityAgent=none -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/dev/null",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(FetchError::Start)?;
    let Some(mut stderr) = child.stderr.take() else {
        return Err(FetchError::Start(std::io::Error::other(
            "git has no stderr",
        )));
    };
    let errors = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut kept = Vec::new();
        let _ = (&mut stderr)
            .take(MAX_FETCH_STDERR)
            .read_to_end(&mut kept)
            .await;
        // The rest is read and dropped, so that git never blocks on a full pipe.
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&kept).into_owned()
    });
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
    Err(FetchError::Refused {
        reference: source.reference.to_owned(),
        url: source.shown.to_owned(),
        reason: last.trim_start_matches("fatal: ").to_owned(),
    })
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
mod tests {
    use super::*;

    #[test]
    fn paths_name_apps() {
        for path in ["web", "/web", "web.git", "/web.git"] {
            assert_eq!(app_from_path(path), "web");
        }
        assert_eq!(app_from_path("../x"), "../x");
    }
}
