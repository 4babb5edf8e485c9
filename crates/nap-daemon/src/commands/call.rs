//! What a command is (a row of the table in `mod.rs`) and what its handler gets: the call, and
//! the checks its row declares.

use std::sync::Arc;

use nap_core::{AccessError, Action, AppName, Caller, HostName};
use nap_store::{AppRecord, ReleaseRecord};
use tokio::io::AsyncRead;

use crate::{Daemon, Out};

/// A boxed future, as handlers return them.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Exit status of a refused or failed command.
pub const FAILED: u32 = 1;
/// Exit status of a command used wrongly.
pub const USAGE: u32 = 2;

/// Who may run a command. The dispatcher checks [`Gate::Admin`] before the handler runs; an
/// app command's handler can reach its app only through [`Command::app`] and
/// [`Command::lock_app`], which check the action its row names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Every user with a key: what the command shows or makes is the caller's own (`apps`
    /// lists what the caller may see, `deploy` makes a new app owned by the caller).
    Anyone,
    /// Admins only; the text says what is refused (`list keys`).
    Admin(&'static str),
    /// The caller must be allowed to do `Action` to the app the command names.
    App(Action),
}

/// A command's handler: runs the call to its end and returns the exit status.
pub type Handler = for<'a, 'o> fn(Call<'a, 'o>) -> BoxFuture<'a, u32>;

/// One management command, declared once: what dispatch, `help` and the access check read.
pub struct Command {
    /// The command word.
    pub name: &'static str,
    /// How to call it.
    pub usage: &'static str,
    /// What it does, in one line.
    pub about: &'static str,
    /// Who may run it.
    pub gate: Gate,
    /// Whether it is an operation that changes what runs: it then runs in a task of its
    /// own, to its end or to a full undo, whether or not its client stays
    /// (`operation.rs`). Such a command reads no stdin.
    pub outlives_client: bool,
    /// What runs it.
    pub handler: Handler,
}

/// One command as a handler sees it.
pub struct Call<'a, 'o> {
    /// The daemon.
    pub daemon: &'a Arc<Daemon>,
    /// Who runs it.
    pub caller: &'a Caller,
    /// The words after the command's name.
    pub args: &'a [&'a str],
    /// What the client sends (only `keys:add` reads it).
    pub stdin: Box<dyn AsyncRead + Send + Unpin + 'a>,
    /// Where the output goes.
    pub out: &'a mut Out<'o>,
    /// The command's row.
    pub command: &'static Command,
}

impl<'a, 'o> Call<'a, 'o> {
    /// The daemon, the caller, the arguments, the output and the command's row: what a
    /// handler that reads no stdin works with.
    pub fn parts(
        self,
    ) -> (
        &'a Arc<Daemon>,
        &'a Caller,
        &'a [&'a str],
        &'a mut Out<'o>,
        &'static Command,
    ) {
        (self.daemon, self.caller, self.args, self.out, self.command)
    }
}

/// Prints `message` as the command's one error line and returns the failure status.
pub async fn fail(out: &mut Out<'_>, message: impl std::fmt::Display) -> u32 {
    out.err(&format!(" !     {message}")).await;
    FAILED
}

/// An app locked for a change, with its record read again under the lock (a
/// deploy may have finished while the command waited).
pub struct Locked {
    /// The app.
    pub app: AppName,
    /// Its record, as of taking the lock.
    pub record: AppRecord,
    _guard: crate::app_lock::AppLock,
}

/// Why a locked app has no release to work with.
#[derive(Debug, thiserror::Error)]
pub enum NoRelease {
    /// It was never deployed.
    #[error("app {0} has no release yet; push it first")]
    NeverDeployed(AppName),
    /// Its running release's record cannot be read.
    #[error("the record of {0} v{1} is missing")]
    RecordMissing(AppName, u32),
}

impl Locked {
    /// The running release, or why there is none.
    pub fn release(&self, daemon: &Daemon) -> Result<ReleaseRecord, NoRelease> {
        let app = &self.app;
        let number = self
            .record
            .release
            .ok_or_else(|| NoRelease::NeverDeployed(app.clone()))?;
        daemon
            .release(app, number)
            .ok_or_else(|| NoRelease::RecordMissing(app.clone(), number))
    }
}

impl Command {
    /// Prints the command's usage and returns the usage status.
    pub async fn usage(&self, out: &mut Out<'_>) -> u32 {
        out.err(&format!(" !     usage: {}", self.usage)).await;
        USAGE
    }

    /// The app `name`, if it exists and the caller may do what the command's row says to it;
    /// prints the refusal and returns the status to exit with otherwise.
    pub async fn app(
        &self,
        daemon: &Daemon,
        caller: &Caller,
        name: &str,
        out: &mut Out<'_>,
    ) -> Result<(AppName, AppRecord), u32> {
        let Gate::App(action) = self.gate else {
            return Err(self.not_an_app_command(out).await);
        };
        match daemon.apps.existing(caller, name, action) {
            Ok(found) => Ok(found),
            Err(e) => Err(fail(out, e).await),
        }
    }

    /// The arguments of a command called `APP [--json]`: the app, checked as [`Command::app`]
    /// checks it, and whether the caller asked for JSON. The flag may stand before or after
    /// the name, so that scripts need not remember which. Prints the usage or the refusal
    /// and returns the status to exit with otherwise.
    pub async fn app_and_json_flag(
        &self,
        daemon: &Daemon,
        caller: &Caller,
        args: &[&str],
        out: &mut Out<'_>,
    ) -> Result<(AppName, AppRecord, bool), u32> {
        let (name, json) = match args {
            [name] => (*name, false),
            [name, "--json"] | ["--json", name] => (*name, true),
            _ => return Err(self.usage(out).await),
        };
        let (app, record) = self.app(daemon, caller, name, out).await?;
        Ok((app, record, json))
    }

    /// The arguments of a command called `APP HOST`: the app, checked as [`Command::app`]
    /// checks it, and the host, which must be a valid DNS name. The app is checked first, so
    /// that who may not see the app learns nothing from how its host is judged. Prints the
    /// usage or the refusal and returns the status to exit with otherwise.
    pub async fn app_and_host(
        &self,
        daemon: &Daemon,
        caller: &Caller,
        args: &[&str],
        out: &mut Out<'_>,
    ) -> Result<(AppName, HostName), u32> {
        let [name, host] = args else {
            return Err(self.usage(out).await);
        };
        let (app, _) = self.app(daemon, caller, name, out).await?;
        match HostName::parse(host) {
            Ok(host) => Ok((app, host)),
            Err(error) => Err(fail(out, error).await),
        }
    }

    /// Checks name and write access, then takes the app's deploy lock: the
    /// prelude of every command that changes an app.
    pub async fn lock_app(
        &self,
        daemon: &Daemon,
        caller: &Caller,
        name: &str,
        out: &mut Out<'_>,
    ) -> Result<Locked, u32> {
        if self.gate != Gate::App(Action::Write) {
            return Err(self.not_an_app_command(out).await);
        }
        let (app, _) = self.app(daemon, caller, name, out).await?;
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

    /// The table says this command acts on no app (or only reads it), yet its handler asked
    /// for one: refuse, rather than guess an access rule.
    async fn not_an_app_command(&self, out: &mut Out<'_>) -> u32 {
        tracing::error!(command = self.name, gate = ?self.gate, "a handler asked for an app its row does not gate");
        fail(
            out,
            format!(
                "internal error: '{}' is not declared as a command on an app",
                self.name
            ),
        )
        .await
    }

    /// Refuses a caller the row's admin gate keeps out.
    pub(super) fn admitted(&self, caller: &Caller) -> Result<(), AccessError> {
        match self.gate {
            Gate::Admin(what) if !caller.admin => Err(AccessError::AdminOnly(what)),
            _ => Ok(()),
        }
    }
}
