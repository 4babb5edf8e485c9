//! `ps`, `scale`, `restart`, `destroy`: what runs, and how much of it.

use std::sync::Arc;
use std::time::SystemTime;

use nap_core::{Action, AppName, Caller};
use nap_runtime::Instance;
use nap_store::AppRecord;
use serde::Serialize;

use super::{app_for, fail, lock_for_change, usage};
use crate::deploy::release_name;
use crate::{Daemon, Out};

/// One line of `ps --json`.
#[derive(Serialize)]
struct PsRow {
    instance: String,
    release: String,
    state: String,
    port: u16,
    pid: Option<u32>,
    location: String,
    uptime_secs: u64,
    restarts: u32,
    memory_used: Option<u64>,
    memory_limit: Option<u64>,
    limit_enforced: bool,
}

impl Daemon {
    /// Stops everything of `app` and deletes it; the name is free afterwards.
    /// Returns how many instances were stopped.
    pub(crate) async fn remove_app(&self, app: &AppName) -> usize {
        let stopped = self.stop_instances(app, |_| true).await;
        // The record goes first: from then on the name is free, whatever remains.
        let record = self.data.app_record(app.as_str());
        if let Err(e) = std::fs::remove_file(&record)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %record.display(), error = %e, "cannot remove");
        }
        for dir in [
            self.data.app(app.as_str()),
            self.data.repo(app.as_str()),
            self.data.app_logs(app.as_str()),
        ] {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %dir.display(), error = %e, "cannot remove");
            }
        }
        stopped
    }

    /// `APP-N` for a new similar app of `app`: N is one more than the number
    /// of similar apps `app` has, skipping names that are taken.
    pub(crate) fn next_similar_name(&self, app: &AppName) -> Result<AppName, String> {
        let everyone = Caller {
            user: String::new(),
            admin: true,
        };
        let apps = self.apps.visible(&everyone).map_err(|e| e.to_string())?;
        let similar = apps
            .iter()
            .filter(|(_, r)| r.similar_to.as_deref() == Some(app.as_str()))
            .count();
        (similar + 1..)
            .take(1000)
            .map(|n| AppName::parse(&format!("{app}-{n}")))
            .find(|name| {
                name.as_ref()
                    .is_ok_and(|name| !apps.iter().any(|(taken, _)| taken == name))
            })
            .unwrap_or_else(|| AppName::parse(""))
            .map_err(|_| {
                format!("no free name {app}-N of 63 characters or fewer; give the new app a name")
            })
    }

    /// The app's instances, numbered order.
    pub(crate) async fn instances(&self, app: &AppName) -> Vec<Instance> {
        let mut instances: Vec<_> = self
            .runtime
            .list()
            .await
            .into_iter()
            .filter(|i| i.id.app == app.as_str())
            .collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        instances
    }

    /// How many instances the app should have now.
    pub(crate) fn desired(&self, app: &AppName, record: &AppRecord) -> u32 {
        match record.release {
            None => 0,
            Some(number) => record
                .scale_override
                .or_else(|| self.release(app, number).and_then(|r| r.scale))
                .unwrap_or(nap_profile::DEFAULT_SCALE),
        }
    }
}

fn uptime(since: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(since)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn human_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

fn memory_column(instance: &Instance) -> String {
    let used = instance.memory_used.map_or("-".into(), human_bytes);
    match instance.memory_limit {
        Some(limit) if instance.limit_enforced => {
            format!("{used}/{}", nap_profile::format_memory(limit))
        }
        Some(limit) => format!(
            "{used}/{} (not enforced)",
            nap_profile::format_memory(limit)
        ),
        None => used,
    }
}

fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1}G", bytes as f64 / f64::from(1u32 << 30))
    } else {
        format!("{:.1}M", bytes as f64 / f64::from(1u32 << 20))
    }
}

pub async fn ps(daemon: &Arc<Daemon>, caller: &Caller, args: &[&str], out: &mut Out<'_>) -> u32 {
    let (name, json) = match args {
        [name] => (*name, false),
        [name, "--json"] | ["--json", name] => (*name, true),
        _ => return usage(out, "ps").await,
    };
    let (app, _) = match app_for(daemon, caller, name, Action::Read, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let instances = daemon.instances(&app).await;
    if json {
        let rows: Vec<PsRow> = instances
            .iter()
            .map(|i| PsRow {
                instance: format!("{}@{}", i.id.app, i.id.index),
                release: i.id.release.clone(),
                state: i.state.to_string(),
                port: i.address.port(),
                location: i.location.clone(),
                pid: i.pid,
                uptime_secs: uptime(i.started_at),
                restarts: i.restarts,
                memory_used: i.memory_used,
                memory_limit: i.memory_limit,
                limit_enforced: i.limit_enforced,
            })
            .collect();
        out.json(&rows).await;
        return 0;
    }
    out.line(&format!(
        "{:<28} {:<8} {:<9} {:<6} {:<8} {:<8} {:<8} {}",
        "INSTANCE", "RELEASE", "STATE", "PORT", "PID", "UPTIME", "RESTARTS", "MEMORY"
    ))
    .await;
    for i in &instances {
        out.line(&format!(
            "{:<28} {:<8} {:<9} {:<6} {:<8} {:<8} {:<8} {}",
            format!("{}@{}", i.id.app, i.id.index),
            i.id.release,
            i.state.to_string(),
            i.address.port(),
            i.pid.map_or("-".into(), |p| p.to_string()),
            human_duration(uptime(i.started_at)),
            i.restarts,
            memory_column(i)
        ))
        .await;
    }
    0
}

/// `N`, `+K` or `-K` against the current count.
fn target_scale(spec: &str, current: u32) -> Option<u32> {
    if let Some(more) = spec.strip_prefix('+') {
        current.checked_add(more.parse().ok()?)
    } else if let Some(fewer) = spec.strip_prefix('-') {
        current.checked_sub(fewer.parse().ok()?)
    } else {
        spec.parse().ok()
    }
}

pub async fn scale(daemon: &Arc<Daemon>, caller: &Caller, args: &[&str], out: &mut Out<'_>) -> u32 {
    let (name, spec) = match args {
        [name, spec] => (*name, *spec),
        [joined] => match joined.split_once('+') {
            Some((name, _)) => (name, &joined[name.len()..]),
            None => return usage(out, "scale").await,
        },
        _ => return usage(out, "scale").await,
    };
    let mut locked = match lock_for_change(daemon, caller, name, out).await {
        Ok(locked) => locked,
        Err(status) => return status,
    };
    let release = match locked.release(daemon) {
        Ok(release) => release,
        Err(message) => return fail(out, message).await,
    };
    let (app, number) = (locked.app.clone(), release.number);
    let current = daemon.desired(&app, &locked.record);
    let max = daemon.settings.max_scale;
    let target = match target_scale(spec, current) {
        Some(target) if target <= max => target,
        _ => {
            return fail(
                out,
                format!(
                    "scale '{}': expected a number of instances from 0 to {max}, or +N / -N",
                    spec.escape_debug()
                ),
            )
            .await;
        }
    };
    let running: Vec<u32> = daemon
        .instances(&app)
        .await
        .iter()
        .filter(|i| i.id.release == release_name(number))
        .map(|i| i.id.index)
        .collect();
    let missing: Vec<u32> = (1..=target).filter(|i| !running.contains(i)).collect();
    if !missing.is_empty() {
        out.err(&format!(
            "-----> Starting {} instance(s) of {app} (v{number})",
            missing.len()
        ))
        .await;
        if daemon
            .start_instances(&app, &release, &missing, out)
            .await
            .is_err()
        {
            return fail(out, format!("{app} stays at {current} instance(s)")).await;
        }
    }
    let stopped = daemon.stop_instances(&app, |i| i.id.index > target).await;
    if stopped > 0 {
        out.err(&format!("-----> Stopped {stopped} instance(s)"))
            .await;
    }
    locked.record.scale_override = Some(target);
    if let Err(e) = daemon.apps.save(&app, &locked.record) {
        return fail(out, e).await;
    }
    out.line(&format!(
        "{app} scaled to {target} instance{}",
        if target == 1 { "" } else { "s" }
    ))
    .await;
    0
}

pub async fn restart(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    args: &[&str],
    out: &mut Out<'_>,
) -> u32 {
    let [name] = args else {
        return usage(out, "restart").await;
    };
    let locked = match lock_for_change(daemon, caller, name, out).await {
        Ok(locked) => locked,
        Err(status) => return status,
    };
    let release = match locked.release(daemon) {
        Ok(release) => release,
        Err(message) => return fail(out, message).await,
    };
    let (app, record) = (&locked.app, &locked.record);
    let old = daemon.instances(app).await;
    out.err(&format!(
        "-----> Restarting {app} (v{}), one instance at a time",
        release.number
    ))
    .await;
    // Rolling: a fresh process for each index, healthy before the old one goes.
    for index in 1..=daemon.desired(app, record) {
        if daemon
            .start_instances(app, &release, &[index], out)
            .await
            .is_err()
        {
            return fail(
                out,
                format!("restart of {app} stopped at {app}@{index}; the others still run"),
            )
            .await;
        }
        let retired: Vec<_> = old
            .iter()
            .filter(|i| i.id.index == index)
            .map(|i| i.id.clone())
            .collect();
        daemon
            .stop_instances(app, |i| retired.contains(&i.id))
            .await;
    }
    out.line(&format!("{app} restarted")).await;
    0
}

pub async fn destroy(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    args: &[&str],
    out: &mut Out<'_>,
) -> u32 {
    let name = match args {
        [name, "--force"] | ["--force", name] => *name,
        [name] => {
            return fail(
                out,
                format!(
                    "destroy stops {} and deletes its code, releases, config and logs for good; run 'destroy {} --force' to do it",
                    name.escape_debug(),
                    name.escape_debug()
                ),
            )
            .await;
        }
        _ => return usage(out, "destroy").await,
    };
    let locked = match lock_for_change(daemon, caller, name, out).await {
        Ok(locked) => locked,
        Err(status) => return status,
    };
    let app = &locked.app;
    let stopped = daemon.remove_app(app).await;
    out.line(&format!("{app} destroyed ({stopped} instance(s) stopped)"))
        .await;
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_targets() {
        assert_eq!(target_scale("3", 1), Some(3));
        assert_eq!(target_scale("+2", 1), Some(3));
        assert_eq!(target_scale("-1", 1), Some(0));
        assert_eq!(target_scale("-2", 1), None);
        assert_eq!(target_scale("lots", 1), None);
        assert_eq!(target_scale("+", 1), None);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m05s");
        assert_eq!(human_duration(7300), "2h01m");
    }
}
