//! Management commands, one implementation for every door (SSH, `nap
//! COMMAND`, the web manager). Each prints one clear line on stderr when it
//! refuses, and returns non-zero.
//!
//! Every command is one row of [`COMMANDS`]: its name, usage, help line, who
//! may run it and its handler. Dispatch, `help`, `COMMAND --help` and the
//! access check all read that row, so a command cannot be added to one of them
//! and forgotten in another.

mod account;
mod call;
mod certs;
mod config;
mod domains;
mod help;
mod keys;
mod logs;
mod ops;
mod releases;
mod run;
mod similar;

use std::sync::Arc;

use nap_core::{Action, Caller};
use tokio::io::AsyncRead;
use tracing::info;

pub use call::{Call, Command, Gate, USAGE, fail};
pub(crate) use run::OneOffs;

use crate::operation::{Sink, follow};
use crate::{Daemon, Out};

/// A row of the table: a command that lasts as long as its client.
const fn command(
    name: &'static str,
    usage: &'static str,
    about: &'static str,
    gate: Gate,
    handler: call::Handler,
) -> Command {
    Command {
        name,
        usage,
        about,
        gate,
        outlives_client: false,
        handler,
    }
}

/// A row of the table: an operation, which runs to its end (or to a full undo) even
/// when its client leaves.
const fn operation(
    name: &'static str,
    usage: &'static str,
    about: &'static str,
    gate: Gate,
    handler: call::Handler,
) -> Command {
    Command {
        outlives_client: true,
        ..command(name, usage, about, gate, handler)
    }
}

const READ: Gate = Gate::App(Action::Read);
const WRITE: Gate = Gate::App(Action::Write);

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[Command] = &[
    command(
        "apps",
        "apps [--json]",
        "apps you may see: name, owner, release, up/desired",
        Gate::Anyone,
        |call| Box::pin(ops::apps(call)),
    ),
    command(
        "ps",
        "ps APP [--json]",
        "instances: state, port, pid, uptime, restarts, memory",
        READ,
        |call| Box::pin(ops::ps(call)),
    ),
    operation(
        "scale",
        "scale APP N|+N|-N  (or APP+N)",
        "set the number of instances",
        WRITE,
        |call| Box::pin(ops::scale(call)),
    ),
    command(
        "logs",
        "logs APP [-n N] [-f] [-i I]",
        "last N lines (default 100); -f follows",
        READ,
        |call| Box::pin(logs::logs(call)),
    ),
    operation(
        "restart",
        "restart APP",
        "restart every instance, one at a time",
        WRITE,
        |call| Box::pin(ops::restart(call)),
    ),
    command(
        "releases",
        "releases APP [--json]",
        "the app's releases, newest first",
        READ,
        |call| Box::pin(releases::releases(call)),
    ),
    operation(
        "rollback",
        "rollback APP [vN]",
        "deploy an earlier release again (default: the previous)",
        WRITE,
        |call| Box::pin(releases::rollback(call)),
    ),
    command(
        "config",
        "config APP",
        "the app's config vars",
        READ,
        |call| Box::pin(config::show(call)),
    ),
    operation(
        "config:set",
        "config:set APP KEY=VALUE ...",
        "set config vars (makes a new release)",
        WRITE,
        |call| Box::pin(config::set(call)),
    ),
    operation(
        "config:unset",
        "config:unset APP KEY ...",
        "remove config vars (makes a new release)",
        WRITE,
        |call| Box::pin(config::unset(call)),
    ),
    command(
        "domains",
        "domains APP [--json]",
        "the app's custom hosts, besides APP.<domain>",
        READ,
        |call| Box::pin(domains::list(call)),
    ),
    command(
        "domains:add",
        "domains:add APP HOST",
        "route HOST (a DNS name you own) to the app",
        WRITE,
        |call| Box::pin(domains::add(call)),
    ),
    command(
        "domains:remove",
        "domains:remove APP HOST",
        "stop routing HOST to the app (its certificate goes too)",
        WRITE,
        |call| Box::pin(domains::remove(call)),
    ),
    command(
        "domains:redirect",
        "domains:redirect APP on|off",
        "redirect plain HTTP to HTTPS (308) for hosts with a certificate",
        WRITE,
        |call| Box::pin(domains::redirect(call)),
    ),
    command(
        "certs",
        "certs APP [--json]",
        "certificates of the app's hosts: source, expiry, issuer, last ACME failure",
        READ,
        |call| Box::pin(certs::list(call)),
    ),
    command(
        "certs:add",
        "certs:add APP  (PEM chain, then key, on stdin)",
        "serve an uploaded certificate for the app's hosts it covers",
        WRITE,
        |call| Box::pin(certs::add(call)),
    ),
    command(
        "certs:remove",
        "certs:remove APP HOST",
        "stop serving HOST's certificate",
        WRITE,
        |call| Box::pin(certs::remove(call)),
    ),
    command(
        "certs:auto",
        "certs:auto APP [--off]",
        "order and renew the app's certificates from ACME (--off: stop)",
        WRITE,
        |call| Box::pin(certs::auto(call)),
    ),
    operation(
        "clone",
        "clone APP [NEW] --command CMD...",
        "a similar app: APP's code started with another command",
        // APP is only read; NEW is made for the caller.
        READ,
        |call| Box::pin(similar::clone(call)),
    ),
    operation(
        "deploy",
        "deploy NEW --from GIT_URL [--ref REF]",
        "fetch a repository and deploy it as a new app",
        // NEW is made for the caller; what a URL may reach is checked by the command.
        Gate::Anyone,
        |call| Box::pin(similar::deploy_from(call)),
    ),
    command(
        "run",
        "run APP CMD...",
        "a one-off command in the app's running release (sandboxed; it ends with the client)",
        // It runs the app's code, which may change its storage.
        WRITE,
        |call| Box::pin(run::run(call)),
    ),
    operation(
        "destroy",
        "destroy APP --force",
        "stop the app and delete its code, releases and logs",
        WRITE,
        |call| Box::pin(ops::destroy(call)),
    ),
    command(
        "token",
        "token [--revoke]",
        "print a new web manager login token (--revoke: revoke all yours)",
        Gate::Anyone,
        |call| Box::pin(account::token(call)),
    ),
    command(
        "whoami",
        "whoami",
        "who nap thinks you are",
        Gate::Anyone,
        |call| Box::pin(account::whoami(call)),
    ),
    command(
        "keys",
        "keys",
        "list users and their keys (admins)",
        Gate::Admin("list keys"),
        |call| Box::pin(keys::list(call)),
    ),
    command(
        "keys:add",
        "keys:add NAME [--admin]  (key on stdin)",
        "register a key for user NAME (admins)",
        Gate::Admin("add keys"),
        |call| Box::pin(keys::add(call)),
    ),
    command(
        "keys:remove",
        "keys:remove NAME",
        "remove user NAME and their keys (admins)",
        Gate::Admin("remove keys"),
        |call| Box::pin(keys::remove(call)),
    ),
    command(
        "help",
        "help [COMMAND]",
        "this list, or how to use one command (also: COMMAND --help)",
        Gate::Anyone,
        |call| Box::pin(help::help(call)),
    ),
];

/// The row of `name`.
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|command| command.name == name)
}

/// Runs one management command line (already split into words) for `caller`.
pub async fn run(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    words: &[&str],
    stdin: Box<dyn AsyncRead + Send + Unpin + '_>,
    out: &mut Out<'_>,
) -> u32 {
    let Some((name, args)) = words.split_first() else {
        return help::print_help(out).await;
    };
    let name = match *name {
        "--help" | "-h" => "help",
        name => name,
    };
    let Some(command) = find(name) else {
        return help::unknown(out, name).await;
    };
    // `COMMAND --help` needs no rights: it says how to use the command, nothing more.
    if matches!(args.first(), Some(&"--help" | &"-h")) && args.len() == 1 {
        return help::print_command_help(out, command).await;
    }
    if let Err(refused) = command.admitted(caller) {
        return fail(out, refused).await;
    }
    if command.outlives_client {
        return run_detached(daemon, caller, args, command, out).await;
    }
    let call = Call {
        daemon,
        caller,
        args,
        stdin,
        out,
        command,
    };
    (command.handler)(call).await
}

/// Runs an operation's handler in a task of its own and follows its output; the
/// operation goes on if this future is dropped (the client left).
async fn run_detached(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    args: &[&str],
    command: &'static Command,
    out: &mut Out<'_>,
) -> u32 {
    let (sink, chunks) = Sink::new();
    let (daemon, caller) = (daemon.clone(), caller.clone());
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let operation = daemon.clone().operations.spawn(async move {
        let mut out = sink.out();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let call = Call {
            daemon: &daemon,
            caller: &caller,
            args: &args,
            stdin: Box::new(tokio::io::empty()),
            out: &mut out,
            command,
        };
        let status = (command.handler)(call).await;
        // Only the command's name: its arguments may hold config values or a URL's
        // credentials.
        info!("the operation {} is over (status {status})", command.name);
        status
    });
    follow(chunks, operation, out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_declared_once_and_its_usage_starts_with_its_name() {
        for (i, command) in COMMANDS.iter().enumerate() {
            assert!(
                COMMANDS[i + 1..].iter().all(|c| c.name != command.name),
                "{} twice",
                command.name
            );
            assert!(
                command.usage.split_whitespace().next() == Some(command.name),
                "{}: {}",
                command.name,
                command.usage
            );
            assert!(!command.about.is_empty(), "{}", command.name);
        }
    }

    /// A command whose usage names an existing APP gates on it; only such commands do.
    #[test]
    fn commands_on_an_app_are_gated_by_the_app() {
        for command in COMMANDS {
            let names_an_app = command.usage.split_whitespace().nth(1) == Some("APP")
                || command.usage.starts_with("scale APP");
            assert_eq!(
                names_an_app,
                matches!(command.gate, Gate::App(_)),
                "{}: {:?}",
                command.name,
                command.gate
            );
        }
        let admin_only: Vec<&str> = COMMANDS
            .iter()
            .filter(|c| matches!(c.gate, Gate::Admin(_)))
            .map(|c| c.name)
            .collect();
        assert_eq!(admin_only, ["keys", "keys:add", "keys:remove"]);
    }
}
