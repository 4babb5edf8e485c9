//! [`FleetRuntime`]: nap's [`Runtime`] on a fleet cluster.
//!
//! An instance is a unit `APP@SET-I-PORT.service` expanded from the app's
//! template `APP@.service`, with a discovery sidekick
//! `APP_discovery@SET-I-PORT.service` beside it when etcd is configured.
//! The unit name carries the release, instance number and port, so fleet's
//! registry is the only record: `list` reads it back, and a restarted nap
//! adopts the units the previous one left running.

mod addresses;
mod config;
mod error;
mod observe;

use observe::machine_label;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use nap_runtime::{
    BoxFuture, HealthPolicy, Healthy, Instance, InstanceId, InstanceSpec, LogLines, LogRequest,
    LogsError, Runtime, StartError, Started, StopError, Unhealthy, UpAddresses,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument as _;

pub use config::{FleetConfig, FleetOptions, FleetSetupError, ReleaseTarballs, tarball_url};
pub use error::{FleetStartError, FleetStopError};

use crate::client::{FleetClient, StateFilter, Unit};
use crate::etcd::EtcdClient;
use crate::render::{RenderInput, Tarball, render};
use crate::unit::{DesiredState, InstanceName};

/// nap's instances as fleet units. See the crate documentation for names,
/// ports and the tarball contract.
pub struct FleetRuntime {
    fleet: FleetClient,
    etcd: Option<Arc<EtcdClient>>,
    /// Where the instances that are up serve, for the router.
    discovery: Arc<addresses::Discovery>,
    config: FleetConfig,
    options: FleetOptions,
    /// One per app: a start lists, picks a set and a port, and submits
    /// under it, so that concurrent starts of one app agree.
    app_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    ports: Mutex<PortBook>,
    /// Units this process started or adopted, and when.
    known: Mutex<HashMap<String, SystemTime>>,
    /// The last list that could be read, for when fleet cannot be.
    last_list: Mutex<Vec<Instance>>,
}

#[derive(Debug)]
struct PortBook {
    /// Handed out by this process and not stopped yet.
    reserved: HashSet<u16>,
    next: u16,
}

fn guard<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent at every await-free step.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FleetRuntime {
    /// A runtime for `config`; nothing is contacted yet.
    pub fn new(
        config: FleetConfig,
        options: FleetOptions,
    ) -> Result<FleetRuntime, FleetSetupError> {
        let fleet = FleetClient::new(&config.fleet_endpoint)?.with_retry(options.retry);
        let etcd = if config.etcd_endpoints.is_empty() {
            None
        } else {
            Some(Arc::new(EtcdClient::new(&config.etcd_endpoints)?))
        };
        if options.ports.is_empty() || options.ports.start == 0 {
            return Err(FleetSetupError::Invalid(format!(
                "the port range {:?} is empty",
                options.ports
            )));
        }
        if !config.nap_url.starts_with("http://") && !config.nap_url.starts_with("https://") {
            return Err(FleetSetupError::Invalid(format!(
                "nap URL {:?} must start with http(s)://",
                config.nap_url
            )));
        }
        if options.etcd_refresh >= options.etcd_ttl {
            return Err(FleetSetupError::Invalid(
                "etcd_refresh must be shorter than etcd_ttl".into(),
            ));
        }
        // A trial rendering finds bad settings (user, paths, endpoints) and
        // broken templates now rather than at the first deploy.
        let trial = RenderInput {
            app: "settings-check".to_owned(),
            release: "v1".to_owned(),
            generation: 1,
            command: "true".to_owned(),
            env: Vec::new(),
            memory: None,
            tarball: Tarball {
                url: tarball_url(&config.nap_url, "settings-check", "v1"),
                token: "t".to_owned(),
            },
            user: options.run_as.clone(),
            work_dir: options.work_dir.clone(),
            node_env_file: options.node_env_file.clone(),
            etcd_endpoints: options
                .node_etcd_endpoints
                .clone()
                .unwrap_or_else(|| config.etcd_endpoints.clone()),
            etcd_api: "/v3".to_owned(),
            etcd_ttl_secs: options.etcd_ttl.as_secs(),
            etcd_refresh_secs: options.etcd_refresh.as_secs(),
        };
        render(&options.templates, &trial).map_err(|e| FleetSetupError::Invalid(e.reason))?;
        let next = options.ports.start;
        let discovery = Arc::new(addresses::Discovery::new(
            fleet.clone(),
            etcd.clone(),
            options.discovery_interval,
        ));
        Ok(FleetRuntime {
            fleet,
            etcd,
            discovery,
            config,
            options,
            app_locks: Mutex::new(HashMap::new()),
            ports: Mutex::new(PortBook {
                reserved: HashSet::new(),
                next,
            }),
            known: Mutex::new(HashMap::new()),
            last_list: Mutex::new(Vec::new()),
        })
    }

    /// The fleet client it uses.
    pub fn fleet(&self) -> &FleetClient {
        &self.fleet
    }

    /// The etcd client it uses, if etcd is configured.
    pub fn etcd(&self) -> Option<&EtcdClient> {
        self.etcd.as_deref()
    }

    fn app_lock(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        guard(&self.app_locks)
            .entry(app.to_owned())
            .or_default()
            .clone()
    }

    async fn start_instance(&self, spec: InstanceSpec) -> Result<Started, StartError> {
        if !crate::unit::valid_app(&spec.app) {
            return Err(StartError::InvalidSpec {
                reason: format!("app name {:?} cannot name a fleet unit", spec.app),
            });
        }
        if !crate::unit::valid_release(&spec.release) {
            return Err(StartError::InvalidSpec {
                reason: format!(
                    "release {:?} cannot name a fleet unit (letters and digits only)",
                    spec.release
                ),
            });
        }
        Ok(self.start_valid(spec).await?)
    }

    async fn start_valid(&self, spec: InstanceSpec) -> Result<Started, FleetStartError> {
        let lock = self.app_lock(&spec.app);
        let held = lock.lock().await;
        let units = self.fleet.units().await?;
        let ours: Vec<(InstanceName, &Unit)> = units
            .iter()
            .filter_map(|u| InstanceName::parse_unit(&u.name).map(|n| (n, u)))
            .collect();
        if let Some(adopted) = self.adoptable(&spec, &ours) {
            drop(held);
            tracing::info!(unit = %adopted, "adopted a unit left running by an earlier nap");
            return self.placed(adopted).await;
        }
        let same_release = || {
            ours.iter()
                .filter(|(n, _)| n.app == spec.app && n.release == spec.release)
        };
        let newest = same_release().map(|(n, _)| n.generation).max().unwrap_or(1);
        // A second instance I of the newest set means a rolling restart: it
        // starts the next set, whose members conflict only with each other.
        let generation =
            if same_release().any(|(n, _)| n.generation == newest && n.index == spec.index) {
                newest + 1
            } else {
                newest
            };
        // The set's members conflict with each other (one per machine): a
        // member beyond the machine count would wait for fleet's schedule
        // timeout to say what is known now.
        let wanted = same_release()
            .filter(|(n, _)| n.generation == generation)
            .count()
            + 1;
        let machines = self.fleet.machines().await?.len();
        if wanted > machines {
            return Err(FleetStartError::NoRoom {
                app: spec.app.clone(),
                index: spec.index,
                release: spec.release.clone(),
                set: InstanceName {
                    app: spec.app.clone(),
                    release: spec.release.clone(),
                    generation,
                    index: spec.index,
                    port: 0,
                }
                .set(),
                wanted,
                machines,
            });
        }
        let taken: HashSet<u16> = ours.iter().map(|(n, _)| n.port).collect();
        let port = self.reserve_port(&taken)?;
        let name = InstanceName {
            app: spec.app.clone(),
            release: spec.release.clone(),
            generation,
            index: spec.index,
            port,
        };
        let submitted = self.submit(&spec, &name).await;
        drop(held);
        if let Err(e) = submitted {
            self.forget(&name).await;
            return Err(e);
        }
        guard(&self.known).insert(name.unit(), SystemTime::now());
        match self.placed(name.clone()).await {
            Ok(started) => Ok(started),
            Err(e) => {
                self.forget(&name).await;
                Err(e)
            }
        }
    }

    /// A launched unit of this app, release and instance that no start of
    /// this process made: one that a previous nap left running.
    fn adoptable(
        &self,
        spec: &InstanceSpec,
        ours: &[(InstanceName, &Unit)],
    ) -> Option<InstanceName> {
        let mut known = guard(&self.known);
        let found = ours
            .iter()
            .filter(|(n, u)| {
                n.app == spec.app
                    && n.release == spec.release
                    && n.index == spec.index
                    && u.desired_state == Some(DesiredState::Launched)
                    && !known.contains_key(&u.name)
            })
            .max_by_key(|(n, _)| n.generation)
            .map(|(n, _)| n.clone())?;
        known.insert(found.unit(), SystemTime::now());
        Some(found)
    }

    /// Renders the templates, stores them, and launches the instance and
    /// its sidekick by client-side expansion.
    async fn submit(
        &self,
        spec: &InstanceSpec,
        name: &InstanceName,
    ) -> Result<(), FleetStartError> {
        let token = self
            .config
            .tarballs
            .token(&spec.app, &spec.release)
            .map_err(|source| FleetStartError::Token {
                app: spec.app.clone(),
                release: spec.release.clone(),
                source,
            })?;
        let url = self
            .config
            .tarballs
            .url(&self.config.nap_url, &spec.app, &spec.release);
        let (etcd_endpoints, etcd_api) = match &self.etcd {
            Some(etcd) => (
                self.options
                    .node_etcd_endpoints
                    .clone()
                    .unwrap_or_else(|| self.config.etcd_endpoints.clone()),
                etcd.api_prefix().await?,
            ),
            None => (Vec::new(), "/v3".to_owned()),
        };
        let input = RenderInput {
            app: spec.app.clone(),
            release: spec.release.clone(),
            generation: name.generation,
            command: spec.command.clone(),
            env: spec.env.clone(),
            memory: spec.memory,
            tarball: Tarball { url, token },
            user: self.options.run_as.clone(),
            work_dir: self.options.work_dir.clone(),
            node_env_file: self.options.node_env_file.clone(),
            etcd_endpoints,
            etcd_api,
            etcd_ttl_secs: self.options.etcd_ttl.as_secs(),
            etcd_refresh_secs: self.options.etcd_refresh.as_secs(),
        };
        let rendered = render(&self.options.templates, &input)?;
        self.fleet
            .submit_template(&rendered.instance.name, &rendered.instance.options)
            .await?;
        self.fleet
            .launch_instance(&name.unit(), DesiredState::Launched)
            .await?;
        if let Some(discovery) = rendered.discovery {
            self.fleet
                .submit_template(&discovery.name, &discovery.options)
                .await?;
            self.fleet
                .launch_instance(&name.discovery_unit(), DesiredState::Launched)
                .await?;
        }
        tracing::info!(unit = %name, "submitted to fleet");
        Ok(())
    }

    /// Waits until fleet has placed the unit; its address is the machine's
    /// and the unit's port.
    async fn placed(&self, name: InstanceName) -> Result<Started, FleetStartError> {
        let deadline = Instant::now() + self.options.schedule_timeout;
        let unit = name.unit();
        let machine_id = loop {
            match self.fleet.unit(&unit).await {
                Ok(Some(Unit {
                    machine_id: Some(machine),
                    ..
                })) => break machine,
                Ok(Some(_)) => {}
                Ok(None) => return Err(FleetStartError::Vanished { unit }),
                Err(e) => tracing::warn!(%unit, error = %e, "cannot read the unit from fleet"),
            }
            if Instant::now() >= deadline {
                return Err(self.unplaced_reason(&name).await);
            }
            tokio::time::sleep(self.options.poll_interval).await;
        };
        let machines = self.fleet.machines().await?;
        let Some(ip) = machines
            .iter()
            .find(|m| m.id == machine_id)
            .and_then(|m| m.primary_ip.parse::<IpAddr>().ok())
        else {
            return Err(FleetStartError::NoMachineAddress {
                unit,
                machine: machine_id,
            });
        };
        Ok(Started {
            id: InstanceId {
                app: name.app.clone(),
                index: name.index,
                release: name.release.clone(),
                key: unit,
            },
            address: SocketAddr::new(ip, name.port),
        })
    }

    async fn unplaced_reason(&self, name: &InstanceName) -> FleetStartError {
        let machines = self.fleet.machines().await.map(|m| m.len()).unwrap_or(0);
        FleetStartError::Unplaced {
            unit: name.unit(),
            seconds: self.options.schedule_timeout.as_secs(),
            machines,
            app: name.app.clone(),
            set: name.set(),
        }
    }

    fn reserve_port(&self, taken: &HashSet<u16>) -> Result<u16, FleetStartError> {
        let range = &self.options.ports;
        let mut book = guard(&self.ports);
        let (start, len) = (
            u32::from(range.start),
            u32::from(range.end) - u32::from(range.start),
        );
        let first = u32::from(book.next).saturating_sub(start) % len.max(1);
        for offset in 0..len {
            let port = u16::try_from(start + (first + offset) % len)
                .expect("a port of a u16 range fits in u16");
            if taken.contains(&port) || book.reserved.contains(&port) {
                continue;
            }
            book.reserved.insert(port);
            // Round-robin, so that a freed port is not reused at once.
            book.next = if port + 1 >= range.end {
                range.start
            } else {
                port + 1
            };
            return Ok(port);
        }
        Err(FleetStartError::PortsTaken {
            range: range.clone(),
        })
    }

    /// Takes a failed start back: both units, its key and its port.
    async fn forget(&self, name: &InstanceName) {
        for unit in [name.discovery_unit(), name.unit()] {
            if let Err(e) = self.fleet.destroy_unit(&unit).await {
                tracing::warn!(%unit, error = %e, "cannot remove the unit of a failed start");
            }
        }
        guard(&self.ports).reserved.remove(&name.port);
        guard(&self.known).remove(&name.unit());
    }

    /// Removes the app's templates once no instance of it is left in fleet
    /// (the app is destroyed or scaled to nothing): fleet keeps what it is
    /// not told to drop. Under the app's lock, so that no start submits
    /// between the look and the removal; a later start submits them again.
    async fn remove_templates_if_unused(&self, app: &str) {
        let lock = self.app_lock(app);
        let _held = lock.lock().await;
        let units = match self.fleet.units().await {
            Ok(units) => units,
            Err(e) => {
                tracing::warn!(app, error = %e, "cannot list fleet units; the app's templates stay");
                return;
            }
        };
        let in_use = units
            .iter()
            .filter_map(|u| InstanceName::parse_unit(&u.name))
            .any(|n| n.app == app);
        if in_use {
            return;
        }
        for template in [
            crate::unit::instance_template(app),
            crate::unit::discovery_template(app),
        ] {
            if units.iter().any(|u| u.name == template)
                && let Err(e) = self.fleet.destroy_unit(&template).await
            {
                tracing::warn!(%template, error = %e, "cannot remove an unused template");
            }
        }
    }

    async fn stop_instance(&self, id: &InstanceId) -> Result<(), FleetStopError> {
        let Some(name) = InstanceName::parse_unit(&id.key) else {
            return Err(FleetStopError::NotOurs {
                key: id.key.clone(),
            });
        };
        // The sidekick first: the router stops sending traffic before the
        // instance goes.
        for unit in [name.discovery_unit(), name.unit()] {
            self.fleet.destroy_unit(&unit).await?;
        }
        if let Some(etcd) = &self.etcd
            && let Err(e) = etcd.delete(&name.etcd_key()).await
        {
            tracing::warn!(unit = %name, error = %e, "cannot remove the discovery key; its lease will expire");
        }
        guard(&self.ports).reserved.remove(&name.port);
        guard(&self.known).remove(&name.unit());
        self.remove_templates_if_unused(&name.app).await;
        // Out of the router's view before the wait for the machine.
        self.discovery.refresh().await;
        let deadline = Instant::now() + self.options.stop_timeout;
        let filter = StateFilter {
            unit_name: Some(name.unit()),
            machine_id: None,
        };
        loop {
            match self.fleet.states(&filter).await {
                Ok(states) if states.is_empty() => return Ok(()),
                Ok(states) if Instant::now() >= deadline => {
                    let machines = self.fleet.machines().await.unwrap_or_default();
                    let on = states
                        .first()
                        .map(|s| machine_label(&s.machine_id, &machines))
                        .unwrap_or_default();
                    return Err(FleetStopError::StillReported {
                        unit: name.unit(),
                        machine: on,
                        seconds: self.options.stop_timeout.as_secs(),
                    });
                }
                Err(e) if Instant::now() >= deadline => return Err(e.into()),
                _ => tokio::time::sleep(self.options.poll_interval).await,
            }
        }
    }
}

impl Runtime for FleetRuntime {
    fn name(&self) -> &'static str {
        "fleet"
    }

    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, StartError>> {
        let span = tracing::info_span!("instance", app = %spec.app, index = spec.index, release = %spec.release);
        Box::pin(self.start_instance(spec).instrument(span))
    }

    fn wait_healthy<'a>(
        &'a self,
        id: &'a InstanceId,
        policy: HealthPolicy,
    ) -> BoxFuture<'a, Result<Healthy, Unhealthy>> {
        let span =
            tracing::info_span!("instance", app = %id.app, index = id.index, release = %id.release);
        Box::pin(self.check_health(id, policy).instrument(span))
    }

    fn stop<'a>(&'a self, id: &'a InstanceId) -> BoxFuture<'a, Result<(), StopError>> {
        let span =
            tracing::info_span!("instance", app = %id.app, index = id.index, release = %id.release);
        Box::pin(async move { Ok(self.stop_instance(id).instrument(span).await?) })
    }

    fn list(&self) -> BoxFuture<'_, Vec<Instance>> {
        Box::pin(async move {
            match self.list_instances().await {
                Ok(instances) => {
                    *guard(&self.last_list) = instances.clone();
                    instances
                }
                Err(e) => {
                    // Saying "nothing runs" would make the caller start
                    // duplicates; the last known list is the better lie.
                    tracing::warn!(error = %e, "cannot list fleet units; answering with the last list");
                    guard(&self.last_list).clone()
                }
            }
        })
    }

    fn logs(&self, request: LogRequest) -> BoxFuture<'_, Result<LogLines, LogsError>> {
        let app = request.app;
        // The machines' journals keep the output; nap does not collect it.
        Box::pin(async move {
            Err(LogsError::Elsewhere {
                hint: format!(
                    "{app}'s instances run on the cluster's machines; their output is in each machine's journal: \
                     journalctl -u '{app}@*' there ('ps {app}' shows the machines)"
                ),
            })
        })
    }

    fn up_addresses(&self) -> watch::Receiver<Arc<UpAddresses>> {
        self.discovery.receiver()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // The cluster keeps serving while nap restarts; the next nap
            // adopts these units when it starts the same instances.
            tracing::info!("fleet units keep running; a restarted nap adopts them");
        })
    }
}

#[cfg(test)]
mod tests {
    use super::tarball_url;

    #[test]
    fn tarball_urls() {
        assert_eq!(
            tarball_url("http://10.0.0.1:8080/", "web", "v3"),
            "http://10.0.0.1:8080/api/apps/web/releases/v3/tarball"
        );
    }
}
