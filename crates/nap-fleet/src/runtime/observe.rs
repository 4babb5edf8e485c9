//! Watching instances: health after a start, and the list `ps` shows.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use nap_runtime::health::{CONNECT_TIMEOUT, PROBE_INTERVAL, accepts};
use nap_runtime::{HealthPolicy, Healthy, Instance, InstanceId, InstanceState, Unhealthy};
use tokio::time::Instant;

use super::{FleetRuntime, guard};
use crate::client::{FleetClient, FleetError, Machine, StateFilter, Unit, UnitState};
use crate::etcd::EtcdClient;
use crate::unit::{DesiredState, InstanceName, option_values};

impl FleetRuntime {
    /// The rule of [`nap_runtime::health`] as far as a cluster lets nap see: the unit is
    /// active for the grace period (and registered in etcd when etcd is configured), then its
    /// port on its machine is tried until the boot deadline; one that never accepts but is
    /// still active then counts as a worker (nap cannot see where it listens instead).
    pub(super) async fn check_health(
        &self,
        id: &InstanceId,
        policy: HealthPolicy,
    ) -> Result<Healthy, Unhealthy> {
        let address = self.wait_active(id, policy.grace).await?;
        let deadline = Instant::now() + policy.boot_deadline().saturating_sub(policy.grace);
        let listening = loop {
            if accepts(address, CONNECT_TIMEOUT).await {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        };
        if !listening {
            // Still the unit that was started, and still active?
            self.wait_active(id, Duration::ZERO).await?;
        }
        // The router should know of it before the deployer retires the old instances.
        self.discovery.refresh().await;
        Ok(Healthy { listening })
    }

    /// Waits until the unit is active for `grace` (and registered in etcd when etcd is
    /// configured); returns its machine's address and its port.
    async fn wait_active(&self, id: &InstanceId, grace: Duration) -> Result<SocketAddr, Unhealthy> {
        let unhealthy = Unhealthy::new;
        let Some(name) = InstanceName::parse_unit(&id.key) else {
            return Err(unhealthy(format!(
                "{} is not a unit of nap's fleet runtime",
                id.key
            )));
        };
        let unit = name.unit();
        // Time to become active (fetch included), then to stay so for `grace`.
        let limit = self.options.activation_timeout + grace;
        let deadline = Instant::now() + limit;
        let mut active_since: Option<Instant> = None;
        let mut machine_id = String::new();
        let mut last = "fleet has not placed it yet".to_owned();
        loop {
            let filter = StateFilter {
                unit_name: Some(unit.clone()),
                machine_id: None,
            };
            match self.fleet.states(&filter).await {
                Err(e) => last = format!("fleet cannot be asked: {e}"),
                Ok(states) => match states.into_iter().next() {
                    None => {
                        active_since = None;
                        match self.fleet.unit(&unit).await {
                            Ok(None) => {
                                return Err(unhealthy(format!("{unit} is gone from fleet")));
                            }
                            Ok(Some(Unit {
                                machine_id: None, ..
                            })) => last = "fleet has not placed it".to_owned(),
                            Ok(Some(_)) => last = "its machine has not reported it yet".to_owned(),
                            Err(e) => last = format!("fleet cannot be asked: {e}"),
                        }
                    }
                    Some(state) => match (
                        state.systemd_active_state.as_str(),
                        state.systemd_sub_state.as_str(),
                    ) {
                        ("failed", _) | ("activating", "auto-restart") => {
                            return Err(unhealthy(self.failed_reason(&unit, &state).await));
                        }
                        ("active", _) => {
                            active_since.get_or_insert_with(Instant::now);
                            machine_id = state.machine_id.clone();
                        }
                        (active, sub) => {
                            active_since = None;
                            last = format!("systemd says {active}/{sub}");
                        }
                    },
                },
            }
            if let Some(since) = active_since
                && since.elapsed() >= grace
            {
                let registered = match &self.etcd {
                    None => true,
                    Some(etcd) => match etcd.get(&name.etcd_key()).await {
                        Ok(Some(_)) => true,
                        Ok(None) => {
                            last = format!(
                                "it is active, but {} has not registered {} in etcd; see `journalctl -u {}` on its machine",
                                name.discovery_unit(),
                                name.etcd_key(),
                                name.discovery_unit()
                            );
                            false
                        }
                        Err(e) => {
                            last = format!("it is active, but etcd cannot be asked: {e}");
                            false
                        }
                    },
                };
                if registered {
                    return self.machine_address(&unit, &machine_id, name.port).await;
                }
            }
            if Instant::now() >= deadline {
                return Err(unhealthy(format!(
                    "{unit} not healthy within {} s: {last}",
                    limit.as_secs()
                )));
            }
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }

    /// Where an active unit serves: its machine's address and its port.
    async fn machine_address(
        &self,
        unit: &str,
        machine_id: &str,
        port: u16,
    ) -> Result<SocketAddr, Unhealthy> {
        let machines = self
            .fleet
            .machines()
            .await
            .map_err(|e| Unhealthy::new(format!("fleet cannot be asked: {e}")))?;
        machines
            .iter()
            .find(|m| m.id == machine_id)
            .and_then(|m| m.primary_ip.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, port))
            .ok_or_else(|| {
                Unhealthy::new(format!(
                    "{unit} is on machine {machine_id}, which fleet gives no address for"
                ))
            })
    }

    async fn failed_reason(&self, unit: &str, state: &UnitState) -> String {
        let machines = self.fleet.machines().await.unwrap_or_default();
        format!(
            "{unit} failed on machine {} (systemd says {}/{}); see `journalctl -u {unit}` on that machine",
            machine_label(&state.machine_id, &machines),
            state.systemd_active_state,
            state.systemd_sub_state,
        )
    }

    pub(super) async fn list_instances(&self) -> Result<Vec<Instance>, FleetError> {
        let known = guard(&self.known).clone();
        instances(&self.fleet, self.etcd.as_deref(), &known).await
    }
}

/// Every instance unit of nap that fleet knows, with its address from etcd when etcd has one,
/// else its machine's. `known` says when this nap started (or adopted) a unit.
pub(super) async fn instances(
    fleet: &FleetClient,
    etcd: Option<&EtcdClient>,
    known: &HashMap<String, SystemTime>,
) -> Result<Vec<Instance>, FleetError> {
    let units = fleet.units().await?;
    let states = fleet.states(&StateFilter::default()).await?;
    let machines = fleet.machines().await?;
    let registered: HashMap<String, SocketAddr> = match etcd {
        None => HashMap::new(),
        Some(etcd) => match etcd.range_prefix("/nap/apps/").await {
            Ok(kvs) => kvs
                .into_iter()
                .filter_map(|kv| Some((kv.key, kv.value.parse().ok()?)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read instance addresses from etcd; using fleet's");
                HashMap::new()
            }
        },
    };
    let mut instances = Vec::new();
    for unit in &units {
        let Some(name) = InstanceName::parse_unit(&unit.name) else {
            continue;
        };
        let state = states.iter().find(|s| s.name == unit.name);
        let machine = unit
            .machine_id
            .as_ref()
            .and_then(|id| machines.iter().find(|m| &m.id == id));
        let address = registered
            .get(&name.etcd_key())
            .copied()
            .unwrap_or_else(|| {
                let ip = machine
                    .and_then(|m| m.primary_ip.parse().ok())
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                SocketAddr::new(ip, name.port)
            });
        let memory_limit = option_values(&unit.options, "Service", "MemoryMax")
            .last()
            .and_then(|value| value.parse::<u64>().ok());
        instances.push(Instance {
            id: InstanceId {
                app: name.app.clone(),
                index: name.index,
                release: name.release.clone(),
                key: unit.name.clone(),
            },
            state: instance_state(unit, state),
            address,
            pid: None,
            location: match &unit.machine_id {
                Some(id) => machine_label(id, &machines),
                None => "unscheduled".to_owned(),
            },
            started_at: known
                .get(&unit.name)
                .copied()
                .unwrap_or_else(SystemTime::now),
            restarts: 0,
            memory_used: None,
            memory_limit,
            limit_enforced: memory_limit.is_some(),
        });
    }
    Ok(instances)
}

/// `1a2b3c4d (10.0.0.2)`: the short id fleetctl shows, and the address.
pub(super) fn machine_label(id: &str, machines: &[Machine]) -> String {
    let short: String = id.chars().take(8).collect();
    match machines.iter().find(|m| m.id == id) {
        Some(machine) if !machine.primary_ip.is_empty() => {
            format!("{short} ({})", machine.primary_ip)
        }
        _ => short,
    }
}

fn instance_state(unit: &Unit, state: Option<&UnitState>) -> InstanceState {
    if unit.desired_state != Some(DesiredState::Launched) {
        return InstanceState::Stopped;
    }
    let Some(state) = state else {
        return InstanceState::Starting;
    };
    match (
        state.systemd_active_state.as_str(),
        state.systemd_sub_state.as_str(),
    ) {
        ("active", _) => InstanceState::Up,
        ("activating", "auto-restart") => InstanceState::Backoff,
        ("failed", _) => InstanceState::Crashed,
        ("inactive" | "deactivating", _) => InstanceState::Stopped,
        _ => InstanceState::Starting,
    }
}
