//! The public handle, and the errors of its operations.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::actor::{Actor, Request, Snapshot};
use crate::cgroup::{Cgroups, MemoryLimits};
use crate::group::Group;
use crate::health;
use crate::one_off::OneOff;
use crate::{Config, InstanceId, InstanceSpec, InstanceStatus, Started, logs, orphans, procfs};
use nap_runtime::{HealthPolicy, Healthy, StartError, Unhealthy, UpAddresses};

/// Why [`Supervisor::new`] failed.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The port range has no ports.
    #[error("the port range {start}..{end} is empty")]
    NoPorts {
        /// First port.
        start: u16,
        /// One past the last port.
        end: u16,
    },
    /// The logs or state directory cannot be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Why [`Supervisor::start`] could not make the instance's process (the part of
/// [`nap_runtime::StartError::Backend`] that is the supervisor's own).
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The instance's log file cannot be opened.
    #[error("cannot open log {}: {source}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `/bin/sh` could not be started.
    #[error("cannot start {app}@{index}: {source}")]
    Spawn {
        /// The app.
        app: String,
        /// The instance number.
        index: u32,
        /// The cause.
        source: io::Error,
    },
    /// The app's storage directory cannot be made or given to the app.
    #[error("cannot prepare the storage of {app} ({}): {source}", path.display())]
    Storage {
        /// The app.
        app: String,
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The sandbox cannot be made for this instance.
    #[error("cannot sandbox {app}@{index}: {source}")]
    Sandbox {
        /// The app.
        app: String,
        /// The instance number.
        index: u32,
        /// Why.
        source: nap_sandbox::LaunchError,
    },
    /// nap runs as root, and the spec gives the app no uid of its own: it would run as root.
    #[error("nap runs as root, so {app} needs a uid of its own, and none was given")]
    NoAppUid {
        /// The app.
        app: String,
    },
}

impl From<SpawnError> for StartError {
    fn from(error: SpawnError) -> StartError {
        StartError::Backend(Box::new(error))
    }
}

/// Why [`Supervisor::stop`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The instance is not running: it never was, or it was stopped already.
    #[error("no such instance: {id}")]
    UnknownInstance {
        /// The instance.
        id: InstanceId,
    },
}

/// The handle to the supervisor. Cheap to clone; all clones talk to the same instances.
///
/// When the last handle is dropped, every instance is stopped in the background. Call
/// [`Supervisor::shutdown`] to wait for that.
#[derive(Debug, Clone)]
pub struct Supervisor {
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    logs_dir: PathBuf,
    state_dir: PathBuf,
    isolation: crate::Isolation,
    /// The serial of the next one-off process.
    next_one_off: std::sync::atomic::AtomicU64,
    memory_limits: MemoryLimits,
    up_addresses: watch::Receiver<Arc<UpAddresses>>,
}

impl Supervisor {
    /// Starts the supervisor (inside a tokio runtime).
    ///
    /// It makes the process a child subreaper, so that the zombies an instance's processes
    /// leave when their parent exits first (bwrap's init, every time) are the supervisor's
    /// to reap at once, not init's.
    ///
    /// First it stops the instances that a previous daemon with the same `state_dir` left
    /// running (their pid records are still there): each gets SIGTERM, SIGKILL after
    /// `stop_grace`, and its cgroup and record are removed. They are not adopted: their output
    /// pipes died with the old daemon. Then it finds out whether memory cgroups work here
    /// ([`Supervisor::memory_limits`] says what it found).
    pub async fn new(config: Config) -> Result<Supervisor, NewError> {
        if config.ports.is_empty() {
            return Err(NewError::NoPorts {
                start: config.ports.start,
                end: config.ports.end,
            });
        }
        for dir in [&config.logs_dir, &config.state_dir] {
            fs::create_dir_all(dir).map_err(|source| NewError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        }
        crate::group::adopt_orphans();
        let highest_serial = orphans::stop_orphans(&config.state_dir, config.stop_grace).await;
        let (cgroups, memory_limits) = Cgroups::detect(config.cgroups).await;
        match &memory_limits {
            MemoryLimits::Enforced { version, parent } => {
                tracing::info!(?version, parent = %parent.display(), "memory limits enforced with cgroups");
            }
            MemoryLimits::NotEnforced { reason } => {
                tracing::info!(%reason, "memory limits not enforced");
            }
        }
        let (publish, up_addresses) = watch::channel(Arc::new(UpAddresses::new()));
        let shared = Arc::new(Shared {
            logs_dir: config.logs_dir.clone(),
            state_dir: config.state_dir.clone(),
            isolation: config.isolation.clone(),
            next_one_off: std::sync::atomic::AtomicU64::new(1),
            memory_limits,
            up_addresses,
        });
        let requests = Actor::spawn(config, cgroups, highest_serial + 1, publish);
        Ok(Supervisor { requests, shared })
    }

    /// Starts an instance: a free port, its process, its log. Nothing of it is left running
    /// when it fails. Returns as soon as the process runs; use [`Supervisor::wait_healthy`] to find out whether it works.
    ///
    /// The instance keeps its port across restarts until it is stopped.
    pub async fn start(&self, spec: InstanceSpec) -> Result<Started, StartError> {
        self.ask(|reply| Request::Start { spec, reply })
            .await
            .unwrap_or(Err(StartError::ShuttingDown))
    }

    /// Says whether the instance is healthy by `policy` (the rule of [`nap_runtime::health`]):
    /// the process that [`Supervisor::start`] started is still running (it has not exited or
    /// been restarted), and it accepts a TCP connection on 127.0.0.1:PORT (tried from the
    /// start, so this returns as soon as it does), or it listens on no TCP port at all at the
    /// end of the grace period and still at the boot deadline (a worker). Returns early,
    /// unhealthy, when the process exits or listens on another port at the end of the grace.
    ///
    /// A healthy instance is shown as [`crate::InstanceState::Up`] from then on.
    pub async fn wait_healthy(
        &self,
        id: &InstanceId,
        policy: impl Into<HealthPolicy>,
    ) -> Result<Healthy, Unhealthy> {
        let watch = self
            .ask(|reply| Request::Watch {
                id: id.clone(),
                reply,
            })
            .await
            .flatten()
            .ok_or_else(|| Unhealthy::new(format!("no such instance: {id}")))?;
        let verdict = health::check(watch, policy.into()).await?;
        let _ = self
            .requests
            .send(Request::Healthy {
                id: id.clone(),
                run: verdict.run,
            })
            .await;
        Ok(Healthy {
            listening: verdict.listening,
        })
    }

    /// Stops an instance: SIGTERM to its process group (and cgroup), SIGKILL after
    /// `stop_grace`. Returns when its processes are gone; its port is free again, its cgroup
    /// and pid record removed.
    pub async fn stop(&self, id: &InstanceId) -> Result<(), StopError> {
        self.ask(|reply| Request::Stop {
            id: id.clone(),
            reply,
        })
        .await
        .unwrap_or(Err(StopError::UnknownInstance { id: id.clone() }))
    }

    /// Every instance (including those being stopped), ordered by app, index, release and
    /// serial.
    pub async fn list(&self) -> Vec<InstanceStatus> {
        let snapshots = self
            .ask(|reply| Request::List { reply })
            .await
            .unwrap_or_default();
        // Reading /proc can take a moment with many processes; keep it off the runtime.
        tokio::task::spawn_blocking(move || snapshots.into_iter().map(with_memory).collect())
            .await
            .unwrap_or_default()
    }

    /// Stops every instance and refuses new ones; returns when all are gone. Called when the
    /// daemon exits.
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Request::Shutdown { reply }).await;
    }

    /// `logs_dir/APP/APP@I.log`, the log of instance `I` of `APP` (shared by all releases of
    /// that instance; the previous file is `APP@I.log.1`).
    pub fn log_path(&self, app: &str, index: u32) -> PathBuf {
        logs::log_path(&self.shared.logs_dir, app, index)
    }

    /// The directory of every app's instance logs (`logs_dir/APP/`).
    pub(crate) fn logs_dir(&self) -> &std::path::Path {
        &self.shared.logs_dir
    }

    /// Where the instances that are up serve (127.0.0.1:PORT), by app; a new snapshot is
    /// published whenever an instance becomes up or stops being up (a health check passed, it
    /// was up for `stable_after`, it exited, a stop began).
    pub fn up_addresses(&self) -> watch::Receiver<Arc<UpAddresses>> {
        self.shared.up_addresses.clone()
    }

    /// Whether memory limits are enforced, and how.
    pub fn memory_limits(&self) -> &MemoryLimits {
        &self.shared.memory_limits
    }

    /// Starts a one-off process (`run APP CMD...`): `spec`'s command in the app's sandbox,
    /// with its storage, uid and config vars, in a memory cgroup of its own limited to
    /// `spec.memory` (when cgroups work here), without `PORT` or `NAP_INSTANCE`, and known
    /// to nothing else of the supervisor: no log file, no restart, no route. Dropping the
    /// [`OneOff`] kills every process of it. The index of `spec` is ignored.
    pub fn run_one_off(&self, spec: &InstanceSpec) -> Result<OneOff, SpawnError> {
        let serial = self
            .shared
            .next_one_off
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OneOff::spawn(
            spec,
            serial,
            &self.shared.memory_limits,
            &self.shared.isolation,
            &self.shared.state_dir,
        )
    }

    /// Sends a request and waits for its answer; `None` if the actor is gone.
    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(request(reply)).await.ok()?;
        answer.await.ok()
    }
}

fn with_memory(snapshot: Snapshot) -> InstanceStatus {
    let Snapshot {
        mut status,
        pgid,
        cgroup,
    } = snapshot;
    status.memory_used = match (pgid, &cgroup) {
        (None, _) => None,
        (Some(_), Some(cgroup)) => cgroup.memory_used(),
        (Some(pgid), None) => procfs::total_rss_bytes(
            &Group {
                pgid: Some(pgid),
                cgroup: None,
            }
            .live_pids(),
        ),
    };
    status
}
