//! What the daemon knows and does about an app beyond its record: how many
//! instances it should have and which run, the name of its next similar app,
//! and removing it for good. The commands, the deployer and the web all use
//! these; none of them is a command.

use nap_core::{AppName, Caller};
use nap_runtime::Instance;
use nap_store::AppRecord;

use crate::Daemon;

/// No free name `APP-N` is left for a similar app.
#[derive(Debug, thiserror::Error)]
pub enum SimilarNameError {
    /// The apps cannot be listed.
    #[error(transparent)]
    Apps(#[from] crate::AppsError),
    /// Every `APP-N` that fits in a name is taken (or too long).
    #[error("no free name {0}-N of 63 characters or fewer; give the new app a name")]
    NoneFree(AppName),
}

impl Daemon {
    /// Stops everything of `app` and deletes it; the name is free afterwards.
    /// Returns how many instances were stopped.
    pub(crate) async fn remove_app(&self, app: &AppName) -> usize {
        let stopped = self.stop_instances(app, |_| true).await;
        // Its one-off runs too, before their storage goes (and again once the record is
        // gone, for a run that read the record in between).
        self.one_offs.end_all(app.as_str());
        // The storage goes before the record: once the record is gone the name and the
        // app's uid are free for a new app, which must find nothing of this one's.
        let storage = self.data.app_storage(app.as_str());
        let cache = self.data.app_cache(app.as_str());
        // The record goes next: from then on the name is free, whatever remains.
        let record = self.data.app_record(app.as_str());
        let dirs = [
            self.data.app(app.as_str()),
            self.data.repo(app.as_str()),
            self.data.app_logs(app.as_str()),
        ];
        // Deleting a tree of releases takes a while: not on the async threads.
        let removed = tokio::task::spawn_blocking(move || {
            for dir in [&storage, &cache] {
                if let Err(e) = crate::isolation::remove_storage(dir) {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot remove");
                }
            }
            if let Err(e) = std::fs::remove_file(&record)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %record.display(), error = %e, "cannot remove");
            }
            for dir in dirs {
                if let Err(e) = std::fs::remove_dir_all(&dir)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot remove");
                }
            }
        })
        .await;
        if let Err(e) = removed {
            tracing::warn!(app = %app, error = %e, "removing the app's files failed");
        }
        self.one_offs.end_all(app.as_str());
        // After the record: a host is free only once no app of that name exists.
        self.forget_domains(app);
        self.apps.announce_change();
        stopped
    }

    /// `APP-N` for a new similar app of `app`: N is one more than the number
    /// of similar apps `app` has, skipping names that are taken.
    pub(crate) fn next_similar_name(&self, app: &AppName) -> Result<AppName, SimilarNameError> {
        let everyone = Caller {
            user: String::new(),
            admin: true,
        };
        let apps = self.apps.visible(&everyone)?;
        let similar = apps
            .iter()
            .filter(|(_, r)| r.similar_to.as_deref() == Some(app.as_str()))
            .count();
        (similar + 1..)
            .take(1000)
            .map(|n| AppName::parse(&format!("{app}-{n}")))
            .find(|name| {
                name.as_ref()
                    .is_ok_and(|name| !apps.iter().any(|(taken, _)| taken == name))
            })
            .and_then(Result::ok)
            .ok_or_else(|| SimilarNameError::NoneFree(app.clone()))
    }

    /// The app's instances, numbered order.
    pub(crate) async fn instances(&self, app: &AppName) -> Vec<Instance> {
        let mut instances: Vec<_> = self
            .runtime
            .list()
            .await
            .into_iter()
            .filter(|i| i.id.app == app.as_str())
            .collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        instances
    }

    /// How many instances the app should have now.
    pub(crate) fn desired(&self, app: &AppName, record: &AppRecord) -> u32 {
        match record.release {
            None => 0,
            Some(number) => record
                .scale_override
                .or_else(|| self.release(app, number).and_then(|r| r.scale))
                .unwrap_or(nap_profile::DEFAULT_SCALE),
        }
    }
}
