//! The steps of a deploy between the checkout and the first instance: the build
//! (`nap_build::build`) and the release phase (`release:`), or, for a rollback or a config
//! change, a copy of the tree an earlier deploy built.
//!
//! A release tree is built once, by the deploy that checked it out: the built tree is the
//! release. Rollbacks and config changes name the release whose tree they reuse
//! (`Source::built`) and copy it; restart and scale start instances in the tree that is
//! there. Only when that tree has been pruned is the commit checked out and built again.
//!
//! Everything runs in the app's sandbox as the app (its uid when nap is root): the fresh tree
//! is handed to the app's uid first, the cache (`DATA/cache/APP`, `$NAP_CACHE`) and storage
//! are the app's, the environment is the app's config vars. Output streams to the pusher as it
//! comes; a failure prints the error and the last lines, and the caller removes the tree and
//! says the running release is unchanged. Whatever the steps run dies with their future, so a
//! daemon that shuts down mid-build leaves no process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nap_core::AppName;
use nap_profile::Profile;
use nap_sandbox::Identity;
use tokio::sync::mpsc;

use crate::deploy::{Failed, fail, release_name};
use crate::{Daemon, Out};

/// The language every build and release phase runs with, as instances do.
const LANG: &str = "C.UTF-8";

impl Daemon {
    /// Why this daemon cannot run the profile's `build:` or `release:` (no sandbox to run
    /// them in), before anything changes; `None` when it can.
    pub(crate) fn pipeline_refusal(&self, profile: &Profile) -> Option<String> {
        if self.sandbox.is_some() {
            return None;
        }
        let key = match (&profile.build, &profile.release) {
            (Some(_), _) => "build",
            (None, Some(_)) => "release",
            (None, None) => return None,
        };
        Some(format!(
            "profile: {key}: this server runs no build or release commands ({}); remove '{key}:' from the profile, or ask the operator to enable the sandbox",
            self.no_sandbox_reason()
        ))
    }

    /// Why there is no sandbox, in the operator's words.
    fn no_sandbox_reason(&self) -> &'static str {
        match self.confinement {
            crate::isolation::Confinement::Cluster => {
                "runtime: fleet runs the pushed tree on its machines as it is"
            }
            _ => "isolation: none, so there is no sandbox to run them in",
        }
    }

    /// Copies the tree release `from` was built into to `tree` (the new release's), keeping
    /// modes, owners and links. `false` (having said so) when that tree is gone: the caller
    /// checks the commit out and builds it again.
    pub(crate) async fn copy_built_tree(
        &self,
        app: &AppName,
        from: u32,
        tree: &Path,
        out: &mut Out<'_>,
    ) -> Result<bool, Failed> {
        let source = self.data.release_tree(app.as_str(), from);
        if !source.is_dir() {
            out.err(&format!(
                "-----> The tree of v{from} is no longer on disk; checking it out and building it again"
            ))
            .await;
            return Ok(false);
        }
        out.err(&format!("-----> Reusing the tree of v{from} (not rebuilt)"))
            .await;
        // cp keeps every mode, owner and link and clones on filesystems that can; it follows
        // no symlink of the (app-written) tree.
        let copied = tokio::process::Command::new("cp")
            .args(["-a", "--reflink=auto", "--no-target-directory", "--"])
            .arg(&source)
            .arg(tree)
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        match copied {
            Ok(output) if output.status.success() => Ok(true),
            Ok(output) => {
                crate::deploy::remove_tree(tree).await;
                fail(
                    out,
                    format!(
                        "cannot copy the tree of v{from}: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    ),
                )
                .await
            }
            Err(e) => {
                crate::deploy::remove_tree(tree).await;
                fail(out, format!("cannot copy the tree of v{from}: cp: {e}")).await
            }
        }
    }

    /// Builds the freshly checked-out `tree` of release `number` and runs the profile's
    /// release phase in it. On failure the message and the last lines have been printed;
    /// the caller removes the tree.
    pub(crate) async fn build_release(
        self: &Arc<Self>,
        app: &AppName,
        profile: &Profile,
        number: u32,
        tree: &Path,
        config: &BTreeMap<String, String>,
        out: &mut Out<'_>,
    ) -> Result<(), Failed> {
        let Some(sandbox) = self.sandbox.clone() else {
            // No sandbox: `build:` and `release:` were refused before the checkout; what
            // would have been detected runs as pushed.
            let detected = nap_build::detect(tree, None);
            if let Some(label) = detected.label() {
                out.err(&format!(
                    " !     warning: {app} looks like a {label} app, but it is not built: {}; install its dependencies another way",
                    self.no_sandbox_reason()
                ))
                .await;
            }
            return Ok(());
        };
        let local = match self.local_app(app) {
            Ok(local) => local,
            Err(message) => return fail(out, message).await,
        };
        let identity = match local.ids {
            Some(ids) => Identity::AppUser {
                uid: ids.uid,
                gid: ids.gid,
            },
            None => Identity::DaemonUser,
        };
        let cache = self.data.app_cache(app.as_str());
        let prepared = {
            let (tree, storage, cache) = (tree.to_owned(), local.storage.clone(), cache.clone());
            tokio::task::spawn_blocking(move || prepare(&tree, &storage, &cache, identity)).await
        };
        match prepared {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return fail(out, message).await,
            Err(e) => return fail(out, format!("internal error: {e}")).await,
        }
        // Nothing to build and no release phase (a static site, a binary pushed as it
        // is): no cgroup to make and remove, nothing to start.
        if nap_build::detect(tree, profile.build.as_deref())
            .label()
            .is_none()
            && profile.release.is_none()
        {
            return Ok(());
        }
        let env = step_env(app, number, config);
        // The memory limit: the profile's, on a cgroup of the steps' own (as for `run`),
        // kept until the release phase ends; dropping it kills what is left in it.
        let cgroup = match self.local.as_ref() {
            Some(supervisor) => match nap_supervisor::OneOffCgroup::create(
                supervisor.memory_limits(),
                &format!("{app}@build"),
                profile.memory,
            ) {
                Ok(cgroup) => cgroup,
                Err(e) => return fail(out, format!("cannot limit the build's memory: {e}")).await,
            },
            None => None,
        };
        let memory_cgroup: Option<PathBuf> = cgroup.as_ref().map(|c| c.path().to_owned());
        let out_of_memory = || cgroup.as_ref().is_some_and(|c| c.out_of_memory());
        let request = nap_build::BuildRequest {
            app: app.to_string(),
            release: tree.to_owned(),
            storage: local.storage.clone(),
            cache,
            env: env.clone(),
            identity,
            build_command: profile.build.clone(),
            time_limit: nap_build::DEFAULT_BUILD_TIME_LIMIT,
            memory_cgroup: memory_cgroup.clone(),
        };
        let (sender, lines) = mpsc::unbounded_channel();
        let mut sink = queue(sender);
        let built = self
            .streamed(out, lines, nap_build::build(&sandbox, &request, &mut sink))
            .await?;
        if let Err(error) = built {
            out.err(&format!(" !     {error}")).await;
            if out_of_memory() {
                out.err(&format!(
                    " !     the build ran out of memory (the profile's memory: limit of {app})"
                ))
                .await;
            }
            print_last_lines(out, "the build", error.last_lines()).await;
            return Err(Failed);
        }
        let Some(command) = profile.release.clone() else {
            return Ok(());
        };
        let request = nap_build::ReleasePhaseRequest {
            app: app.to_string(),
            command,
            release: tree.to_owned(),
            storage: local.storage,
            env,
            identity,
            time_limit: nap_build::DEFAULT_RELEASE_TIME_LIMIT,
            memory_cgroup,
        };
        let (sender, lines) = mpsc::unbounded_channel();
        let mut sink = queue(sender);
        let ended = self
            .streamed(
                out,
                lines,
                nap_build::run_release_phase(&sandbox, &request, &mut sink),
            )
            .await?;
        match ended {
            Ok(ended) if ended.code == 0 => Ok(()),
            Ok(ended) => {
                out.err(&format!(
                    " !     the release command of {app} failed with exit status {}",
                    ended.code
                ))
                .await;
                if out_of_memory() {
                    out.err(&format!(" !     the release command ran out of memory (the profile's memory: limit of {app})")).await;
                }
                print_last_lines(out, "the release command", &ended.last_lines).await;
                Err(Failed)
            }
            Err(error) => {
                out.err(&format!(" !     {error}")).await;
                if let nap_build::ReleasePhaseError::TimedOut { last_lines, .. } = &error {
                    print_last_lines(out, "the release command", last_lines).await;
                }
                Err(Failed)
            }
        }
    }

    /// Runs `step` (which writes its lines to the sending side of `lines`) while its lines go
    /// to `out`. A daemon that shuts down drops the step, which kills what it runs.
    async fn streamed<T>(
        &self,
        out: &mut Out<'_>,
        mut lines: mpsc::UnboundedReceiver<String>,
        step: impl std::future::Future<Output = T>,
    ) -> Result<T, Failed> {
        let cancel = self.operations.cancel();
        let mut step = std::pin::pin!(step);
        // While a line is written to a slow client the step is not polled: its output waits
        // in its pipe, so what is queued here stays small.
        let ended = loop {
            tokio::select! {
                biased;
                Some(line) = lines.recv() => out.err(&line).await,
                ended = &mut step => break Some(ended),
                () = cancel.cancelled() => break None,
            }
        };
        let Some(ended) = ended else {
            return fail(out, "the daemon is shutting down; nothing was changed").await;
        };
        while let Ok(line) = lines.try_recv() {
            out.err(&line).await;
        }
        Ok(ended)
    }
}

/// A sink for nap-build that queues each line for [`Daemon::streamed`].
fn queue(lines: mpsc::UnboundedSender<String>) -> impl FnMut(&str) + Send {
    move |line: &str| {
        let _ = lines.send(line.to_owned());
    }
}

/// The environment of a build and a release phase: the app's config vars (but none named
/// `NAP_*`), and what says which app and release it is.
fn step_env(
    app: &AppName,
    number: u32,
    config: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = config
        .iter()
        .filter(|(name, _)| !name.starts_with("NAP_"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    env.entry("LANG".to_owned())
        .or_insert_with(|| LANG.to_owned());
    env.insert("NAP_APP".to_owned(), app.to_string());
    env.insert("NAP_RELEASE".to_owned(), release_name(number));
    env
}

/// Hands the fresh tree to the app and makes its storage and cache (mode 0700, the app's).
fn prepare(tree: &Path, storage: &Path, cache: &Path, identity: Identity) -> Result<(), String> {
    if let Identity::AppUser { uid, gid } = identity {
        chown_tree(tree, uid, gid)
            .map_err(|e| format!("cannot give the release tree to the app's uid {uid}: {e}"))?;
    }
    for (what, dir) in [("storage", storage), ("build cache", cache)] {
        nap_sandbox::prepare_writable_dir(dir, identity)
            .map_err(|e| format!("cannot prepare the app's {what} {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// `chown -hR uid:gid tree`: every entry, links as links (a link of the pushed tree is never
/// followed), on a tree the checkout has just written.
fn chown_tree(tree: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(tree, Some(uid), Some(gid))?;
    let metadata = std::fs::symlink_metadata(tree)?;
    if metadata.is_dir() {
        for entry in std::fs::read_dir(tree)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

async fn print_last_lines(out: &mut Out<'_>, what: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    out.err(&format!(" !     last lines of {what}:")).await;
    for line in lines {
        out.err(&format!("{}{line}", nap_build::INDENT)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_gets_the_config_but_no_nap_variable_of_the_config() {
        let app = AppName::parse("web").expect("a name");
        let config: BTreeMap<String, String> = [("A", "1"), ("NAP_RELEASE", "v99"), ("NAP_X", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let env = step_env(&app, 3, &config);
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("NAP_RELEASE").map(String::as_str), Some("v3"));
        assert_eq!(env.get("NAP_APP").map(String::as_str), Some("web"));
        assert_eq!(env.get("NAP_X"), None);
        assert_eq!(env.get("LANG").map(String::as_str), Some(LANG));
    }
}
