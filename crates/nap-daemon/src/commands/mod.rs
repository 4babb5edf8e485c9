//! Management commands, one implementation for every door (SSH, `nap
//! COMMAND`, later the web API). Each prints one clear line on stderr when
//! it refuses, and returns non-zero.

mod config;
mod keys;
mod logs;
mod ops;
mod releases;
mod similar;

use std::sync::Arc;

use nap_core::Caller;
use tokio::io::AsyncRead;

use crate::{Daemon, Out};

/// Exit status of a refused or failed command.
pub const FAILED: u32 = 1;
/// Exit status of a command used wrongly.
pub const USAGE: u32 = 2;

/// One command's usage and a line of help.
pub struct Help {
    /// The command word.
    pub name: &'static str,
    /// How to call it.
    pub usage: &'static str,
    /// What it does.
    pub about: &'static str,
}

const fn help(name: &'static str, usage: &'static str, about: &'static str) -> Help {
    Help { name, usage, about }
}

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[Help] = &[
    help(
        "apps",
        "apps [--json]",
        "apps you may see: name, owner, release, up/desired",
    ),
    help(
        "ps",
        "ps APP [--json]",
        "instances: state, port, pid, uptime, restarts, memory",
    ),
    help(
        "scale",
        "scale APP N|+N|-N  (or APP+N)",
        "set the number of instances",
    ),
    help(
        "logs",
        "logs APP [-n N] [-f] [-i I]",
        "last N lines (default 100); -f follows",
    ),
    help(
        "restart",
        "restart APP",
        "restart every instance, one at a time",
    ),
    help(
        "releases",
        "releases APP [--json]",
        "the app's releases, newest first",
    ),
    help(
        "rollback",
        "rollback APP [vN]",
        "deploy an earlier release again (default: the previous)",
    ),
    help("config", "config APP", "the app's config vars"),
    help(
        "config:set",
        "config:set APP KEY=VALUE ...",
        "set config vars (makes a new release)",
    ),
    help(
        "config:unset",
        "config:unset APP KEY ...",
        "remove config vars (makes a new release)",
    ),
    help(
        "clone",
        "clone APP [NEW] --command CMD...",
        "a similar app: APP's code started with another command",
    ),
    help(
        "deploy",
        "deploy NEW --from GIT_URL [--ref REF]",
        "fetch a repository and deploy it as a new app",
    ),
    help(
        "destroy",
        "destroy APP --force",
        "stop the app and delete its code, releases and logs",
    ),
    help(
        "token",
        "token [--revoke]",
        "print a new web manager login token (--revoke: revoke all yours)",
    ),
    help("whoami", "whoami", "who nap thinks you are"),
    help("keys", "keys", "list users and their keys (admins)"),
    help(
        "keys:add",
        "keys:add NAME [--admin]  (key on stdin)",
        "register a key for user NAME (admins)",
    ),
    help(
        "keys:remove",
        "keys:remove NAME",
        "remove user NAME and their keys (admins)",
    ),
    help("help", "help", "this list"),
];

fn usage_of(name: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|c| c.name == name)
        .map_or("", |c| c.usage)
}

/// Prints the usage of `name` and returns the usage status.
pub async fn usage(out: &mut Out<'_>, name: &str) -> u32 {
    out.err(&format!(" !     usage: {}", usage_of(name))).await;
    USAGE
}

/// Prints `message` as the command's one error line and returns the failure status.
pub async fn fail(out: &mut Out<'_>, message: impl std::fmt::Display) -> u32 {
    out.err(&format!(" !     {message}")).await;
    FAILED
}

pub async fn run(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    words: &[&str],
    stdin: Box<dyn AsyncRead + Send + Unpin + '_>,
    out: &mut Out<'_>,
) -> u32 {
    let Some((name, args)) = words.split_first() else {
        return print_help(out).await;
    };
    match *name {
        "help" | "--help" | "-h" => print_help(out).await,
        "whoami" => {
            let role = if caller.admin { " (admin)" } else { "" };
            out.line(&format!("{}{role}", caller.user)).await;
            0
        }
        "apps" => apps(daemon, caller, args, out).await,
        "token" => token(daemon, caller, args, out).await,
        "ps" => ops::ps(daemon, caller, args, out).await,
        "scale" => ops::scale(daemon, caller, args, out).await,
        "restart" => ops::restart(daemon, caller, args, out).await,
        "destroy" => ops::destroy(daemon, caller, args, out).await,
        "clone" => similar::clone(daemon, caller, args, out).await,
        "deploy" => similar::deploy_from(daemon, caller, args, out).await,
        "logs" => logs::logs(daemon, caller, args, out).await,
        "releases" => releases::releases(daemon, caller, args, out).await,
        "rollback" => releases::rollback(daemon, caller, args, out).await,
        "config" => config::show(daemon, caller, args, out).await,
        "config:set" => config::set(daemon, caller, args, out).await,
        "config:unset" => config::unset(daemon, caller, args, out).await,
        "keys" => keys::list(daemon, caller, args, out).await,
        "keys:add" => keys::add(daemon, caller, args, stdin, out).await,
        "keys:remove" => keys::remove(daemon, caller, args, out).await,
        other => fail(
            out,
            format!(
                "unknown command '{}'; run 'help' for the list",
                other.escape_debug()
            ),
        )
        .await
        .max(USAGE),
    }
}

/// An app locked for a change, with its record read again under the lock (a
/// deploy may have finished while the command waited).
pub struct Locked {
    /// The app.
    pub app: nap_core::AppName,
    /// Its record, as of taking the lock.
    pub record: nap_store::AppRecord,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Locked {
    /// The running release, or why there is none.
    pub fn release(&self, daemon: &Daemon) -> Result<nap_store::ReleaseRecord, String> {
        let app = &self.app;
        let number = self
            .record
            .release
            .ok_or_else(|| format!("app {app} has no release yet; push it first"))?;
        daemon
            .release(app, number)
            .ok_or_else(|| format!("the record of {app} v{number} is missing"))
    }
}

/// Checks name and write access, then takes the app's deploy lock: the
/// prelude of every command that changes an app.
pub async fn lock_for_change(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    name: &str,
    out: &mut Out<'_>,
) -> Result<Locked, u32> {
    let (app, _) = app_for(daemon, caller, name, nap_core::Action::Write, out).await?;
    let Ok(guard) = daemon.lock_app(&app, out).await else {
        return Err(FAILED);
    };
    match daemon.apps.record(&app) {
        Ok(Some(record)) => Ok(Locked {
            app,
            record,
            _guard: guard,
        }),
        _ => Err(fail(out, format!("app {app} does not exist")).await),
    }
}

/// Checks name and access for a command on an existing app; prints the
/// refusal and returns the status to exit with otherwise.
pub async fn app_for(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    name: &str,
    action: nap_core::Action,
    out: &mut Out<'_>,
) -> Result<(nap_core::AppName, nap_store::AppRecord), u32> {
    match daemon.apps.existing(caller, name, action) {
        Ok(found) => Ok(found),
        Err(e) => Err(fail(out, e).await),
    }
}

async fn token(daemon: &Arc<Daemon>, caller: &Caller, args: &[&str], out: &mut Out<'_>) -> u32 {
    match args {
        [] => match daemon.tokens.issue(&caller.user) {
            Ok(token) => {
                out.line(&token).await;
                0
            }
            Err(e) => fail(out, format!("cannot store the token: {e}")).await,
        },
        ["--revoke"] => match daemon.tokens.revoke(&caller.user) {
            Ok(count) => {
                out.line(&format!("revoked {count} token(s) of {}", caller.user))
                    .await;
                0
            }
            Err(e) => fail(out, format!("cannot revoke: {e}")).await,
        },
        _ => usage(out, "token").await,
    }
}

async fn print_help(out: &mut Out<'_>) -> u32 {
    let width = COMMANDS.iter().map(|c| c.usage.len()).max().unwrap_or(0);
    out.line("nap commands (over ssh, or `nap COMMAND` on the host):")
        .await;
    for command in COMMANDS {
        out.line(&format!("  {:width$}  {}", command.usage, command.about))
            .await;
    }
    0
}

/// One row of `apps --json`.
#[derive(serde::Serialize)]
struct AppRow {
    name: String,
    owner: String,
    release: Option<String>,
    up: usize,
    desired: u32,
}

async fn apps(daemon: &Arc<Daemon>, caller: &Caller, args: &[&str], out: &mut Out<'_>) -> u32 {
    let json = match args {
        [] => false,
        ["--json"] => true,
        _ => return usage(out, "apps").await,
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
                .count(),
            desired: daemon.desired(&app, &record),
            release: record.release.map(|n| format!("v{n}")),
            name: app.to_string(),
            owner: record.owner,
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
    0
}
