//! `git receive-pack` and `git upload-pack`: access is checked, then the
//! system git runs with the channel bridged to it both ways.

use std::process::Stdio;
use std::sync::Arc;

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
    // A push holds its app's lock from before git starts until git has
    // updated the ref: the deploy in the hook and the ref update are one step,
    // and a second push sees the refs the first one left.
    let _lock = if service == "receive-pack" {
        match daemon.lock_app(&app, out).await {
            Ok(lock) => Some(lock),
            Err(_) => return 1,
        }
    } else {
        None
    };
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
    let _push = if service == "receive-pack" {
        let push = match daemon.pushes.register(caller, &app) {
            Ok(push) => push,
            Err(e) => {
                out.err(&format!(" !     cannot make a push token: {e}"))
                    .await;
                return 1;
            }
        };
        command
            .env("NAP_BIN", &daemon.settings.nap_bin)
            .env("NAP_SOCKET", daemon.data.socket())
            .env("NAP_HOOK_TOKEN", push.token());
        Some(push)
    } else {
        None
    };
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
    match status {
        Ok(status) => status.code().map_or(1, |code| code as u32),
        Err(e) => {
            warn!(error = %e, "waiting for git failed");
            1
        }
    }
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
