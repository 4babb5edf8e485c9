//! The pre-receive hook of every app repository: this binary, run by git through the
//! repository's `hooks/pre-receive` link (or, the same, as `nap hook pre-receive`). It forwards the ref updates and git's quarantine environment to the
//! daemon, prints the daemon's progress, and exits with its verdict. It
//! decides nothing.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nap_daemon::Request;
use nap_daemon::hook::{HookRequest, RefUpdate};

use crate::blocking_write::BlockingWrite;

pub fn pre_receive() -> anyhow::Result<ExitCode> {
    let var = |name: &str| std::env::var(name).ok();
    let socket = PathBuf::from(
        var("NAP_SOCKET").context("NAP_SOCKET is not set: pushes must go through nap")?,
    );
    let token =
        var("NAP_HOOK_TOKEN").context("NAP_HOOK_TOKEN is not set: pushes must go through nap")?;
    let mut updates = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("cannot read the ref updates from git")?;
        let mut fields = line.split(' ');
        if let (Some(old), Some(new), Some(name), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        {
            updates.push(RefUpdate {
                old: old.into(),
                new: new.into(),
                name: name.into(),
            });
        }
    }
    let request = Request::Hook(HookRequest {
        token,
        updates,
        object_dir: var("GIT_OBJECT_DIRECTORY"),
        alternates: var("GIT_ALTERNATE_OBJECT_DIRECTORIES"),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Everything goes to stderr: git relays it to the pusher as "remote: ".
    let status = runtime.block_on(async {
        let mut stderr = BlockingWrite(std::io::stderr());
        let mut stderr2 = BlockingWrite(std::io::stderr());
        nap_daemon::call(&socket, &request, &mut stderr, &mut stderr2).await
    })?;
    Ok(crate::cli::exit_code(status))
}
