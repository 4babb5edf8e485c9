//! Watching instances: health after a start, and the list `ps` shows.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use nap_runtime::{Instance, InstanceId, InstanceState, Unhealthy};
use tokio::time::Instant;

use super::{FleetRuntime, guard};
use crate::client::{FleetError, Machine, StateFilter, Unit, UnitState};
use crate::unit::{DesiredState, InstanceName, option_values};

impl FleetRuntime {
    pub(super) async fn check_health(
        &self,
        id: &InstanceId,
        grace: Duration,
    ) -> Result<(), Unhealthy> {
        let unhealthy = |reason: String| Unhealthy {
            reason,
            last_lines: Vec::new(),
        };
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
                match &self.etcd {
                    None => return Ok(()),
                    Some(etcd) => match etcd.get(&name.etcd_key()).await {
                        Ok(Some(_)) => return Ok(()),
                        Ok(None) => {
                            last = format!(
                                "it is active, but {} has not registered {} in etcd; see `journalctl -u {}` on its machine",
                                name.discovery_unit(),
                                name.etcd_key(),
                                name.discovery_unit()
                            );
                        }
                        Err(e) => last = format!("it is active, but etcd cannot be asked: {e}"),
                    },
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
        let units = self.fleet.units().await?;
        let states = self.fleet.states(&StateFilter::default()).await?;
        let machines = self.fleet.machines().await?;
        let registered: HashMap<String, SocketAddr> = match &self.etcd {
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
        let known = guard(&self.known).clone();
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
