//! A push: `git receive-pack` inside an operation that outlives the pusher.
//!
//! The push's task takes the app's lock, runs git, and holds the lock until git has
//! exited and the push's outcome is settled. The SSH channel only feeds git's stdin and
//! follows the output. When the pusher leaves, git is not killed: its stdin gets EOF
//! (if it was still reading the pack, it fails and nothing changes), and its output is
//! read and dropped, so it never blocks. The deploy that git's pre-receive hook asks for
//! runs in an operation of its own (`hook.rs`), which also goes on if the hook dies.
//!
//! Once git has exited, the push waits for its deploy to end and checks the one rule
//! that makes a push consistent: the running release is the commit the branch points
//! at. A deploy that succeeded for a ref git did not update (the hook died, git was
//! killed, the ref could not be locked) is undone: the previous release comes back
//! and the new one stops.

use std::process::Stdio;
use std::sync::Arc;

use nap_core::{AppName, Caller};
use tokio::io::{AsyncRead, AsyncReadExt, DuplexStream};
use tokio::process::Command;
use tracing::{info, warn};

use crate::deploy::Deployed;
use crate::git_exec::{exit_code, git_service, in_repo};
use crate::operation::{Chunk, Sink, follow};
use crate::{Daemon, Out};

/// Bytes of the client's pack that may wait between its channel and git.
const STDIN_BUFFER: usize = 64 * 1024;

/// Runs a push of `app` for `caller`: starts the push's operation, feeds it the
/// client's bytes and follows its output. The operation goes on if this future is
/// dropped.
pub(crate) async fn receive_pack(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    app: AppName,
    mut stdin: Box<dyn AsyncRead + Send + Unpin + '_>,
    out: &mut Out<'_>,
) -> u32 {
    let (sink, chunks) = Sink::new();
    let (mut to_push, from_client) = tokio::io::duplex(STDIN_BUFFER);
    let (daemon_for_push, caller_for_push) = (daemon.clone(), caller.clone());
    let operation = daemon.operations.spawn(async move {
        let status = push(
            daemon_for_push,
            caller_for_push,
            app.clone(),
            from_client,
            sink,
        )
        .await;
        // Said once the lock is free and the outcome settled: whoever waits for a push
        // whose client left (an operator, a test) waits for this line.
        info!("the push of {app} is over (status {status})");
        status
    });
    // The client's bytes go to the push until the client sends EOF (or leaves: then
    // this future is dropped, and with it the pipe's end, which is git's EOF).
    let feed = async move {
        let _ = tokio::io::copy(&mut stdin, &mut to_push).await;
    };
    let follow = follow(chunks, operation, out);
    tokio::pin!(feed, follow);
    let mut fed = false;
    loop {
        tokio::select! {
            status = &mut follow => return status,
            () = &mut feed, if !fed => fed = true,
        }
    }
}

/// The push's operation.
async fn push(
    daemon: Arc<Daemon>,
    caller: Caller,
    app: AppName,
    mut from_client: DuplexStream,
    sink: Sink,
) -> u32 {
    let mut out = sink.out();
    let Ok(lock) = daemon.lock_app(&app, &mut out).await else {
        return 1;
    };
    if sink.door_gone() {
        info!(user = %caller.user, app = %app, "the pusher left before git started; nothing was pushed");
        return 1;
    }
    // Looked at again under the lock: while this push waited, a `deploy --from` or
    // `clone` that had just made the app may have failed and removed it. Then this is
    // a first push again (or, if another user took the name meanwhile, refused).
    if let Err(e) = daemon.apps.create_or_get(&caller, app.as_str()).await {
        info!(user = %caller.user, app = %app, error = %e, "push refused once the app's lock was held");
        out.err(&format!(" !     {e}")).await;
        return 1;
    }
    let push = match daemon.pushes.register(&caller, &app) {
        Ok(push) => push,
        Err(e) => {
            out.err(&format!(" !     cannot make a push token: {e}"))
                .await;
            return 1;
        }
    };
    // Repositories made by an older nap have a shell script as their hook, and a nap
    // binary that moved leaves a link to nowhere: both are put right here, under the lock.
    let repo = daemon.data.repo(app.as_str());
    if let Err(e) = crate::hook::install(&repo, &daemon.settings.nap_bin) {
        warn!(app = %app, error = %e, "cannot install the pre-receive hook");
        out.err(&format!(" !     cannot install the pre-receive hook: {e}"))
            .await;
        return 1;
    }
    let mut command = git_service(&daemon, "receive-pack", &app);
    command
        .env("NAP_SOCKET", daemon.data.socket())
        .env("NAP_HOOK_TOKEN", push.token());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            warn!(error = %e, "cannot start git");
            out.err(&format!(" !     cannot start git receive-pack: {e}"))
                .await;
            return 1;
        }
    };
    info!(user = %caller.user, app = %app, "git receive-pack started");
    let (Some(mut child_in), Some(child_out), Some(child_err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return 1;
    };
    let cancel = daemon.operations.cancel();
    // The pack goes to git until the client's EOF; a daemon shutting down ends it at
    // once (git then fails for want of a pack, or, in its hook, with the deploy the
    // shutdown undid).
    let to_git = async move {
        tokio::select! {
            _ = tokio::io::copy(&mut from_client, &mut child_in) => {}
            () = cancel.cancelled() => {}
        }
        drop(child_in);
    };
    let from_git = async {
        tokio::join!(
            relay(child_out, &sink, Chunk::Out),
            relay(child_err, &sink, Chunk::Err)
        );
        child.wait().await
    };
    tokio::pin!(to_git, from_git);
    let mut fed = false;
    let status = loop {
        tokio::select! {
            status = &mut from_git => break status,
            () = &mut to_git, if !fed => fed = true,
        }
    };
    // Git is done; its hook's deploy (if it asked for one) may still be running.
    if let Some((deployed, branch)) = push.outcome().await {
        settle(&daemon, &app, &deployed, &branch, &mut out).await;
    }
    drop(lock);
    pack_in_background(&daemon, &app);
    exit_code(status)
}

/// `git gc --auto` on the app's repository once a push is over, in an operation of its own
/// that the pusher does not wait for: what `receive-pack` would do in the push itself
/// (nap turns its `receive.autogc` off). It packs loose objects only when git thinks there
/// are enough (6,700 by default) and is quick otherwise. It holds the app's lock, so it never
/// runs beside a destroy or the next push's deploy; when the lock is taken it is skipped,
/// and the next push does it. A daemon shutting down kills it (git leaves the repository
/// as it was).
fn pack_in_background(daemon: &Arc<Daemon>, app: &AppName) {
    let Ok(lock) = daemon.app_locks.waiter(app.as_str()).try_lock() else {
        return;
    };
    let mut command = Command::new(&daemon.settings.git);
    command
        // In the foreground of this operation, where a shutdown can stop it.
        .args(["-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"]);
    in_repo(daemon, &mut command, &daemon.data.repo(app.as_str()));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let cancel = daemon.operations.cancel();
    let app = app.clone();
    daemon.operations.spawn(async move {
        let _lock = lock;
        let output = tokio::select! {
            output = async { command.spawn()?.wait_with_output().await } => output,
            () = cancel.cancelled() => return,
        };
        match output {
            Ok(output) if output.status.success() => {}
            Ok(output) => warn!(
                app = %app,
                status = %output.status,
                stderr = %String::from_utf8_lossy(&output.stderr).trim(),
                "git gc --auto failed"
            ),
            Err(error) => warn!(app = %app, %error, "cannot run git gc --auto"),
        }
    });
}

/// Copies one of git's streams to the client while it follows, and reads (and drops)
/// the rest once it has gone, so that git never blocks on a full pipe.
async fn relay(mut from: impl AsyncRead + Unpin, sink: &Sink, chunk: fn(Vec<u8>) -> Chunk) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut following = true;
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if following {
            following = sink.send(chunk(buffer[..n].to_vec())).await;
        }
    }
}

/// After git: the running release must be the commit `branch` points at. If git did not
/// move the branch to the deployed commit, the deploy is undone.
async fn settle(
    daemon: &Arc<Daemon>,
    app: &AppName,
    deployed: &Deployed,
    branch: &str,
    out: &mut Out<'_>,
) {
    let repo = daemon.data.repo(app.as_str());
    let reference = branch.to_owned();
    let pointed = tokio::task::spawn_blocking(move || {
        nap_git::open(&repo, &nap_git::Quarantine::default())
            .ok()?
            .resolve_commit(&reference)
            .ok()
            .map(|commit| commit.id)
    })
    .await
    .ok()
    .flatten();
    if pointed.as_deref() == Some(deployed.commit.as_str()) {
        return;
    }
    warn!(
        app = %app,
        release = deployed.number,
        commit = %deployed.commit,
        branch,
        points_at = pointed.as_deref().unwrap_or("nothing"),
        "the push's deploy succeeded but git did not update the branch; undoing the deploy"
    );
    out.err(&format!(
        " !     git did not update {branch}; undoing {app} v{}",
        deployed.number
    ))
    .await;
    daemon.undo_deploy(app, deployed, out).await;
}
