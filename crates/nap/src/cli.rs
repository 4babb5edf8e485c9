//! Arguments, in two steps: clap's raw flags, then what to do.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use nap_daemon::Request;

use crate::blocking_write::BlockingWrite;
use crate::config::{ServeFlags, settings};

/// git push to deploy: a self-hosted platform in one binary.
#[derive(Debug, Parser)]
#[command(name = "nap", version, about, allow_external_subcommands = true)]
struct Cli {
    /// Data directory [default: $NAP_DATA or ./nap-data].
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: SSH front door, deployer, supervisor.
    // Boxed: its flags are most of the enum, and every other command would carry their size.
    Serve(Box<ServeFlags>),
    /// Manage users' public keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Git hooks; run by git, not by people.
    #[command(hide = true)]
    Hook {
        /// The hook's name.
        name: String,
    },
    /// Any management command (apps, ps, logs, ...), run as admin through the daemon.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Register an OpenSSH public key for user NAME (the first should be --admin).
    Add {
        /// The user.
        name: String,
        /// Make the user an admin.
        #[arg(long)]
        admin: bool,
        /// The public key file, or - for stdin [default: stdin].
        file: Option<PathBuf>,
    },
    /// List users and keys.
    List,
    /// Remove user NAME and all their keys.
    Remove {
        /// The user.
        name: String,
    },
}

fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("NAP_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("nap-data"))
}

pub fn run() -> anyhow::Result<ExitCode> {
    if run_as_hook() {
        return crate::hook::pre_receive();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(flags) => serve(cli.data, *flags),
        Command::Hook { name } if name == "pre-receive" => crate::hook::pre_receive(),
        Command::Hook { name } => anyhow::bail!("unknown hook '{}'", name.escape_debug()),
        Command::Keys(KeysCommand::Add { name, admin, file }) => {
            let mut key = String::new();
            match file {
                Some(path) if path.as_os_str() != "-" => {
                    key = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                }
                _ => {
                    std::io::stdin()
                        .read_to_string(&mut key)
                        .context("cannot read the key from stdin")?;
                }
            }
            let mut args = vec!["keys:add".to_owned(), name];
            if admin {
                args.push("--admin".into());
            }
            remote(cli.data, args, Some(key))
        }
        Command::Keys(KeysCommand::List) => remote(cli.data, vec!["keys".into()], None),
        Command::Keys(KeysCommand::Remove { name }) => {
            remote(cli.data, vec!["keys:remove".into(), name], None)
        }
        // The one other command that reads stdin: a certificate chain and its key.
        Command::Other(args) if args.first().is_some_and(|name| name == "certs:add") => {
            let mut bundle = String::new();
            std::io::stdin()
                .read_to_string(&mut bundle)
                .context("cannot read the certificate from stdin")?;
            remote(cli.data, args, Some(bundle))
        }
        Command::Other(args) => remote(cli.data, args, None),
    }
}

/// Every app repository's `hooks/pre-receive` is a link to this binary, which git runs by
/// that name and with no arguments (`nap_daemon::hook::install`): then this binary is the
/// hook, with no shell in between.
fn run_as_hook() -> bool {
    let mut args = std::env::args_os();
    let name = args.next().map(PathBuf::from);
    args.next().is_none()
        && name
            .as_deref()
            .and_then(std::path::Path::file_name)
            .is_some_and(|name| name == nap_daemon::hook::HOOK_NAME)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs a management command in the daemon and mirrors its output.
fn remote(
    data: Option<PathBuf>,
    args: Vec<String>,
    stdin: Option<String>,
) -> anyhow::Result<ExitCode> {
    let socket = data_dir(data).join("nap.sock");
    let request = Request::Command { args, stdin };
    let status = runtime()?.block_on(async {
        nap_daemon::call(
            &socket,
            &request,
            &mut BlockingWrite(std::io::stdout()),
            &mut BlockingWrite(std::io::stderr()),
        )
        .await
    })?;
    Ok(exit_code(status))
}

pub fn exit_code(status: u32) -> ExitCode {
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}

fn serve(data: Option<PathBuf>, flags: ServeFlags) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NAP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal; a log file or the journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let settings = settings(data, flags)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        nap_daemon::serve(settings, shutdown, |bound| {
            // One line on stdout that scripts (and tests) can wait for.
            println!(
                "nap: ssh listening on {}, http on {}, router on {}, https on {}",
                bound.ssh, bound.http, bound.router, bound.https
            );
        })
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}
