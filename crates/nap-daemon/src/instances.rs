//! Starting and stopping an app's instances, for every operation: new instances must be
//! healthy before anything counts on them, and an instance leaves the router's rotation
//! (drained) before it is stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nap_core::AppName;
use nap_runtime::{HealthPolicy, Instance, InstanceId, InstanceSpec, LogRequest};
use nap_store::ReleaseRecord;
use tokio::task::JoinSet;
use tracing::warn;

use crate::deploy::{Failed, fail, release_name};
use crate::healthcheck;
use crate::{Daemon, Out};

/// How many of an instance's last lines a failed health check prints.
const LAST_LINES: usize = 20;

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
            let daemon = self.clone();
            let cancel = self.operations.cancel();
            let policy = HealthPolicy {
                grace: self.settings.health_grace,
                boot_timeout: self.settings.boot_timeout,
            };
            let healthcheck = release.healthcheck.clone().map(|path| {
                let timeout = release
                    .healthcheck_timeout
                    .map_or(healthcheck::DEFAULT_TIMEOUT, |secs| {
                        Duration::from_secs(secs.into())
                    });
                (path, timeout)
            });
            checks.spawn(async move {
                let runtime = &daemon.runtime;
                if cancel.is_cancelled() {
                    return Err((index, shutting_down(), Vec::new()));
                }
                let started = runtime
                    .start(spec)
                    .await
                    .map_err(|e| (index, e.to_string(), Vec::new()))?;
                // Out of the routes until its health path answers, from before it is up.
                let held = healthcheck
                    .is_some()
                    .then(|| daemon.routing.hold(started.address));
                let checked = async {
                    let health = runtime
                        .wait_healthy(&started.id, policy)
                        .await
                        .map_err(|unhealthy| (unhealthy.reason, unhealthy.last_lines))?;
                    if let Some((path, timeout)) = &healthcheck {
                        let host = format!("{}.{}", started.id.app, daemon.settings.domain);
                        healthcheck::check(started.address, &host, path, *timeout)
                            .await
                            .map_err(|failed| (failed.to_string(), Vec::new()))?;
                    }
                    Ok(health)
                };
                let health = tokio::select! {
                    health = checked => health,
                    () = cancel.cancelled() => {
                        let _ = runtime.stop(&started.id).await;
                        return Err((index, shutting_down(), Vec::new()));
                    }
                };
                drop(held);
                match health {
                    Ok(health) => Ok((started, health.listening)),
                    Err((reason, mut last_lines)) => {
                        if last_lines.is_empty() {
                            last_lines = daemon.last_lines(&started.id).await;
                        }
                        let _ = runtime.stop(&started.id).await;
                        Err((index, reason, last_lines))
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

    /// The last lines an instance wrote, as `logs APP --instance I` shows them (an instance
    /// whose logs the runtime keeps elsewhere gives none).
    async fn last_lines(&self, id: &InstanceId) -> Vec<String> {
        let request = LogRequest {
            app: id.app.clone(),
            lines: LAST_LINES,
            instance: Some(id.index),
            follow: false,
        };
        let mut lines = Vec::new();
        if let Ok(mut received) = self.runtime.logs(request).await {
            while let Some(line) = received.recv().await {
                lines.push(line.text);
            }
        }
        lines
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
