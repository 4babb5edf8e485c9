//! [`Local`]: the embedded supervisor as nap's [`Runtime`], the `local` backend.
//!
//! The runtime's [`nap_runtime::InstanceId`] carries the supervisor's own id: the key is the
//! serial, so an id from the daemon maps back to the supervisor's without a lookup.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use nap_runtime::{
    BoxFuture, HealthPolicy, Healthy, Instance, LogLines, LogRequest, LogsError, Runtime,
    StartError, Started, StopError, Unhealthy, UpAddresses,
};
use tokio::sync::{mpsc, watch};

use crate::{InstanceId, InstanceSpec, Supervisor, log_reader};

/// How many log lines may wait between the reader and the client.
const LOG_LINES_IN_FLIGHT: usize = 256;

/// The embedded supervisor as a [`Runtime`].
#[derive(Debug, Clone)]
pub struct Local {
    supervisor: Supervisor,
}

impl Local {
    /// Wraps a started supervisor.
    pub fn new(supervisor: Supervisor) -> Local {
        Local { supervisor }
    }

    /// The supervisor behind it.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }
}

/// The supervisor's id for the runtime's, if the key is one of ours.
fn theirs(id: &nap_runtime::InstanceId) -> Option<InstanceId> {
    Some(InstanceId {
        app: id.app.clone(),
        index: id.index,
        release: id.release.clone(),
        serial: id.key.parse().ok()?,
    })
}

fn ours(id: &InstanceId) -> nap_runtime::InstanceId {
    nap_runtime::InstanceId {
        app: id.app.clone(),
        index: id.index,
        release: id.release.clone(),
        key: id.serial.to_string(),
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

impl Runtime for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, StartError>> {
        Box::pin(async move {
            let started = self.supervisor.start(spec).await?;
            Ok(Started {
                id: ours(&started.id),
                address: loopback(started.port),
            })
        })
    }

    fn wait_healthy<'a>(
        &'a self,
        id: &'a nap_runtime::InstanceId,
        policy: HealthPolicy,
    ) -> BoxFuture<'a, Result<Healthy, Unhealthy>> {
        Box::pin(async move {
            let Some(theirs) = theirs(id) else {
                return Err(Unhealthy::new("it is gone"));
            };
            self.supervisor.wait_healthy(&theirs, policy).await
        })
    }

    fn stop<'a>(&'a self, id: &'a nap_runtime::InstanceId) -> BoxFuture<'a, Result<(), StopError>> {
        Box::pin(async move {
            if let Some(theirs) = theirs(id) {
                // The only way a stop fails is an instance that is not there: stopped already.
                let _already_gone = self.supervisor.stop(&theirs).await;
            }
            Ok(())
        })
    }

    fn list(&self) -> BoxFuture<'_, Vec<Instance>> {
        Box::pin(async move {
            self.supervisor
                .list()
                .await
                .into_iter()
                .map(|i| Instance {
                    id: ours(&i.id),
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

    fn logs(&self, request: LogRequest) -> BoxFuture<'_, Result<LogLines, LogsError>> {
        Box::pin(async move {
            let app = &request.app;
            if app.is_empty() || app.starts_with('.') || app.contains(['/', '\0']) {
                return Err(LogsError::InvalidApp { app: app.clone() });
            }
            let dir = self.supervisor.logs_dir().join(app);
            let (to, lines) = mpsc::channel(LOG_LINES_IN_FLIGHT);
            // Its own task, so that following lasts exactly as long as somebody reads.
            tokio::spawn(log_reader::send(dir, request, to));
            Ok(lines)
        })
    }

    fn up_addresses(&self) -> watch::Receiver<Arc<UpAddresses>> {
        self.supervisor.up_addresses()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.supervisor.shutdown())
    }
}
