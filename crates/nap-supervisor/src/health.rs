//! Deciding whether a freshly started instance is healthy.
//!
//! An instance is healthy as soon as a TCP connection to `127.0.0.1:PORT` succeeds while the
//! process it started with is still running (it has not exited or been restarted since): the
//! port is tried every [`READY_POLL`] from the start, as Heroku takes a web process for up
//! once it binds `$PORT`. One that has not accepted a connection by the end of the grace period
//! is healthy if it is still running and none of its processes listens on any TCP port (a
//! worker that does not serve HTTP; the caller may wait longer for a slow starter). An instance
//! that listens, but on another port, is unhealthy: it would never get traffic from the router.
//!
//! An exit during the grace period is reported at once, without waiting for the rest of it.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until, timeout};

use crate::cgroup::Cgroup;
use crate::group::Group;
use crate::logs::Tail;
use crate::procfs;

/// Why an instance is not healthy, with the last lines it wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Unhealthy {
    /// What went wrong, e.g. `exited with status 1` or
    /// `listening on 5000, not on $PORT (20001)`.
    pub reason: String,
    /// The instance's last lines of output (stdout and stderr, without timestamps), oldest
    /// first.
    pub last_lines: Vec<String>,
}

/// The part of an instance's state that health checks follow; published by the actor through
/// a watch channel whenever a run starts or ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lifecycle {
    /// Counts runs, so that a restart is seen even if it happened between two looks.
    pub(crate) run: u64,
    /// The process group of the current run; `None` while no process runs.
    pub(crate) pgid: Option<i32>,
    /// How the last run ended.
    pub(crate) last_exit: Option<String>,
    /// A stop was requested.
    pub(crate) stopped: bool,
}

/// What a health check needs to know about an instance.
#[derive(Debug)]
pub(crate) struct HealthWatch {
    pub(crate) port: u16,
    /// The instance's first run: a health check is about the process that `start` started, so
    /// any restart since then makes it unhealthy.
    pub(crate) first_run: u64,
    pub(crate) cgroup: Option<Cgroup>,
    pub(crate) lifecycle: watch::Receiver<Lifecycle>,
    pub(crate) tail: Arc<Tail>,
}

/// How long one connection attempt to the app's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the port is tried during the grace period. A refused connection to 127.0.0.1
/// costs a few microseconds and never reaches the app.
const READY_POLL: Duration = Duration::from_millis(10);

/// How long one of those tries may take (a full accept backlog makes connect wait).
const READY_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

/// Runs the health check; on success returns the run that was found healthy.
pub(crate) async fn check(watch: HealthWatch, grace: Duration) -> Result<u64, Unhealthy> {
    let HealthWatch {
        port,
        first_run,
        cgroup,
        mut lifecycle,
        tail,
    } = watch;
    let unhealthy = |reason: String| Unhealthy {
        reason,
        last_lines: tail.lines(),
    };
    let first = lifecycle.borrow_and_update().clone();
    let Some(pgid) = first
        .pgid
        .filter(|_| !first.stopped && first.run == first_run)
    else {
        return Err(unhealthy(not_running(&first)));
    };

    let deadline = Instant::now() + grace;
    let mut poll = interval(READY_POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = sleep_until(deadline) => break,
            changed = lifecycle.changed() => {
                let now = lifecycle.borrow_and_update().clone();
                if changed.is_err() || now.run != first.run || now.pgid.is_none() || now.stopped {
                    return Err(unhealthy(not_running(&now)));
                }
            }
            _ = poll.tick() => {
                let ready = timeout(
                    READY_CONNECT_TIMEOUT,
                    TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
                )
                .await;
                if matches!(ready, Ok(Ok(_))) {
                    // Accepting; still the process that was started?
                    let now = lifecycle.borrow_and_update().clone();
                    if now.run != first.run || now.pgid.is_none() || now.stopped {
                        return Err(unhealthy(not_running(&now)));
                    }
                    return Ok(first.run);
                }
            }
        }
    }

    let connected = timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
    )
    .await;
    let verdict = match connected {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(error)) => listeners_verdict(pgid, cgroup, port, error.to_string()).await,
        Err(_elapsed) => {
            listeners_verdict(pgid, cgroup, port, "connection timed out".to_owned()).await
        }
    };
    verdict.map_err(&unhealthy)?;

    // It may have died while its sockets were being looked at.
    let now = lifecycle.borrow().clone();
    if now.run != first.run || now.pgid.is_none() || now.stopped {
        return Err(unhealthy(not_running(&now)));
    }
    Ok(first.run)
}

/// Nothing answered on `port`: healthy if the instance listens nowhere, otherwise why not.
async fn listeners_verdict(
    pgid: i32,
    cgroup: Option<Cgroup>,
    port: u16,
    connect_error: String,
) -> Result<(), String> {
    let group = Group {
        pgid: Some(pgid),
        cgroup,
    };
    let listening =
        tokio::task::spawn_blocking(move || procfs::listening_ports(&group.live_pids()))
            .await
            .unwrap_or_default();
    if listening.is_empty() {
        Ok(())
    } else if listening.contains(&port)
        && tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    {
        // It began to listen between the first connect and the look at its
        // sockets (a busy machine starting many instances): healthy.
        Ok(())
    } else if listening.contains(&port) {
        Err(format!(
            "listening on {port}, but connecting to 127.0.0.1:{port} failed: {connect_error}"
        ))
    } else {
        let ports: Vec<String> = listening.iter().map(u16::to_string).collect();
        Err(format!(
            "listening on {}, not on $PORT ({port})",
            ports.join(", ")
        ))
    }
}

fn not_running(lifecycle: &Lifecycle) -> String {
    if lifecycle.stopped {
        "stopped".to_owned()
    } else {
        lifecycle
            .last_exit
            .clone()
            .unwrap_or_else(|| "not running".to_owned())
    }
}
