//! `run APP CMD...`: a one-off process in the app's running release, as `heroku run` makes
//! one: the release's code, config vars, storage, sandbox and memory limit, its output
//! streamed to the client, its exit status the command's.
//!
//! Unlike the operations (`operation.rs`), it lasts exactly as long as its client: the
//! supervisor's [`nap_supervisor::OneOff`] kills every process of it when this future is
//! dropped (the SSH channel closed, the control socket hung up). It never joins the router
//! and takes no lock: deploys, restarts and scaling go on beside it.

use std::time::Duration;

use nap_runtime::InstanceSpec;
use nap_supervisor::{OneOff, OneOffEnd};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, sleep_until};

use super::call::{Call, NoRelease, fail};

use crate::Out;
use crate::deploy::release_name;
pub(crate) use watch::OneOffs;

/// Exit status of a run stopped at the time limit (as `timeout(1)` reports it).
const TIMED_OUT: u32 = 124;

/// How long the output may go on after the command's processes are gone (only a process
/// that escaped them, possible with `isolation: none` and no cgroups, can hold it open).
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// The words after APP, joined with spaces, are the command line that `/bin/sh -c` runs
/// (as `heroku run` and `clone --command` take it): `run web echo $X; exit 7` over ssh needs
/// no extra quoting.
fn command_line(words: &[&str]) -> Option<String> {
    let line = words.join(" ");
    (!line.trim().is_empty() && !line.contains('\0')).then_some(line)
}

pub(super) async fn run(call: Call<'_, '_>) -> u32 {
    let Call {
        daemon,
        caller,
        args,
        stdin,
        out,
        command,
    } = call;
    let Some((name, words)) = args.split_first() else {
        return command.usage(out).await;
    };
    let Some(line) = command_line(words) else {
        return command.usage(out).await;
    };
    // Before the app is looked at: a destroy that removes it after this ends the run.
    let mut destroyed = daemon.one_offs.watch(name);
    // The app first: who may not see it learns nothing else.
    let (app, record) = match command.app(daemon, caller, name, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let Some(supervisor) = daemon.local.as_ref() else {
        return fail(
            out,
            "run is not available with runtime: fleet: the release runs on the cluster's \
             machines, and this host keeps no tree of it to run",
        )
        .await;
    };
    let Some(number) = record.release else {
        return fail(out, NoRelease::NeverDeployed(app)).await;
    };
    let Some(release) = daemon.release(&app, number) else {
        return fail(out, NoRelease::RecordMissing(app, number)).await;
    };
    let local = match daemon.local_app(&app) {
        Ok(local) => local,
        Err(reason) => return fail(out, reason).await,
    };
    let spec = InstanceSpec {
        app: app.to_string(),
        index: 0,
        release: release_name(number),
        command: line,
        cwd: daemon.data.release_tree(app.as_str(), number),
        env: release.env.into_iter().collect(),
        memory: release.memory,
        local,
    };
    if !daemon.isolated() {
        out.err(&format!(
            " !     warning: this run is not sandboxed: {}",
            crate::isolation::NOT_ISOLATED
        ))
        .await;
    }
    let mut one_off = match supervisor.run_one_off(&spec) {
        Ok(one_off) => one_off,
        Err(error) => {
            tracing::warn!(%app, %error, "cannot start a one-off process");
            return fail(out, format!("cannot start the command: {error}")).await;
        }
    };
    tracing::info!(%app, release = %spec.release, pid = ?one_off.pid(), "one-off process started");
    let limit = daemon.settings.run_timeout;
    let stop = async move {
        let _ = destroyed.wait_for(|destroyed| *destroyed).await;
    };
    match follow(&mut one_off, stdin, out, limit, stop).await {
        Ended::Exited(end) => {
            tracing::info!(%app, code = end.code, "one-off process ended");
            if end.out_of_memory {
                let limit = release
                    .memory
                    .map(|bytes| format!(" (limit {})", super::ops::human_bytes(bytes)))
                    .unwrap_or_default();
                out.err(&format!(" !     run: out of memory{limit}; killed"))
                    .await;
            }
            u32::try_from(end.code).unwrap_or(1)
        }
        Ended::TimedOut => {
            one_off.kill().await;
            out.err(&format!(
                " !     run: stopped after {}s (the server's run_timeout_secs)",
                limit.as_secs()
            ))
            .await;
            TIMED_OUT
        }
        Ended::Destroyed => {
            one_off.kill().await;
            out.err(&format!(" !     run: stopped: {app} was destroyed"))
                .await;
            super::call::FAILED
        }
    }
}

/// How [`follow`] ended.
enum Ended {
    /// The process exited.
    Exited(OneOffEnd),
    /// It still ran at the time limit.
    TimedOut,
    /// Its app is being destroyed.
    Destroyed,
}

/// Carries the client's input to the process and its output to the client until it exits,
/// `limit` passes or `stop` completes (then it still runs).
async fn follow(
    one_off: &mut OneOff,
    mut stdin: Box<dyn AsyncRead + Send + Unpin + '_>,
    out: &mut Out<'_>,
    limit: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Ended {
    let Some(io) = one_off.io() else {
        return Ended::Exited(one_off.wait().await);
    };
    let (mut from_process, mut to_process) = io.socket.into_split();
    let mut stderr = io.stderr;
    let (client_out, client_err) = out.streams();
    // Input until the client's end of file, which becomes the process's (a half-close of
    // the socket); then this waits forever, and the other branches decide.
    let input = async {
        let _ = tokio::io::copy(&mut stdin, &mut to_process).await;
        let _ = to_process.shutdown().await;
        std::future::pending::<()>().await;
    };
    let output = async {
        let (_, _) = tokio::join!(
            copy_flushing(&mut from_process, client_out),
            copy_flushing(&mut stderr, client_err)
        );
    };
    let deadline = Instant::now() + limit;
    let exit = one_off.wait();
    tokio::pin!(input, output, exit, stop);
    let mut ended: Option<OneOffEnd> = None;
    let mut drained = false;
    let mut drain_deadline = deadline;
    loop {
        tokio::select! {
            end = &mut exit, if ended.is_none() => {
                ended = Some(end);
                drain_deadline = Instant::now() + DRAIN_WAIT;
                if drained {
                    break;
                }
            }
            () = &mut output, if !drained => {
                drained = true;
                if ended.is_some() {
                    break;
                }
            }
            () = &mut input => {}
            () = sleep_until(drain_deadline), if ended.is_some() => break,
            () = sleep_until(deadline), if ended.is_none() => return Ended::TimedOut,
            () = &mut stop, if ended.is_none() => return Ended::Destroyed,
        }
    }
    match ended {
        Some(end) => Ended::Exited(end),
        None => Ended::TimedOut,
    }
}

/// Copies `from` to `to`, flushing after every read so that output reaches the client as it
/// is written (a prompt without a newline included). Ends at end of file or when the client
/// is gone.
async fn copy_flushing(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (dyn AsyncWrite + Send + Unpin + '_),
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buffer[..n]).await?;
        to.flush().await?;
    }
}

mod watch {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use tokio::sync::watch;

    /// The one-off runs of every app, so that `destroy` can end them: a run must not outlive
    /// its app, whose storage and uid go to the next app of that name.
    #[derive(Default)]
    pub(crate) struct OneOffs {
        /// By app name: set to `true` when the app is destroyed. An entry lives while a run
        /// of the app watches it.
        apps: Mutex<HashMap<String, watch::Sender<bool>>>,
    }

    impl OneOffs {
        /// What a run of `app` watches; call it before the app's record is read.
        pub(crate) fn watch(&self, app: &str) -> watch::Receiver<bool> {
            let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
            apps.retain(|_, sender| sender.receiver_count() > 0);
            apps.entry(app.to_owned())
                .or_insert_with(|| watch::channel(false).0)
                .subscribe()
        }

        /// Ends every run of `app` that watches it now.
        pub(crate) fn end_all(&self, app: &str) {
            let sender = self
                .apps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(app);
            if let Some(sender) = sender {
                sender.send_replace(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_after_the_app_are_one_command_line() {
        assert_eq!(
            command_line(&["echo", "$X;", "exit", "7"]).as_deref(),
            Some("echo $X; exit 7")
        );
        assert_eq!(
            command_line(&["python3 -c 'print(1)'"]).as_deref(),
            Some("python3 -c 'print(1)'")
        );
        assert_eq!(command_line(&[]), None);
        assert_eq!(command_line(&["", " "]), None);
    }

    #[test]
    fn destroy_ends_the_runs_that_watch_and_no_later_one() {
        let runs = OneOffs::default();
        let before = runs.watch("web");
        let other = runs.watch("api");
        runs.end_all("web");
        assert!(*before.borrow());
        assert!(!*other.borrow());
        assert!(
            !*runs.watch("web").borrow(),
            "a run after the destroy starts fresh"
        );
    }
}
