//! The deployer: a commit becomes a numbered release, and the release's
//! instances replace the old ones only once they are healthy.
//!
//! Every way of deploying goes through here: a push (inside the pre-receive
//! hook, so a failed deploy rejects the push), and later rollback, clone and
//! deploy-from-URL.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use nap_core::AppName;
use nap_runtime::{HealthPolicy, Instance, InstanceSpec};
use nap_store::{AppRecord, ReleaseRecord};
use tokio::sync::OwnedMutexGuard;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::apps::now;
use crate::repo::blocking;
use crate::{Daemon, Out};

/// Release trees kept on disk besides the running one, for rollbacks.
const KEEP_RELEASE_TREES: u32 = 5;

/// A deploy failed; the message has been printed, nothing running changed.
#[derive(Debug)]
pub struct Failed;

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
}

impl Daemon {
    /// Waits for the app's deploy lock: one deploy per app at a time, any
    /// number of apps in parallel. Gives up after the configured timeout.
    pub(crate) async fn lock_app(
        &self,
        app: &AppName,
        out: &mut Out<'_>,
    ) -> Result<OwnedMutexGuard<()>, Failed> {
        let lock = {
            let mut locks = self.deploy_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(app.to_string()).or_default().clone()
        };
        if let Ok(guard) = lock.clone().try_lock_owned() {
            return Ok(guard);
        }
        out.err(&format!(
            "-----> Waiting for the push or deploy of {app} in progress to finish"
        ))
        .await;
        match tokio::time::timeout(self.settings.deploy_lock_timeout, lock.lock_owned()).await {
            Ok(guard) => Ok(guard),
            Err(_) => {
                out.err(&format!(
                    " !     another deploy of {app} is still running after {}s; try again later",
                    self.settings.deploy_lock_timeout.as_secs()
                ))
                .await;
                Err(Failed)
            }
        }
    }

    /// Deploys `source` as the next release of `app`. The caller holds the
    /// app's lock.
    pub(crate) async fn deploy(
        self: &Arc<Self>,
        app: &AppName,
        source: Source<'_>,
        out: &mut Out<'_>,
    ) -> Result<u32, Failed> {
        let Some(mut record) = self.apps.record(app).map_err(|e| log_failure(&e))? else {
            out.err(&format!(" !     app {app} does not exist")).await;
            return Err(Failed);
        };
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

        let number = record.last_release + 1;
        let tree = self.data.release_tree(app.as_str(), number);
        // A tree left by a crash in an earlier attempt at this number.
        remove_tree(&tree).await;
        if let Err(e) = nap_store::create_dir(&self.data.releases(app.as_str())) {
            return fail(out, e).await;
        }
        // Where the commit is, for machines that fetch it while it deploys.
        let (git_dir, object_dirs) = (repo.git_dir().to_owned(), repo.object_directories());
        let checkout = {
            let id = commit.id.clone();
            let tree = tree.clone();
            blocking(move || repo.checkout(&id, &tree)).await
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
            Err(e) => return fail(out, format!("checkout failed: {e}")).await,
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
            env: match source.env {
                Some(env) => env,
                None => self.config(app),
            },
        };
        // Servable before anything starts, until this deploy ends: by then a
        // healthy release is the app's current one, a failed one is gone.
        let _pending = self
            .pending
            .begin(app.as_str(), number, &commit.id, git_dir, object_dirs);
        let started = self.start_release(app, &release, scale, out).await;
        if started.is_err() {
            remove_tree(&tree).await;
            out.err(&format!(
                " !     deploy of {app} v{number} failed; the running release is unchanged"
            ))
            .await;
            return Err(Failed);
        }

        // The new release is healthy: record it, then retire the old one.
        let saved =
            nap_store::write_json(&self.data.release_record(app.as_str(), number), &release)
                .and_then(|()| {
                    record.last_release = number;
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
            return fail(out, format!("cannot save the release: {e}")).await;
        }
        let old = self
            .stop_instances(app, |i| i.id.release != release_name(number))
            .await;
        if old > 0 {
            out.err(&format!(
                "-----> Stopped {old} instance(s) of the previous release"
            ))
            .await;
        }
        self.prune_release_trees(app, number).await;
        out.err(&format!("-----> {app} v{number} deployed")).await;
        info!(app = %app, release = number, scale, "deployed");
        Ok(number)
    }

    /// Starts `scale` instances of `release` and waits until each is healthy.
    /// On failure every new instance is stopped again and their last log
    /// lines are printed.
    pub(crate) async fn start_release(
        self: &Arc<Self>,
        app: &AppName,
        release: &ReleaseRecord,
        scale: u32,
        out: &mut Out<'_>,
    ) -> Result<(), Failed> {
        let memory = release.memory.map(nap_profile::format_memory);
        out.err(&format!(
            "-----> Starting {scale} instance{} of {app} (v{}){}",
            if scale == 1 { "" } else { "s" },
            release.number,
            memory.map(|m| format!(", {m} each")).unwrap_or_default()
        ))
        .await;
        let indexes: Vec<u32> = (1..=scale).collect();
        self.start_instances(app, release, &indexes, out).await
    }

    /// Starts instances `indexes` of `release` and waits for their health.
    pub(crate) async fn start_instances(
        self: &Arc<Self>,
        app: &AppName,
        release: &ReleaseRecord,
        indexes: &[u32],
        out: &mut Out<'_>,
    ) -> Result<(), Failed> {
        let local = match self.local_app(app) {
            Ok(local) => local,
            Err(message) => return fail(out, message).await,
        };
        let mut checks = JoinSet::new();
        for &index in indexes {
            let spec = InstanceSpec {
                app: app.to_string(),
                index,
                release: release_name(release.number),
                command: release.command.clone(),
                cwd: self.data.release_tree(app.as_str(), release.number),
                env: release
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                memory: release.memory,
                local: local.clone(),
            };
            let runtime = self.runtime.clone();
            let policy = HealthPolicy {
                grace: self.settings.health_grace,
                boot_timeout: self.settings.boot_timeout,
            };
            checks.spawn(async move {
                let started = runtime
                    .start(spec)
                    .await
                    .map_err(|e| (index, e.to_string(), Vec::new()))?;
                match runtime.wait_healthy(&started.id, policy).await {
                    Ok(health) => Ok((started, health.listening)),
                    Err(unhealthy) => {
                        let _ = runtime.stop(&started.id).await;
                        Err((index, unhealthy.reason, unhealthy.last_lines))
                    }
                }
            });
        }
        let mut up = Vec::new();
        let mut failures = Vec::new();
        while let Some(joined) = checks.join_next().await {
            match joined {
                Ok(Ok((started, listening))) => {
                    let what = if listening {
                        ""
                    } else {
                        " (not listening on it: a worker?)"
                    };
                    out.err(&format!(
                        "       {app}@{} up on port {}{what}",
                        started.id.index,
                        started.address.port()
                    ))
                    .await;
                    up.push(started.id);
                }
                Ok(Err(failure)) => failures.push(failure),
                Err(e) => failures.push((0, format!("internal error: {e}"), Vec::new())),
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        for id in &up {
            let _ = self.runtime.stop(id).await;
        }
        failures.sort_by_key(|f| f.0);
        for (index, reason, lines) in failures {
            out.err(&format!(" !     {app}@{index} failed: {reason}"))
                .await;
            if !lines.is_empty() {
                out.err(&format!(" !     last lines of {app}@{index}:"))
                    .await;
                for line in lines {
                    out.err(&format!("       {line}")).await;
                }
            }
        }
        Err(Failed)
    }

    /// Stops the app's instances that `which` selects; returns how many.
    pub(crate) async fn stop_instances(
        &self,
        app: &AppName,
        which: impl Fn(&Instance) -> bool,
    ) -> usize {
        let doomed: Vec<_> = self
            .runtime
            .list()
            .await
            .into_iter()
            .filter(|i| i.id.app == app.as_str() && which(i))
            .collect();
        let mut stops = JoinSet::new();
        for instance in &doomed {
            let runtime = self.runtime.clone();
            let id = instance.id.clone();
            stops.spawn(async move {
                if let Err(e) = runtime.stop(&id).await {
                    warn!(app = %id.app, index = id.index, release = %id.release, error = %e, "stop failed");
                }
            });
        }
        while stops.join_next().await.is_some() {}
        doomed.len()
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

    /// Removes release trees older than the newest few (their records stay).
    async fn prune_release_trees(&self, app: &AppName, current: u32) {
        for number in 1..current.saturating_sub(KEEP_RELEASE_TREES) {
            remove_tree(&self.data.release_tree(app.as_str(), number)).await;
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
        let mut restores = JoinSet::new();
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

/// Deletes a release tree (if it is there) on a blocking thread: a tree of
/// thousands of files takes a while.
async fn remove_tree(tree: &Path) {
    let tree = tree.to_owned();
    let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&tree) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            warn!(path = %tree.display(), error = %e, "cannot remove a release tree");
        }
        _ => {}
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

async fn fail<T>(out: &mut Out<'_>, message: impl std::fmt::Display) -> Result<T, Failed> {
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
