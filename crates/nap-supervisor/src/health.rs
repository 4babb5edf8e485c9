//! Deciding whether a freshly started instance is healthy, by the rule of
//! [`nap_runtime::health`].
//!
//! The port is tried at once, then again after 1, 2, 3 … ms and every 10 ms from then on
//! ([`probe_delay`]), while the process it started
//! with is still running (it has not exited or been restarted since): a connection that
//! succeeds makes it healthy at once. At the end of the grace period an instance that listens
//! on other TCP ports but not on its own is unhealthy: it would never get traffic from the
//! router. One that listens nowhere yet is tried until the boot timeout; still running then and
//! listening nowhere, it is a worker, and healthy.
//!
//! An exit at any time before the verdict is reported at once, without waiting for the rest.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nap_runtime::health::{CONNECT_TIMEOUT, accepts, connect_error, probe_delay};
use nap_runtime::{HealthPolicy, Unhealthy};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::cgroup::Cgroup;
use crate::group::Group;
use crate::logs::Tail;
use crate::procfs;

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

/// How long one of the tries during boot may take (a full accept backlog makes connect wait).
const READY_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

/// What the check found: the run that was found healthy, and whether it listens on its port.
pub(crate) struct Verdict {
    pub(crate) run: u64,
    pub(crate) listening: bool,
}

/// Runs the health check by `policy`.
pub(crate) async fn check(watch: HealthWatch, policy: HealthPolicy) -> Result<Verdict, Unhealthy> {
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
    let same_run = |now: &Lifecycle| now.run == first.run && now.pgid.is_some() && !now.stopped;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let started = Instant::now();
    let grace_over = started + policy.grace;
    let boot_over = started + policy.boot_deadline();
    // Set once the instance was found listening nowhere at the end of the grace: it is looked
    // at again at the boot deadline.
    let mut booting = false;
    // The next try of the port, counted from the end of the one before.
    let mut attempt = 0;
    let mut next_try = started;
    let listening = loop {
        let deadline = if booting { boot_over } else { grace_over };
        tokio::select! {
            () = sleep_until(deadline) => {
                let last_look = booting || grace_over >= boot_over;
                match listeners(pgid, cgroup.clone(), port).await {
                    // Listening nowhere: a worker at the boot deadline, a slow starter before.
                    Listeners::Nowhere if last_look => break false,
                    Listeners::Nowhere => booting = true,
                    // It began to listen between the last try and the look at its sockets (a
                    // busy machine starting many instances).
                    Listeners::OnItsPort => match connect_error(address, CONNECT_TIMEOUT).await {
                        None => break true,
                        Some(error) => {
                            return Err(unhealthy(format!(
                                "listening on {port}, but connecting to 127.0.0.1:{port} failed: {error}"
                            )));
                        }
                    },
                    Listeners::Elsewhere(ports) => {
                        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                        return Err(unhealthy(format!(
                            "listening on {}, not on $PORT ({port})",
                            ports.join(", ")
                        )));
                    }
                }
            }
            changed = lifecycle.changed() => {
                let now = lifecycle.borrow_and_update().clone();
                if changed.is_err() || !same_run(&now) {
                    return Err(unhealthy(not_running(&now)));
                }
            }
            () = sleep_until(next_try) => {
                if accepts(address, READY_CONNECT_TIMEOUT).await {
                    break true;
                }
                attempt += 1;
                next_try = Instant::now() + probe_delay(attempt);
            }
        }
    };
    // It may have died while it was tried or its sockets were looked at.
    let now = lifecycle.borrow().clone();
    if !same_run(&now) {
        return Err(unhealthy(not_running(&now)));
    }
    Ok(Verdict {
        run: first.run,
        listening,
    })
}

/// Where an instance's processes listen.
enum Listeners {
    Nowhere,
    OnItsPort,
    Elsewhere(Vec<u16>),
}

/// Nothing answered on `port`: where the instance's processes listen instead, if anywhere.
async fn listeners(pgid: i32, cgroup: Option<Cgroup>, port: u16) -> Listeners {
    let group = Group {
        pgid: Some(pgid),
        cgroup,
    };
    let listening =
        tokio::task::spawn_blocking(move || procfs::listening_ports(&group.live_pids()))
            .await
            .unwrap_or_default();
    if listening.is_empty() {
        Listeners::Nowhere
    } else if listening.contains(&port) {
        Listeners::OnItsPort
    } else {
        Listeners::Elsewhere(listening.into_iter().collect())
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
