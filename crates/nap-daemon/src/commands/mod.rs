//! Management commands, one implementation for every door (SSH, `nap
//! COMMAND`, later the web API). Each prints one clear line on stderr when
//! it refuses, and returns non-zero.

mod keys;

use std::sync::Arc;

use nap_core::Caller;
use tokio::io::AsyncRead;

use crate::{Daemon, Out};

/// Exit status of a refused or failed command.
pub const FAILED: u32 = 1;
/// Exit status of a command used wrongly.
pub const USAGE: u32 = 2;

/// Every command with its usage and a line of help.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "apps",
        "apps",
        "apps you may see: name, owner, release, up/desired",
    ),
    ("whoami", "whoami", "who nap thinks you are"),
    ("keys", "keys", "list users and their keys (admins)"),
    (
        "keys:add",
        "keys:add NAME [--admin]   (public key on stdin)",
        "register a key for user NAME (admins)",
    ),
    (
        "keys:remove",
        "keys:remove NAME",
        "remove user NAME and their keys (admins)",
    ),
    ("help", "help", "this list"),
];

fn usage_of(name: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("", |(_, usage, _)| usage)
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
        return help(out).await;
    };
    match *name {
        "help" | "--help" | "-h" => help(out).await,
        "whoami" => {
            let role = if caller.admin { " (admin)" } else { "" };
            out.line(&format!("{}{role}", caller.user)).await;
            0
        }
        "apps" => apps(daemon, caller, args, out).await,
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

async fn help(out: &mut Out<'_>) -> u32 {
    let width = COMMANDS
        .iter()
        .map(|(_, usage, _)| usage.len())
        .max()
        .unwrap_or(0);
    out.line("nap commands (over ssh, or `nap COMMAND` on the host):")
        .await;
    for (_, usage, text) in COMMANDS {
        out.line(&format!("  {usage:width$}  {text}")).await;
    }
    0
}

async fn apps(daemon: &Arc<Daemon>, caller: &Caller, args: &[&str], out: &mut Out<'_>) -> u32 {
    if !args.is_empty() {
        return usage(out, "apps").await;
    }
    let apps = match daemon.apps.visible(caller) {
        Ok(apps) => apps,
        Err(e) => return fail(out, e).await,
    };
    out.line(&format!(
        "{:<24} {:<16} {:<8} {}",
        "APP", "OWNER", "RELEASE", "UP/DESIRED"
    ))
    .await;
    for (app, record) in apps {
        let release = record.release.map_or("-".to_owned(), |n| format!("v{n}"));
        out.line(&format!(
            "{:<24} {:<16} {:<8} {}/{}",
            app, record.owner, release, 0, 0
        ))
        .await;
    }
    0
}
