//! The deployer: a commit becomes a numbered release, and the release's
//! instances replace the old ones only once they are healthy (and routed).
//!
//! Every way of deploying goes through here: a push (inside the pre-receive
//! hook, so a failed deploy rejects the push), rollback, config changes, clone
//! and deploy-from-URL. A deploy runs inside an operation (`operation.rs`)
//! that holds the app's lock; it is not dropped half-way when a client leaves,
//! and when the daemon shuts down it undoes itself at its next step.
//!
//! A release number is taken for good (the app's `last_release`) before the
//! release's first instance starts, so no two deploys ever run instances under
//! one number, even across a crash; a deploy that fails after that leaves a
//! gap in the numbers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use nap_core::AppName;
use nap_store::{AppRecord, ReleaseRecord};
use tracing::{info, warn};

use crate::app_lock::AppLock;
use crate::apps::now;
use crate::repo::blocking;
use crate::{Daemon, Out};

/// Release trees kept on disk besides the running one, for rollbacks.
const KEEP_RELEASE_TREES: u32 = 5;

/// A deploy failed; the message has been printed, nothing running changed.
#[derive(Debug)]
pub struct Failed;

/// A deploy that succeeded: what it changed, for whoever may have to undo it (a push
/// whose ref git did not update).
#[derive(Debug, Clone)]
pub(crate) struct Deployed {
    /// The new release.
    pub(crate) number: u32,
    /// Its commit.
    pub(crate) commit: String,
    /// The app's record before the deploy.
    pub(crate) before: AppRecord,
}

/// What to deploy.
pub struct Source<'a> {
    /// The repository holding the commit (with the push quarantine, if any).
    pub repo: nap_git::Repo,
    /// The full commit id.
    pub commit: &'a str,
    /// Who asked.
    pub pusher: &'a str,
    /// Why: "push", "rollback to v2", ...
    pub note: String,
    /// Config vars; `None` takes the app's current config.
    pub env: Option<BTreeMap<String, String>>,
    /// The release whose built tree this deploy reuses (a rollback, a config change): its
    /// tree is copied, nothing is built and no release phase runs. `None` checks the commit
    /// out and builds it (also when that tree is gone).
    pub built: Option<u32>,
}

impl Daemon {
    /// Waits for the app's lock: one operation per app at a time, any number of
    /// apps in parallel. Gives up after the configured timeout, or when the daemon
    /// shuts down.
    pub(crate) async fn lock_app(
        &self,
        app: &AppName,
        out: &mut Out<'_>,
    ) -> Result<AppLock, Failed> {
        let waiter = match self.app_locks.waiter(app.as_str()).try_lock() {
            Ok(lock) => return Ok(lock),
            Err(waiter) => waiter,
        };
        out.err(&format!(
            "-----> Waiting for the push or deploy of {app} in progress to finish"
        ))
        .await;
        let cancel = self.operations.cancel();
        tokio::select! {
            locked = tokio::time::timeout(self.settings.deploy_lock_timeout, waiter.lock()) => match locked {
                Ok(lock) => Ok(lock),
                Err(_) => {
                    out.err(&format!(
                        " !     another deploy of {app} is still running after {}s; try again later",
                        self.settings.deploy_lock_timeout.as_secs()
                    ))
                    .await;
                    Err(Failed)
                }
            },
            () = cancel.cancelled() => fail(out, "the daemon is shutting down; nothing was changed").await,
        }
    }

    /// Deploys `source` as the next release of `app`. The caller holds the
    /// app's lock.
    pub(crate) async fn deploy(
        self: &Arc<Self>,
        app: &AppName,
        source: Source<'_>,
        out: &mut Out<'_>,
    ) -> Result<Deployed, Failed> {
        let cancel = self.operations.cancel();
        if cancel.is_cancelled() {
            return fail(out, "the daemon is shutting down; nothing was changed").await;
        }
        let Some(mut record) = self.apps.record(app).map_err(|e| log_failure(&e))? else {
            out.err(&format!(" !     app {app} does not exist")).await;
            return Err(Failed);
        };
        let before = record.clone();
        // gix's repository handle is Send but not Sync: it travels into the
        // blocking thread and back.
        let rev = source.commit.to_owned();
        let inspected = tokio::task::spawn_blocking(move || {
            let repo = source.repo;
            let found = repo
                .resolve_commit(&rev)
                .map_err(|e| format!("cannot read commit {rev}: {e}"))
                .and_then(|commit| {
                    let profile = repo
                        .read_file(&commit.id, "profile", nap_profile::MAX_PROFILE_BYTES as u64)
                        .map_err(|e| format!("profile: {e}"))?;
                    Ok((commit, profile))
                });
            (repo, found)
        })
        .await;
        let (repo, commit, profile_bytes) = match inspected {
            Ok((repo, Ok((commit, profile)))) => (repo, commit, profile),
            Ok((_, Err(message))) => return fail(out, message).await,
            Err(e) => return fail(out, format!("internal error: {e}")).await,
        };
        out.err(&format!(
            "-----> Checking out {} ({})",
            commit.short,
            commit.summary.escape_debug()
        ))
        .await;
        // The profile first: a bad one must cost nothing.
        let profile_text = match profile_bytes {
            Some(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => return fail(out, "profile: expected UTF-8 text").await,
            },
            None => {
                return fail(out, "no profile at the root of the tree: add a file named 'profile' with at least 'command: <how to start one instance>'").await;
            }
        };
        let limits = nap_profile::Limits {
            max_scale: self.settings.max_scale,
        };
        let parsed = match nap_profile::parse("profile", &profile_text, &limits) {
            Ok(parsed) => parsed,
            Err(e) => return fail(out, e).await,
        };
        for warning in &parsed.warnings {
            out.err(&format!(" !     warning: {warning}")).await;
        }
        if !self.isolated() {
            out.err(&format!(
                " !     warning: {app}'s {}",
                crate::isolation::NOT_ISOLATED
            ))
            .await;
        }
        let profile = parsed.profile;
        if let Some(refusal) = self.pipeline_refusal(&profile) {
            return fail(out, refusal).await;
        }
        let config = match source.env {
            Some(env) => env,
            None => self.config(app),
        };

        let number = record.last_release + 1;
        let tree = self.data.release_tree(app.as_str(), number);
        // A tree left by a crash in an earlier attempt at this number.
        remove_tree(&tree).await;
        if let Err(e) = nap_store::create_dir(&self.data.releases(app.as_str())) {
            return fail(out, e).await;
        }
        // Where the commit is, for machines that fetch it while it deploys.
        let (git_dir, object_dirs) = (repo.git_dir().to_owned(), repo.object_directories());
        let options = nap_git::CheckoutOptions {
            max_files: Some(self.settings.max_files),
            max_bytes: Some(self.settings.max_bytes),
            interrupt: Some(cancel.flag()),
            ..Default::default()
        };
        let reused = match source.built {
            Some(from) => self.copy_built_tree(app, from, &tree, out).await?,
            None => false,
        };
        if !reused {
            let checkout = {
                let id = commit.id.clone();
                let tree = tree.clone();
                blocking(move || repo.checkout_with(&id, &tree, &options)).await
            };
            match checkout {
                Ok(stats) => {
                    out.err(&format!(
                        "       {} files, {} KiB",
                        stats.files,
                        stats.bytes / 1024
                    ))
                    .await
                }
                Err(crate::repo::RepoError::Checkout(refused)) => {
                    return fail(out, checkout_refusal(&refused, &commit.short)).await;
                }
                Err(e) => return fail(out, format!("checkout failed: {e}")).await,
            }
            // The build and the release phase, before the number is taken: a failed build
            // costs no number (nothing ran as an instance under it).
            if self
                .build_release(app, &profile, number, &tree, &config, out)
                .await
                .is_err()
            {
                return abandon(app, number, &tree, out).await;
            }
        }

        let previous = record.release.and_then(|n| self.release(app, n));
        let scale = desired_scale(&record, previous.as_ref(), profile.scale);
        let release = ReleaseRecord {
            number,
            commit: commit.id.clone(),
            pusher: source.pusher.to_owned(),
            time: now(),
            command: profile.command.clone(),
            scale: profile.scale,
            memory: profile.memory,
            note: source.note,
            env: config,
            healthcheck: profile.healthcheck.clone(),
            healthcheck_timeout: profile.healthcheck_timeout,
        };
        // The number is taken before anything runs under it.
        record.last_release = number;
        if let Err(e) = self.apps.save(app, &record) {
            remove_tree(&tree).await;
            return fail(out, format!("cannot save the app's record: {e}")).await;
        }
        // Servable before anything starts, until this deploy ends: by then a
        // healthy release is the app's current one, a failed one is gone.
        let _pending = self
            .pending
            .begin(app.as_str(), number, &commit.id, git_dir, object_dirs);
        let started = self.start_release(app, &release, scale, out).await;
        let started = match started {
            Ok(started) if !cancel.is_cancelled() => started,
            outcome => {
                if outcome.is_ok() {
                    self.stop_instances(app, |i| i.id.release == release_name(number))
                        .await;
                    out.err(" !     the daemon is shutting down").await;
                }
                return abandon(app, number, &tree, out).await;
            }
        };

        // The new release is healthy: record it, then retire the old one.
        let saved =
            nap_store::write_json(&self.data.release_record(app.as_str(), number), &release)
                .and_then(|()| {
                    record.release = Some(number);
                    if profile.scale != previous.as_ref().and_then(|p| p.scale) {
                        record.scale_override = None;
                    }
                    self.apps.save(app, &record)
                });
        if let Err(e) = saved {
            // Without a record the new instances would be orphans: undo.
            self.stop_instances(app, |i| i.id.release == release_name(number))
                .await;
            remove_tree(&tree).await;
            let _ = std::fs::remove_file(self.data.release_record(app.as_str(), number));
            return fail(out, format!("cannot save the release: {e}")).await;
        }
        self.retire_old(app, number, &started, out).await;
        self.prune_release_trees(app, number, before.release).await;
        out.err(&format!("-----> {app} v{number} deployed")).await;
        info!(app = %app, release = number, scale, "deployed");
        Ok(Deployed {
            number,
            commit: commit.id,
            before,
        })
    }

    /// Stops every instance of `app` that is not of release `number`, once the new
    /// ones (at `started`) are in the router's routes.
    async fn retire_old(
        &self,
        app: &AppName,
        number: u32,
        started: &[std::net::SocketAddr],
        out: &mut Out<'_>,
    ) {
        let current = release_name(number);
        let old = self
            .runtime
            .list()
            .await
            .into_iter()
            .filter(|i| i.id.app == app.as_str() && i.id.release != current)
            .count();
        if old == 0 {
            return;
        }
        self.routing.until_routed(app, started).await;
        out.err(&format!(
            "-----> Stopping {old} instance(s) of the previous release"
        ))
        .await;
        let stopped = self.stop_instances(app, |i| i.id.release != current).await;
        out.err(&format!(
            "-----> Stopped {stopped} instance(s) of the previous release"
        ))
        .await;
    }

    /// Undoes a deploy whose push did not go through (git did not update the ref):
    /// the release that ran before comes back, then the deploy's release stops and its
    /// records go. Its number stays taken. The caller holds the app's lock.
    pub(crate) async fn undo_deploy(
        self: &Arc<Self>,
        app: &AppName,
        deployed: &Deployed,
        out: &mut Out<'_>,
    ) {
        let number = deployed.number;
        let previous = deployed.before.release.and_then(|n| self.release(app, n));
        if let Some(previous) = &previous {
            let scale = self.desired(app, &deployed.before);
            let (git_dir, object_dirs) = match nap_git::open(
                &self.data.repo(app.as_str()),
                &nap_git::Quarantine::default(),
            ) {
                Ok(repo) => (repo.git_dir().to_owned(), repo.object_directories()),
                Err(_) => (self.data.repo(app.as_str()), Vec::new()),
            };
            let _pending = self.pending.begin(
                app.as_str(),
                previous.number,
                &previous.commit,
                git_dir,
                object_dirs,
            );
            match self.start_release(app, previous, scale, out).await {
                Ok(started) => self.routing.until_routed(app, &started).await,
                Err(Failed) => {
                    tracing::error!(app = %app, release = number, previous = previous.number, "cannot bring the previous release back; the new one keeps running although its push did not go through");
                    out.err(&format!(
                        " !     v{} did not come back; {app} v{number} keeps running",
                        previous.number
                    ))
                    .await;
                    return;
                }
            }
        }
        self.stop_instances(app, |i| i.id.release == release_name(number))
            .await;
        let mut record = deployed.before.clone();
        record.last_release = record.last_release.max(number);
        if let Err(e) = self.apps.save(app, &record) {
            tracing::error!(app = %app, error = %e, "cannot save the app's record after undoing a deploy");
        }
        if let Err(e) = std::fs::remove_file(self.data.release_record(app.as_str(), number))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(app = %app, release = number, error = %e, "cannot remove the undone release's record");
        }
        remove_tree(&self.data.release_tree(app.as_str(), number)).await;
        out.err(&format!(
            " !     {app} v{number} was undone; {} runs",
            previous.map_or_else(|| "nothing".to_owned(), |p| format!("v{}", p.number))
        ))
        .await;
    }

    /// The app's current config vars.
    pub(crate) fn config(&self, app: &AppName) -> BTreeMap<String, String> {
        nap_store::read_json(&self.data.app_config(app.as_str()))
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// A release's record, if it can be read.
    pub(crate) fn release(&self, app: &AppName, number: u32) -> Option<ReleaseRecord> {
        nap_store::read_json(&self.data.release_record(app.as_str(), number))
            .ok()
            .flatten()
    }

    /// Removes release trees older than the newest few (their records stay), except
    /// the one that ran before `current` (an undo may need it).
    async fn prune_release_trees(&self, app: &AppName, current: u32, previous: Option<u32>) {
        for number in 1..current.saturating_sub(KEEP_RELEASE_TREES) {
            if Some(number) != previous {
                remove_tree(&self.data.release_tree(app.as_str(), number)).await;
            }
        }
    }

    /// Brings every app back to its desired instances (after a restart).
    pub(crate) async fn restore_all(self: &Arc<Self>) {
        let everyone = nap_core::Caller {
            user: String::new(),
            admin: true,
        };
        let apps = match self.apps.visible(&everyone) {
            Ok(apps) => apps,
            Err(e) => {
                warn!(error = %e, "cannot list apps to restore");
                return;
            }
        };
        let mut restores = tokio::task::JoinSet::new();
        for (app, record) in apps {
            let Some(number) = record.release else {
                continue;
            };
            let Some(release) = self.release(&app, number) else {
                warn!(app = %app, release = number, "release record missing; not restored");
                continue;
            };
            let scale = record
                .scale_override
                .or(release.scale)
                .unwrap_or(nap_profile::DEFAULT_SCALE);
            let daemon = self.clone();
            restores.spawn(async move {
                let mut out = Out::new(Box::new(tokio::io::sink()), Box::new(tokio::io::sink()));
                let indexes: Vec<u32> = (1..=scale).collect();
                if daemon.start_instances(&app, &release, &indexes, &mut out).await.is_err() {
                    warn!(app = %app, "restored instances are not healthy; the supervisor keeps restarting them");
                }
                info!(app = %app, release = number, scale, "restored");
            });
        }
        while restores.join_next().await.is_some() {}
    }
}

/// The one line that refuses a checkout, with both numbers when the tree is too big.
fn checkout_refusal(error: &nap_git::CheckoutError, short: &str) -> String {
    match error {
        nap_git::CheckoutError::TooManyFiles {
            files, max_files, ..
        } => format!(
            "push refused: commit {short} has {files} files; at most {max_files} are allowed (the server's max_files)"
        ),
        nap_git::CheckoutError::TooLarge {
            bytes, max_bytes, ..
        } => format!(
            "push refused: the files of commit {short} add up to {bytes} bytes; at most {max_bytes} are allowed (the server's max_bytes)"
        ),
        nap_git::CheckoutError::Interrupted { .. } => {
            "the daemon is shutting down; nothing was changed".to_owned()
        }
        other => format!("checkout failed: {other}"),
    }
}

/// A deploy that failed after its tree was made: the tree goes, and the pusher learns that
/// nothing running changed.
async fn abandon<T>(
    app: &AppName,
    number: u32,
    tree: &Path,
    out: &mut Out<'_>,
) -> Result<T, Failed> {
    remove_tree(tree).await;
    out.err(&format!(
        " !     deploy of {app} v{number} failed; the running release is unchanged"
    ))
    .await;
    Err(Failed)
}

/// Deletes a release tree (if it is there) on a blocking thread: a tree of
/// thousands of files takes a while. A built tree is the app's: directories it left
/// unwritable are made writable first (see `remove_storage`).
pub(crate) async fn remove_tree(tree: &Path) {
    let tree = tree.to_owned();
    let removed = tokio::task::spawn_blocking(move || {
        if let Err(e) = crate::isolation::remove_storage(&tree) {
            warn!(path = %tree.display(), error = %e, "cannot remove a release tree");
        }
    })
    .await;
    if let Err(e) = removed {
        warn!(error = %e, "removing a release tree failed");
    }
}

/// `vN`.
pub(crate) fn release_name(number: u32) -> String {
    format!("v{number}")
}

/// How many instances a new release gets: a scale set by `scale` wins until
/// the profile's own `scale` changes.
fn desired_scale(
    record: &AppRecord,
    previous: Option<&ReleaseRecord>,
    profile_scale: Option<u32>,
) -> u32 {
    let profile_changed = previous.map(|p| p.scale) != Some(profile_scale);
    match record.scale_override {
        Some(scale) if !profile_changed => scale,
        _ => profile_scale.unwrap_or(nap_profile::DEFAULT_SCALE),
    }
}

fn log_failure(e: &dyn std::fmt::Display) -> Failed {
    warn!(error = %e, "deploy failed");
    Failed
}

pub(crate) async fn fail<T>(
    out: &mut Out<'_>,
    message: impl std::fmt::Display,
) -> Result<T, Failed> {
    out.err(&format!(" !     {message}")).await;
    Err(Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(scale: Option<u32>) -> ReleaseRecord {
        ReleaseRecord {
            number: 1,
            commit: String::new(),
            pusher: String::new(),
            time: 0,
            command: String::new(),
            scale,
            memory: None,
            note: String::new(),
            env: BTreeMap::new(),
            healthcheck: None,
            healthcheck_timeout: None,
        }
    }

    #[test]
    fn a_scale_command_wins_until_the_profile_changes_its_scale() {
        let scaled = AppRecord {
            scale_override: Some(5),
            ..AppRecord::default()
        };
        assert_eq!(desired_scale(&scaled, Some(&release(Some(2))), Some(2)), 5);
        assert_eq!(desired_scale(&scaled, Some(&release(Some(2))), Some(3)), 3);
        assert_eq!(desired_scale(&scaled, Some(&release(None)), None), 5);
        assert_eq!(desired_scale(&AppRecord::default(), None, None), 1);
        assert_eq!(desired_scale(&AppRecord::default(), None, Some(0)), 0);
    }
}
