//! `config`, `config:set`, `config:unset`: environment of the app's instances,
//! kept outside git. A change is a new release with a rolling restart, so a
//! bad value never takes the running release down.

use std::collections::BTreeMap;
use std::sync::Arc;

use nap_core::{AppName, Caller};

use super::{Call, Command, fail};
use crate::deploy::Source;
use crate::{Daemon, Out};

/// Most config vars per app, and size of one value.
const MAX_VARS: usize = 200;
const MAX_VALUE: usize = 32 * 1024;

/// `^[A-Za-z_][A-Za-z0-9_]*$`, and not one nap sets itself.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128;
    if !valid {
        return Err(format!(
            "config var name '{}': expected a letter or '_' first, then letters, digits or '_'",
            name.escape_debug()
        ));
    }
    if name == "PORT" || name.starts_with("NAP_") {
        return Err(format!("config var {name} is set by nap itself"));
    }
    Ok(())
}

pub async fn show(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let [name] = args else {
        return command.usage(out).await;
    };
    let (app, _) = match command.app(daemon, caller, name, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    for (key, value) in daemon.config(&app) {
        out.line(&format!("{key}={value}")).await;
    }
    0
}

pub async fn set(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let Some((name, pairs)) = args.split_first().filter(|(_, pairs)| !pairs.is_empty()) else {
        return command.usage(out).await;
    };
    let mut changes = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return fail(
                out,
                format!("'{}': expected KEY=VALUE", pair.escape_debug()),
            )
            .await;
        };
        if let Err(message) = check_name(key) {
            return fail(out, message).await;
        }
        if value.len() > MAX_VALUE || value.contains('\0') {
            return fail(
                out,
                format!("config var {key}: the value must be under 32 KiB and hold no NUL"),
            )
            .await;
        }
        changes.insert(key.to_owned(), Some(value.to_owned()));
    }
    change(command, daemon, caller, name, changes, out).await
}

pub async fn unset(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let Some((name, keys)) = args.split_first().filter(|(_, keys)| !keys.is_empty()) else {
        return command.usage(out).await;
    };
    let mut changes = BTreeMap::new();
    for key in keys {
        if let Err(message) = check_name(key) {
            return fail(out, message).await;
        }
        changes.insert((*key).to_owned(), None);
    }
    change(command, daemon, caller, name, changes, out).await
}

async fn change(
    command: &Command,
    daemon: &Arc<Daemon>,
    caller: &Caller,
    name: &str,
    changes: BTreeMap<String, Option<String>>,
    out: &mut Out<'_>,
) -> u32 {
    let locked = match command.lock_app(daemon, caller, name, out).await {
        Ok(locked) => locked,
        Err(status) => return status,
    };
    let app = locked.app.clone();
    let mut env = daemon.config(&app);
    for (key, value) in &changes {
        match value {
            Some(value) => env.insert(key.clone(), value.clone()),
            None => env.remove(key),
        };
    }
    if env.len() > MAX_VARS {
        return fail(
            out,
            format!("an app may have at most {MAX_VARS} config vars"),
        )
        .await;
    }
    let keys: Vec<&str> = changes.keys().map(String::as_str).collect();
    // Only names go to the output and the logs, never values.
    tracing::info!(app = %app, keys = ?keys, "config change");
    let status = redeploy(
        daemon,
        caller,
        &app,
        env.clone(),
        format!("config: {}", keys.join(", ")),
        out,
    )
    .await;
    if status != 0 {
        return status;
    }
    if let Err(e) = nap_store::write_json(&daemon.data.app_config(app.as_str()), &env) {
        return fail(out, e).await;
    }
    0
}

/// Deploys the running commit again with `env`; without a release only the
/// config is stored.
async fn redeploy(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    app: &AppName,
    env: BTreeMap<String, String>,
    note: String,
    out: &mut Out<'_>,
) -> u32 {
    let Ok(Some(record)) = daemon.apps.record(app) else {
        return fail(out, format!("app {app} does not exist")).await;
    };
    let Some(current) = record.release.and_then(|n| daemon.release(app, n)) else {
        out.line("config stored; it applies from the first deploy")
            .await;
        return 0;
    };
    let repo = match nap_git::open(
        &daemon.data.repo(app.as_str()),
        &nap_git::Quarantine::default(),
    ) {
        Ok(repo) => repo,
        Err(e) => return fail(out, format!("cannot open the repository: {e}")).await,
    };
    let source = Source {
        repo,
        commit: &current.commit,
        pusher: &caller.user,
        note,
        env: Some(env),
        built: Some(current.number),
    };
    match daemon.deploy(app, source, out).await {
        Ok(_) => 0,
        Err(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names() {
        for good in ["A", "_x", "DATABASE_URL", "a1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "PORT", "NAP_APP", "A=B", "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
