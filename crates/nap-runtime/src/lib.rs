//! The one interface between nap's deployer and whatever runs instances.
//!
//! **Architecture Invariant:** the deployer and the commands see only
//! [`Runtime`]; they never know whether the embedded supervisor (`local`, the
//! default) or a cluster backend runs the instances.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

pub use nap_supervisor::{InstanceSpec, InstanceState, Unhealthy};

/// A boxed future, as runtimes return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One started instance, as the runtime names it. Two releases of the same
/// `APP@I` may run side by side during a deploy; they have different ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId {
    /// The app.
    pub app: String,
    /// The instance number.
    pub index: u32,
    /// The release, e.g. `v3`.
    pub release: String,
    /// What tells this start apart from others (a serial, a unit name).
    pub key: String,
}

/// What [`Runtime::start`] returns.
#[derive(Debug, Clone)]
pub struct Started {
    /// The new instance.
    pub id: InstanceId,
    /// Where it serves.
    pub address: SocketAddr,
}

/// One instance, as `ps` shows it.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Its id.
    pub id: InstanceId,
    /// Where it is in its life.
    pub state: InstanceState,
    /// Where it serves.
    pub address: SocketAddr,
    /// Its process id, where it runs on this machine.
    pub pid: Option<u32>,
    /// Its process id (local) or machine (cluster), for people.
    pub location: String,
    /// When its current (or last) process started.
    pub started_at: SystemTime,
    /// Restarts so far.
    pub restarts: u32,
    /// Memory in use, if known.
    pub memory_used: Option<u64>,
    /// The limit it was given.
    pub memory_limit: Option<u64>,
    /// Whether the limit is enforced.
    pub limit_enforced: bool,
}

/// What the deployer asks of a runtime backend.
pub trait Runtime: Send + Sync + 'static {
    /// The backend's name for messages: `local`, `fleet`.
    fn name(&self) -> &'static str;
    /// Starts one instance.
    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, String>>;
    /// Waits until the instance is healthy (at once when it accepts on its port, else after
    /// `grace`), or says why not.
    fn wait_healthy<'a>(
        &'a self,
        id: &'a InstanceId,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), Unhealthy>>;
    /// Stops one instance and waits until it is gone.
    fn stop<'a>(&'a self, id: &'a InstanceId) -> BoxFuture<'a, Result<(), String>>;
    /// Every instance the runtime runs for nap.
    fn list(&self) -> BoxFuture<'_, Vec<Instance>>;
    /// Stops everything (the daemon is exiting).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// The embedded supervisor as a [`Runtime`]. It keeps the supervisor's own
/// ids beside ours, to stop what it started.
pub struct Local {
    supervisor: nap_supervisor::Supervisor,
}

impl Local {
    /// Wraps a started supervisor.
    pub fn new(supervisor: nap_supervisor::Supervisor) -> Local {
        Local { supervisor }
    }

    async fn find(&self, id: &InstanceId) -> Option<nap_supervisor::InstanceId> {
        self.supervisor
            .list()
            .await
            .into_iter()
            .find(|i| key_of(&i.id) == id.key)
            .map(|i| i.id)
    }
}

fn key_of(id: &nap_supervisor::InstanceId) -> String {
    id.serial().to_string()
}

fn our_id(id: &nap_supervisor::InstanceId) -> InstanceId {
    InstanceId {
        app: id.app().to_owned(),
        index: id.index(),
        release: id.release().to_owned(),
        key: key_of(id),
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Runtime for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, String>> {
        Box::pin(async move {
            let started = self
                .supervisor
                .start(spec)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Started {
                id: our_id(&started.id),
                address: loopback(started.port),
            })
        })
    }

    fn wait_healthy<'a>(
        &'a self,
        id: &'a InstanceId,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), Unhealthy>> {
        Box::pin(async move {
            let Some(theirs) = self.find(id).await else {
                return Err(Unhealthy {
                    reason: "it is gone".into(),
                    last_lines: Vec::new(),
                });
            };
            self.supervisor.wait_healthy(&theirs, grace).await
        })
    }

    fn stop<'a>(&'a self, id: &'a InstanceId) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match self.find(id).await {
                Some(theirs) => self
                    .supervisor
                    .stop(&theirs)
                    .await
                    .map_err(|e| e.to_string()),
                None => Ok(()),
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Vec<Instance>> {
        Box::pin(async move {
            self.supervisor
                .list()
                .await
                .into_iter()
                .map(|i| Instance {
                    id: our_id(&i.id),
                    state: i.state,
                    address: loopback(i.port),
                    pid: i.pid,
                    location: i
                        .pid
                        .map_or_else(|| "-".to_owned(), |pid| format!("pid {pid}")),
                    started_at: i.started_at,
                    restarts: i.restarts,
                    memory_used: i.memory_used,
                    memory_limit: i.memory_limit,
                    limit_enforced: i.limit_enforced,
                })
                .collect()
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.supervisor.shutdown())
    }
}
