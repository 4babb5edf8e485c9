//! `apps`, `ps`, `scale`, `restart`, `destroy`: what runs, and how much of it.

use std::time::SystemTime;

use nap_core::rows::{AppRow, InstanceRow};
use nap_runtime::Instance;

use super::{Call, fail};
use crate::deploy::release_name;

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

pub(super) fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1}G", bytes as f64 / f64::from(1u32 << 30))
    } else {
        format!("{:.1}M", bytes as f64 / f64::from(1u32 << 20))
    }
}

pub async fn apps(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let json = match args {
        [] => false,
        ["--json"] => true,
        _ => return command.usage(out).await,
    };
    let apps = match daemon.apps.visible(caller) {
        Ok(apps) => apps,
        Err(e) => return fail(out, e).await,
    };
    let instances = daemon.runtime.list().await;
    let rows: Vec<AppRow> = apps
        .into_iter()
        .map(|(app, record)| AppRow {
            up: instances
                .iter()
                .filter(|i| i.id.app == app.as_str() && i.state == nap_runtime::InstanceState::Up)
                .count()
                .try_into()
                .unwrap_or(u32::MAX),
            desired: daemon.desired(&app, &record),
            release: record.release.map(|n| format!("v{n}")),
            name: app.to_string(),
            owner: record.owner,
            isolated: daemon.isolated(),
        })
        .collect();
    if json {
        out.json(&rows).await;
        return 0;
    }
    out.line(&format!(
        "{:<24} {:<16} {:<8} UP/DESIRED",
        "APP", "OWNER", "RELEASE"
    ))
    .await;
    for row in rows {
        let release = row.release.as_deref().unwrap_or("-");
        out.line(&format!(
            "{:<24} {:<16} {:<8} {}/{}",
            row.name, row.owner, release, row.up, row.desired
        ))
        .await;
    }
    if !daemon.isolated() {
        out.err(&format!(
            " !     warning: {}",
            crate::isolation::NOT_ISOLATED
        ))
        .await;
    }
    0
}

pub async fn ps(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let (app, _, json) = match command.app_and_json_flag(daemon, caller, args, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let instances = daemon.instances(&app).await;
    if json {
        let rows: Vec<InstanceRow> = instances
            .iter()
            .map(|i| InstanceRow {
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
                isolated: daemon.isolated(),
            })
            .collect();
        out.json(&rows).await;
        return 0;
    }
    // Instances on other machines have no pid here; where they run is
    // their machine, which the runtime gives as the location.
    let local = daemon.runtime.name() == "local";
    let (place, width) = if local { ("PID", 8) } else { ("MACHINE", 28) };
    out.line(&format!(
        "{:<28} {:<8} {:<9} {:<6} {place:<width$} {:<8} {:<8} {}",
        "INSTANCE", "RELEASE", "STATE", "PORT", "UPTIME", "RESTARTS", "MEMORY"
    ))
    .await;
    for i in &instances {
        let place = if local {
            i.pid.map_or("-".into(), |p| p.to_string())
        } else {
            i.location.clone()
        };
        out.line(&format!(
            "{:<28} {:<8} {:<9} {:<6} {place:<width$} {:<8} {:<8} {}",
            format!("{}@{}", i.id.app, i.id.index),
            i.id.release,
            i.state.to_string(),
            i.address.port(),
            human_duration(uptime(i.started_at)),
            i.restarts,
            memory_column(i)
        ))
        .await;
    }
    if !daemon.isolated() {
        out.err(&format!(
            " !     warning: {app}'s {}",
            crate::isolation::NOT_ISOLATED
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

pub async fn scale(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let (name, spec) = match args {
        [name, spec] => (*name, *spec),
        [joined] => match joined.split_once('+') {
            Some((name, _)) => (name, &joined[name.len()..]),
            None => return command.usage(out).await,
        },
        _ => return command.usage(out).await,
    };
    let mut locked = match command.lock_app(daemon, caller, name, out).await {
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

pub async fn restart(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let [name] = args else {
        return command.usage(out).await;
    };
    let locked = match command.lock_app(daemon, caller, name, out).await {
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

pub async fn destroy(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let name = match args {
        [name, "--force"] | ["--force", name] => *name,
        [name] => {
            return fail(
                out,
                format!(
                    "destroy stops {} and deletes its code, releases, config, storage and logs for good; run 'destroy {} --force' to do it",
                    name.escape_debug(),
                    name.escape_debug()
                ),
            )
            .await;
        }
        _ => return command.usage(out).await,
    };
    let locked = match command.lock_app(daemon, caller, name, out).await {
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
