//! `help`, `help COMMAND` and `COMMAND --help`, from the command table.

use super::{COMMANDS, Call, Command, USAGE, fail, find};
use crate::Out;

pub(super) async fn unknown(out: &mut Out<'_>, name: &str) -> u32 {
    fail(
        out,
        format!(
            "unknown command '{}'; run 'help' for the list",
            name.escape_debug()
        ),
    )
    .await
    .max(USAGE)
}

/// `help`, `help COMMAND`.
pub(super) async fn help(call: Call<'_, '_>) -> u32 {
    match call.args {
        [] => print_help(call.out).await,
        [name] => match find(name) {
            Some(command) => print_command_help(call.out, command).await,
            None => unknown(call.out, name).await,
        },
        _ => call.command.usage(call.out).await,
    }
}

pub(super) async fn print_help(out: &mut Out<'_>) -> u32 {
    for line in help_lines() {
        out.line(&line).await;
    }
    0
}

/// The list `help` prints.
fn help_lines() -> Vec<String> {
    let width = COMMANDS.iter().map(|c| c.usage.len()).max().unwrap_or(0);
    let mut lines = vec!["nap commands (over ssh, or `nap COMMAND` on the host):".to_owned()];
    for command in COMMANDS {
        lines.push(format!("  {:width$}  {}", command.usage, command.about));
    }
    lines
}

pub(super) async fn print_command_help(out: &mut Out<'_>, command: &Command) -> u32 {
    out.line(&format!("usage: {}", command.usage)).await;
    out.line(command.about).await;
    0
}
