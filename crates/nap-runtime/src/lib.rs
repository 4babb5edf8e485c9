//! The one interface between nap's deployer and whatever runs instances.
//!
//! The daemon starts, checks, stops, lists and reads the logs of instances only through
//! [`Runtime`], and learns where instances serve from [`Runtime::up_addresses`]. Two backends
//! implement it: the embedded supervisor (`nap-supervisor`, the `local` default) and the fleet
//! cluster backend (`nap-fleet`).
//!
//! What lives here is plain data and one small TCP probe, so that both backends and the daemon
//! agree on it:
//!
//! - [`InstanceSpec`], [`InstanceId`], [`Started`], [`Instance`], [`InstanceState`]: what an
//!   instance is; [`LocalApp`], what keeps an app apart from the others on nap's own machine.
//! - [`HealthPolicy`], [`Healthy`], [`Unhealthy`]: the one rule that says when a new instance
//!   is healthy (see [`health`](mod@health)); the deployer does not probe anything itself.
//! - [`LogRequest`], [`LogLine`], [`LogsError`]: instance output, from wherever it is kept.
//! - [`UpAddresses`]: every app's instances that are up, pushed to the router.
//! - [`StartError`], [`StopError`]: why an operation failed, one enum per operation.
//!
//! **Architecture Invariant:** this crate depends on no backend. The deployer and the
//! commands see only [`Runtime`]; they never know whether the embedded supervisor or a cluster
//! runs the instances.

pub mod health;
mod instance;
mod logs;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;

pub use health::{HealthPolicy, Healthy, Unhealthy};
pub use instance::{AppIds, Instance, InstanceId, InstanceSpec, InstanceState, LocalApp, Started};
pub use logs::{LogLine, LogLines, LogRequest, LogsError};

/// A boxed future, as runtimes return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend's own error, for what only that backend can go wrong with (a fleet API that
/// answers 500, a log file that cannot be opened). Its text is shown to the user as it is.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where the instances that are up serve, by app name; an app with nothing up has no entry.
/// Within an app the addresses are in the order of the instances' ids (index, release, start).
pub type UpAddresses = BTreeMap<String, Vec<SocketAddr>>;

/// Why [`Runtime::start`] failed. Nothing of the instance is left running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The spec cannot be run as given (a name that cannot name a file or a unit, an empty
    /// command, a working directory that is not there).
    #[error("invalid instance: {reason}")]
    InvalidSpec {
        /// What is wrong.
        reason: String,
    },
    /// Every port of the range is taken.
    #[error("no free port in {start}..{end}")]
    NoFreePort {
        /// First port of the range.
        start: u16,
        /// One past the last port.
        end: u16,
    },
    /// The runtime is stopping and takes no new instances.
    #[error("the runtime is shutting down; it starts no new instances")]
    ShuttingDown,
    /// The backend failed; its error says how.
    #[error(transparent)]
    Backend(BackendError),
}

/// Why [`Runtime::stop`] failed. Stopping an instance that is already gone is not a failure.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The backend failed; its error says how. The instance may still run.
    #[error(transparent)]
    Backend(BackendError),
}

/// What the deployer asks of a runtime backend.
///
/// Every method may be called from many tasks at once. Dropping a returned future cancels
/// only the waiting: an instance that `start` has started keeps running (and stays in
/// [`Runtime::list`]) until somebody stops it.
pub trait Runtime: Send + Sync + 'static {
    /// The backend's name for messages and logs: `local`, `fleet`.
    fn name(&self) -> &'static str;

    /// Starts one instance. Returns once the backend runs (or has placed) it; whether it works
    /// is [`Runtime::wait_healthy`]'s question.
    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, StartError>>;

    /// Waits until the instance is healthy by `policy` (see [`health`](mod@health)) and says
    /// whether it listens on its port, or says why it is not healthy.
    fn wait_healthy<'a>(
        &'a self,
        id: &'a InstanceId,
        policy: HealthPolicy,
    ) -> BoxFuture<'a, Result<Healthy, Unhealthy>>;

    /// Stops one instance and waits until it is gone. An unknown instance is already gone.
    fn stop<'a>(&'a self, id: &'a InstanceId) -> BoxFuture<'a, Result<(), StopError>>;

    /// Every instance the runtime runs for nap (in no particular order).
    fn list(&self) -> BoxFuture<'_, Vec<Instance>>;

    /// The instances' output: the last lines of every instance of the app (or of one), merged
    /// in time order, then, when asked to follow, what they write from now on. The lines come
    /// through the returned channel; following ends when the receiver is dropped.
    fn logs(&self, request: LogRequest) -> BoxFuture<'_, Result<LogLines, LogsError>>;

    /// Where every app's instances that are up serve, kept current by the runtime: a new
    /// snapshot is published whenever an instance becomes up or stops being up. Cheap to call;
    /// every receiver sees the same snapshots.
    fn up_addresses(&self) -> watch::Receiver<Arc<UpAddresses>>;

    /// Stops everything this runtime must not leave behind (the daemon is exiting).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}
