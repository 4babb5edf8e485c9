//! The fake's registry and scheduler: units, machines and unit states, and
//! the rules fleet v1.0.0 applies to them (`api/units.go`, `job/job.go`,
//! `agent/state.go` of coreos/fleet, as FLEET.md sums them up).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::client::{Machine, UnitState};
use crate::unit::{UnitOption, is_template};

/// A machine of the fake cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMachine {
    /// Its id (fleet uses systemd's 32-hex-digit machine-id).
    pub id: String,
    /// Its address.
    pub primary_ip: String,
    /// Its labels, for `MachineMetadata=`.
    pub metadata: BTreeMap<String, String>,
}

impl FakeMachine {
    /// A machine with an id and an address and no metadata.
    pub fn new(id: &str, primary_ip: &str) -> FakeMachine {
        FakeMachine {
            id: id.to_owned(),
            primary_ip: primary_ip.to_owned(),
            metadata: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StoredUnit {
    pub(crate) options: Vec<UnitOption>,
    /// As sent: fleet stores whatever it is given on an update.
    pub(crate) desired: String,
    pub(crate) machine: Option<String>,
}

impl StoredUnit {
    /// A bogus desired state breaks the unit for good (fleet answers 500).
    pub(crate) fn corrupt(&self) -> bool {
        !matches!(self.desired.as_str(), "inactive" | "loaded" | "launched")
    }
}

/// How a unit runs, as a test wants it to appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Override {
    pub(crate) active: String,
    pub(crate) sub: String,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// By name, which is also fleet's listing order.
    pub(crate) units: BTreeMap<String, StoredUnit>,
    pub(crate) machines: Vec<FakeMachine>,
    pub(crate) overrides: BTreeMap<String, Override>,
    /// When the fake runs the units: each running unit's systemd active and
    /// sub state, as its machine reports it.
    pub(crate) runs: Option<BTreeMap<String, (String, String)>>,
}

impl Registry {
    /// Units as the API lists them: corrupt ones are left out, as fleet's
    /// registry skips units it cannot parse.
    pub(crate) fn unit_json(&self, name: &str, unit: &StoredUnit) -> serde_json::Value {
        let mut json = serde_json::json!({
            "name": name,
            "options": unit.options,
            "desiredState": unit.desired,
            "currentState": self.current_state(unit),
        });
        if let Some(machine) = &unit.machine {
            json["machineID"] = serde_json::Value::String(machine.clone());
        }
        json
    }

    fn current_state(&self, unit: &StoredUnit) -> &'static str {
        match (&unit.machine, unit.desired.as_str()) {
            (Some(_), "launched") => "launched",
            (Some(_), "loaded") => "loaded",
            _ => "inactive",
        }
    }

    /// The systemd states that agents would report: one per scheduled,
    /// loaded or launched unit.
    pub(crate) fn states(&self) -> Vec<UnitState> {
        let mut states = Vec::new();
        for (name, unit) in &self.units {
            let Some(machine) = &unit.machine else {
                continue;
            };
            let ran = self.runs.as_ref().map(|runs| runs.get(name).cloned());
            let (active, sub) = match (self.overrides.get(name), unit.desired.as_str(), ran) {
                (Some(o), _, _) => (o.active.clone(), o.sub.clone()),
                (None, "launched" | "loaded", Some(Some(state))) => state,
                (None, "launched", Some(None)) => ("activating".to_owned(), "start".to_owned()),
                (None, "launched", None) => ("active".to_owned(), "running".to_owned()),
                (None, "loaded", _) => ("inactive".to_owned(), "dead".to_owned()),
                _ => continue,
            };
            states.push(UnitState {
                name: name.clone(),
                machine_id: machine.clone(),
                hash: options_hash(&unit.options),
                systemd_load_state: "loaded".to_owned(),
                systemd_active_state: active,
                systemd_sub_state: sub,
            });
        }
        states
    }

    pub(crate) fn machines_json(&self) -> Vec<Machine> {
        let mut machines: Vec<Machine> = self
            .machines
            .iter()
            .map(|m| Machine {
                id: m.id.clone(),
                primary_ip: m.primary_ip.clone(),
                metadata: m.metadata.clone(),
            })
            .collect();
        machines.sort_by(|a, b| a.id.cmp(&b.id));
        machines
    }

    /// Places every unit that wants a machine and can get one, the way
    /// fleet's engine does: on the least loaded machine that is able to run
    /// it (MachineID, MachineMetadata, MachineOf, Conflicts both ways).
    /// Units that must not run anymore lose their machine.
    pub(crate) fn schedule(&mut self) {
        let machine_ids: BTreeSet<String> = self.machines.iter().map(|m| m.id.clone()).collect();
        for unit in self.units.values_mut() {
            let wants = !unit.corrupt() && unit.desired != "inactive";
            if !wants
                || unit
                    .machine
                    .as_ref()
                    .is_some_and(|m| !machine_ids.contains(m))
            {
                unit.machine = None;
            }
        }
        loop {
            let mut placed = false;
            let names: Vec<String> = self.units.keys().cloned().collect();
            for name in names {
                let Some(unit) = self.units.get(&name) else {
                    continue;
                };
                if unit.machine.is_some()
                    || unit.corrupt()
                    || unit.desired == "inactive"
                    || is_template(&name)
                {
                    continue;
                }
                let requirements = Requirements::of(&name, &unit.options);
                let mut best: Option<(usize, &FakeMachine)> = None;
                for machine in &self.machines {
                    if !self.able_to_run(&name, &requirements, machine) {
                        continue;
                    }
                    let load = self
                        .units
                        .values()
                        .filter(|u| u.machine.as_deref() == Some(&machine.id))
                        .count();
                    if best.is_none_or(|(best_load, _)| load < best_load) {
                        best = Some((load, machine));
                    }
                }
                if let Some((_, machine)) = best {
                    let id = machine.id.clone();
                    if let Some(unit) = self.units.get_mut(&name) {
                        unit.machine = Some(id);
                        placed = true;
                    }
                }
            }
            if !placed {
                return;
            }
        }
    }

    fn able_to_run(&self, name: &str, requirements: &Requirements, machine: &FakeMachine) -> bool {
        if let Some(target) = &requirements.machine_id
            && !machine.id.starts_with(target.as_str())
        {
            return false;
        }
        for (key, allowed) in &requirements.metadata {
            if !machine
                .metadata
                .get(key)
                .is_some_and(|value| allowed.contains(value))
            {
                return false;
            }
        }
        let here: Vec<(&String, &StoredUnit)> = self
            .units
            .iter()
            .filter(|(_, u)| u.machine.as_deref() == Some(machine.id.as_str()))
            .collect();
        for peer in &requirements.peers {
            if !here.iter().any(|(other, _)| *other == peer) {
                return false;
            }
        }
        for (other, unit) in here {
            if other == name {
                continue;
            }
            if requirements
                .conflicts
                .iter()
                .any(|glob| glob_match(glob, other))
            {
                return false;
            }
            let theirs = Requirements::of(other, &unit.options);
            if theirs.conflicts.iter().any(|glob| glob_match(glob, name)) {
                return false;
            }
        }
        true
    }
}

/// A unit's `[X-Fleet]` requirements, with `%n %N %p %i` filled in.
#[derive(Debug, Default)]
pub(crate) struct Requirements {
    pub(crate) machine_id: Option<String>,
    pub(crate) metadata: BTreeMap<String, BTreeSet<String>>,
    pub(crate) peers: Vec<String>,
    pub(crate) conflicts: Vec<String>,
    pub(crate) global: bool,
}

impl Requirements {
    pub(crate) fn of(name: &str, options: &[UnitOption]) -> Requirements {
        let mut requirements = Requirements::default();
        for option in options.iter().filter(|o| o.section == "X-Fleet") {
            let value = unit_printf(&option.value, name);
            match option.name.as_str() {
                "MachineID" | "X-ConditionMachineID" | "X-ConditionMachineBootID" => {
                    requirements.machine_id.get_or_insert(value);
                }
                "MachineOf" | "X-ConditionMachineOf" => requirements.peers.push(value),
                "Conflicts" | "X-Conflicts" => requirements
                    .conflicts
                    .extend(value.split_whitespace().map(str::to_owned)),
                "MachineMetadata" | "X-ConditionMachineMetadata" => {
                    if let Some((key, wanted)) = value.split_once('=')
                        && !key.is_empty()
                        && !wanted.is_empty()
                        && !wanted.contains('=')
                    {
                        requirements
                            .metadata
                            .entry(key.to_owned())
                            .or_default()
                            .insert(wanted.to_owned());
                    }
                }
                "Global" => {
                    requirements.global = matches!(
                        value.to_lowercase().as_str(),
                        "true" | "yes" | "1" | "on" | "t"
                    )
                }
                _ => {}
            }
        }
        requirements
    }

    /// fleet's `ValidateOptions`.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for peer in &self.peers {
            for conflict in &self.conflicts {
                if glob_match(conflict, peer) {
                    return Err(format!(
                        "unresolvable requirements: peer {peer:?} matches conflict {conflict:?}"
                    ));
                }
            }
        }
        let (target, peers, conflicts) = (
            self.machine_id.is_some(),
            !self.peers.is_empty(),
            !self.conflicts.is_empty(),
        );
        match () {
            () if target && peers => Err("MachineID cannot be used with Peers".into()),
            () if target && conflicts => Err("MachineID cannot be used with Conflicts".into()),
            () if target && self.global => Err("MachineID cannot be used with Global".into()),
            () if self.global && peers => Err("Global cannot be used with Peers".into()),
            () if self.global && conflicts => Err("Global cannot be used with Conflicts".into()),
            () => Ok(()),
        }
    }
}

/// fleet fills these four specifiers inside `[X-Fleet]`.
fn unit_printf(value: &str, name: &str) -> String {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let (prefix, instance) = match stem.split_once('@') {
        Some((prefix, instance)) => (prefix, instance),
        None => (stem, ""),
    };
    value
        .replace("%n", name)
        .replace("%N", stem)
        .replace("%p", prefix)
        .replace("%i", instance)
}

/// Go's `path.Match`: `*` is any run of characters but `/`, `?` one such
/// character, `[…]` a class (`[^…]` negated, `a-z` ranges), `\` escapes.
/// A malformed pattern matches nothing.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    matches_from(&pattern, &name)
}

fn matches_from(pattern: &[char], name: &[char]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some('*') => {
            let rest = &pattern[1..];
            (0..=name.len())
                .take_while(|&i| i == 0 || name[i - 1] != '/')
                .any(|i| matches_from(rest, &name[i..]))
        }
        Some('?') => {
            name.first().is_some_and(|c| *c != '/') && matches_from(&pattern[1..], &name[1..])
        }
        Some('[') => {
            let Some((&c, rest_name)) = name.split_first() else {
                return false;
            };
            let Some((matched, rest_pattern)) = class(&pattern[1..], c) else {
                return false;
            };
            matched && c != '/' && matches_from(rest_pattern, rest_name)
        }
        Some('\\') => match (pattern.get(1), name.first()) {
            (Some(p), Some(c)) if p == c => matches_from(&pattern[2..], &name[1..]),
            _ => false,
        },
        Some(p) => name.first() == Some(p) && matches_from(&pattern[1..], &name[1..]),
    }
}

/// Whether `c` is in the class that starts at `pattern` (after `[`), and
/// the pattern after the class; `None` if the class never ends.
fn class(pattern: &[char], c: char) -> Option<(bool, &[char])> {
    let (negated, mut rest) = match pattern.first() {
        Some('^') => (true, &pattern[1..]),
        _ => (false, pattern),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        let (&lo, after) = rest.split_first()?;
        if lo == ']' && !first {
            return Some((matched != negated, after));
        }
        first = false;
        let (lo, after) = if lo == '\\' {
            (*after.first()?, &after[1..])
        } else {
            (lo, after)
        };
        if after.first() == Some(&'-') && after.get(1).is_some_and(|c| *c != ']') {
            let hi = after[1];
            matched |= lo <= c && c <= hi;
            rest = &after[2..];
        } else {
            matched |= lo == c;
            rest = after;
        }
    }
}

/// A stand-in for fleet's SHA1 of the unit file: equal for equal options.
fn options_hash(options: &[UnitOption]) -> String {
    let mut hasher = DefaultHasher::new();
    for option in options {
        (&option.section, &option.name, &option.value).hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_as_go_path_match() {
        for (pattern, name, expected) in [
            ("web@v3-*.service", "web@v3-1-20001.service", true),
            ("web@v3-*.service", "web@v3.2-1-20001.service", false),
            ("web@v3-*.service", "web@v30-1-20001.service", false),
            ("web@*.service", "web_discovery@v3-1-2.service", false),
            ("a?c", "abc", true),
            ("a[b-d]c", "acc", true),
            ("a[^b-d]c", "acc", false),
            ("a*", "a/b", false),
            ("a[", "a[", false),
        ] {
            assert_eq!(glob_match(pattern, name), expected, "{pattern} {name}");
        }
    }
}
