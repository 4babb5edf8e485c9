//! Starting and stopping an app's instances, for every operation: new instances must be
//! healthy before anything counts on them, and an instance leaves the router's rotation
//! (drained) before it is stopped.

use std::net::SocketAddr;
use std::sync::Arc;

use nap_core::AppName;
use nap_runtime::{HealthPolicy, Instance, InstanceId, InstanceSpec};
use nap_store::ReleaseRecord;
use tokio::task::JoinSet;
use tracing::warn;

use crate::deploy::{Failed, fail, release_name};
use crate::{Daemon, Out};

/// Why one new instance did not come up: its index, the reason and its last lines.
type StartFailure = (u32, String, Vec<String>);

impl Daemon {
    /// Starts `scale` instances of `release` and waits until each is healthy; returns
    /// where they serve. On failure every new instance is stopped again and their last
    /// log lines are printed.
    pub(crate) async fn start_release(
        self: &Arc<Self>,
        app: &AppName,
        release: &ReleaseRecord,
        scale: u32,
        out: &mut Out<'_>,
    ) -> Result<Vec<SocketAddr>, Failed> {
        let memory = release.memory.map(nap_profile::format_memory);
        out.err(&format!(
            "-----> Starting {scale} instance{} of {app} (v{}){}",
            if scale == 1 { "" } else { "s" },
            release.number,
            memory.map(|m| format!(", {m} each")).unwrap_or_default()
        ))
        .await;
        let indexes: Vec<u32> = (1..=scale).collect();
        self.start_instances(app, release, &indexes, out).await
    }

    /// Starts instances `indexes` of `release` and waits for their health; returns where
    /// they serve. When the daemon shuts down meanwhile, the instances are stopped and
    /// this fails.
    pub(crate) async fn start_instances(
        self: &Arc<Self>,
        app: &AppName,
        release: &ReleaseRecord,
        indexes: &[u32],
        out: &mut Out<'_>,
    ) -> Result<Vec<SocketAddr>, Failed> {
        let local = match self.local_app(app) {
            Ok(local) => local,
            Err(message) => return fail(out, message).await,
        };
        let mut checks = JoinSet::new();
        for &index in indexes {
            let spec = InstanceSpec {
                app: app.to_string(),
                index,
                release: release_name(release.number),
                command: release.command.clone(),
                cwd: self.data.release_tree(app.as_str(), release.number),
                env: release
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                memory: release.memory,
                local: local.clone(),
            };
            let runtime = self.runtime.clone();
            let cancel = self.operations.cancel();
            let policy = HealthPolicy {
                grace: self.settings.health_grace,
                boot_timeout: self.settings.boot_timeout,
            };
            checks.spawn(async move {
                if cancel.is_cancelled() {
                    return Err((index, shutting_down(), Vec::new()));
                }
                let started = runtime
                    .start(spec)
                    .await
                    .map_err(|e| (index, e.to_string(), Vec::new()))?;
                let health = tokio::select! {
                    health = runtime.wait_healthy(&started.id, policy) => health,
                    () = cancel.cancelled() => {
                        let _ = runtime.stop(&started.id).await;
                        return Err((index, shutting_down(), Vec::new()));
                    }
                };
                match health {
                    Ok(health) => Ok((started, health.listening)),
                    Err(unhealthy) => {
                        let _ = runtime.stop(&started.id).await;
                        Err((index, unhealthy.reason, unhealthy.last_lines))
                    }
                }
            });
        }
        let mut up: Vec<(InstanceId, SocketAddr)> = Vec::new();
        let mut failures: Vec<StartFailure> = Vec::new();
        while let Some(joined) = checks.join_next().await {
            match joined {
                Ok(Ok((started, listening))) => {
                    let what = if listening {
                        ""
                    } else {
                        " (not listening on it: a worker?)"
                    };
                    out.err(&format!(
                        "       {app}@{} up on port {}{what}",
                        started.id.index,
                        started.address.port()
                    ))
                    .await;
                    up.push((started.id, started.address));
                }
                Ok(Err(failure)) => failures.push(failure),
                Err(e) => failures.push((0, format!("internal error: {e}"), Vec::new())),
            }
        }
        if failures.is_empty() {
            // Whoever stops an old instance next counts on the new ones taking its
            // requests: they must be in the router's routes first.
            let addrs: Vec<SocketAddr> = up.into_iter().map(|(_, addr)| addr).collect();
            self.routing.until_routed(app, &addrs).await;
            return Ok(addrs);
        }
        // Those that came up may already have taken requests.
        let ids: Vec<InstanceId> = up.into_iter().map(|(id, _)| id).collect();
        self.stop_instances(app, |i| ids.contains(&i.id)).await;
        failures.sort_by_key(|f| f.0);
        for (index, reason, lines) in failures {
            out.err(&format!(" !     {app}@{index} failed: {reason}"))
                .await;
            if !lines.is_empty() {
                out.err(&format!(" !     last lines of {app}@{index}:"))
                    .await;
                for line in lines {
                    out.err(&format!("       {line}")).await;
                }
            }
        }
        Err(Failed)
    }

    /// Stops the app's instances that `which` selects, each once the router has no
    /// request in flight to it; returns how many.
    pub(crate) async fn stop_instances(
        &self,
        app: &AppName,
        which: impl Fn(&Instance) -> bool,
    ) -> usize {
        let doomed: Vec<_> = self
            .runtime
            .list()
            .await
            .into_iter()
            .filter(|i| i.id.app == app.as_str() && which(i))
            .collect();
        let drained = self
            .routing
            .drain(app, doomed.iter().map(|i| i.address).collect())
            .await;
        let mut stops = JoinSet::new();
        for instance in &doomed {
            let runtime = self.runtime.clone();
            let id = instance.id.clone();
            stops.spawn(async move {
                if let Err(e) = runtime.stop(&id).await {
                    warn!(app = %id.app, index = id.index, release = %id.release, error = %e, "stop failed");
                }
            });
        }
        while stops.join_next().await.is_some() {}
        drop(drained);
        doomed.len()
    }
}

fn shutting_down() -> String {
    "the daemon is shutting down".to_owned()
}
