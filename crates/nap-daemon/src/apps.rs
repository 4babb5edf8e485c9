//! Apps: their records, creation on first push, and the access check in front
//! of every use.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use nap_core::{AccessError, Action, AppName, Caller, NameError, check_access};
use nap_store::{AppRecord, DataDir, StoreError};
use tokio::sync::Mutex;

/// An app could not be found, created or used.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    /// Bad name; nothing was touched.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Refused by the access rule.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The data directory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The name is taken.
    #[error("app {0} already exists; pick another name")]
    Taken(String),
    /// The repository could not be created.
    #[error("cannot create the repository of {app}: {message}")]
    Repo {
        /// The app.
        app: String,
        /// What went wrong.
        message: String,
    },
    /// Every uid of the range belongs to an app already.
    #[error(
        "no uid left for {app}: all {count} uids of app_uid_range {first}-{last} belong to \
         apps; widen app_uid_range in nap's config file, or destroy apps that are not used"
    )]
    NoFreeUid {
        /// The app that needs one.
        app: String,
        /// First uid of the range.
        first: u32,
        /// Last uid of the range.
        last: u32,
        /// How many uids the range has.
        count: u64,
    },
}

pub struct Apps {
    data: DataDir,
    /// The nap binary, which every repository's pre-receive hook is a link to.
    nap_bin: PathBuf,
    /// Creating an app is rare; one lock keeps two first pushes to one
    /// name from both creating it.
    create: Mutex<()>,
    /// Bumped whenever an app comes into being or is forgotten, so that the
    /// router's routes follow without reading the apps directory per request.
    changed: tokio::sync::watch::Sender<u64>,
    /// Where each app's own uid comes from, when apps get one (nap runs as root and
    /// sandboxes them). A uid is given under the creation lock, so no two apps share one.
    uids: Option<RangeInclusive<u32>>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Apps {
    /// The apps of `data`; each new app gets a uid of its own from `uids`, when given.
    pub fn new(data: DataDir, uids: Option<RangeInclusive<u32>>, nap_bin: PathBuf) -> Apps {
        Apps {
            data,
            nap_bin,
            create: Mutex::new(()),
            changed: tokio::sync::watch::Sender::new(0),
            uids,
        }
    }

    /// A uid for `app` that no app has, when apps get uids. The caller holds the creation
    /// lock, so nobody else is giving one out meanwhile. A destroyed app's uid is free
    /// again: by the time its record is gone its processes and its storage are too.
    fn next_uid(&self, app: &AppName) -> Result<Option<u32>, AppsError> {
        let Some(range) = &self.uids else {
            return Ok(None);
        };
        let everyone = Caller {
            user: String::new(),
            admin: true,
        };
        let taken: BTreeSet<u32> = self
            .visible(&everyone)?
            .into_iter()
            .filter_map(|(_, record)| record.uid)
            .collect();
        match crate::isolation::free_uid(range, &taken) {
            Some(uid) => Ok(Some(uid)),
            None => Err(AppsError::NoFreeUid {
                app: app.to_string(),
                first: *range.start(),
                last: *range.end(),
                count: u64::from(*range.end()) - u64::from(*range.start()) + 1,
            }),
        }
    }

    /// Gives every app that has no uid yet one of its own (apps made before nap gave out
    /// uids, or while it ran without a sandbox). Returns how many got one.
    pub async fn assign_missing_uids(&self) -> Result<usize, AppsError> {
        if self.uids.is_none() {
            return Ok(0);
        }
        let _guard = self.create.lock().await;
        let everyone = Caller {
            user: String::new(),
            admin: true,
        };
        let mut assigned = 0;
        for (app, mut record) in self.visible(&everyone)? {
            if record.uid.is_some() {
                continue;
            }
            record.uid = self.next_uid(&app)?;
            self.save(&app, &record)?;
            tracing::info!(app = %app, uid = ?record.uid, "app got a uid of its own");
            assigned += 1;
        }
        Ok(assigned)
    }

    /// Learns of every app created or forgotten from now on.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Says that the set of apps changed (an app was created or removed).
    pub fn announce_change(&self) {
        self.changed
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    pub fn record(&self, app: &AppName) -> Result<Option<AppRecord>, StoreError> {
        nap_store::read_json(&self.data.app_record(app.as_str()))
    }

    pub fn save(&self, app: &AppName, record: &AppRecord) -> Result<(), StoreError> {
        nap_store::write_json(&self.data.app_record(app.as_str()), record)
    }

    /// Checks the name, then the access rule: the one gate in front of every
    /// app operation, whatever door the request came through.
    pub fn authorize(
        &self,
        caller: &Caller,
        name: &str,
        action: Action,
    ) -> Result<(AppName, Option<AppRecord>), AppsError> {
        let app = AppName::parse(name)?;
        let record = self.record(&app)?;
        check_access(
            caller,
            &app,
            record.as_ref().map(|r| r.owner.as_str()),
            action,
        )?;
        Ok((app, record))
    }

    /// Like [`Apps::authorize`] for an app that must exist.
    pub fn existing(
        &self,
        caller: &Caller,
        name: &str,
        action: Action,
    ) -> Result<(AppName, AppRecord), AppsError> {
        let (app, record) = self.authorize(caller, name, action)?;
        match record {
            Some(record) => Ok((app, record)),
            None => Err(AccessError::NoSuchApp(app.to_string()).into()),
        }
    }

    /// Returns the app's record, creating the app (repository with its hook,
    /// then the record) owned by `caller` if it does not exist yet.
    pub async fn create_or_get(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(AppName, AppRecord), AppsError> {
        let _guard = self.create.lock().await;
        let (app, record) = self.authorize(caller, name, Action::CreateOrWrite)?;
        if let Some(record) = record {
            return Ok((app, record));
        }
        self.create_locked(caller, app, AppRecord::default())
    }

    /// Creates `app` for `caller` with `record` (its owner, creation time and uid set here).
    /// The caller holds the creation lock and has seen that the app has no record.
    fn create_locked(
        &self,
        caller: &Caller,
        app: AppName,
        record: AppRecord,
    ) -> Result<(AppName, AppRecord), AppsError> {
        // Before anything is made: a full uid range refuses the app and changes nothing.
        let uid = self.next_uid(&app)?;
        let repo = self.data.repo(app.as_str());
        let storage = self.data.app_storage(app.as_str());
        let staging = self.data.repos().join(format!(".{app}.git.creating"));
        let repo_error = |message: String| AppsError::Repo {
            app: app.to_string(),
            message,
        };
        // Leftovers of a crash half-way through an earlier creation, and the storage of an
        // app of this name that a destroy could not delete: a new app starts empty.
        for stale in [&staging, &repo] {
            if stale.exists() {
                std::fs::remove_dir_all(stale).map_err(|e| repo_error(e.to_string()))?;
            }
        }
        for leftover in [storage, self.data.app_cache(app.as_str())] {
            crate::isolation::remove_storage(&leftover).map_err(|source| StoreError::Io {
                path: leftover.clone(),
                source,
            })?;
        }
        let created = (|| {
            nap_git::init_bare(&staging).map_err(|e| repo_error(e.to_string()))?;
            crate::hook::install(&staging, &self.nap_bin).map_err(|source| StoreError::Io {
                path: staging.join(crate::hook::HOOK),
                source,
            })?;
            std::fs::rename(&staging, &repo).map_err(|e| repo_error(e.to_string()))?;
            nap_store::create_dir(&self.data.app(app.as_str()))?;
            let record = AppRecord {
                owner: caller.user.clone(),
                created: now(),
                uid,
                ..record
            };
            self.save(&app, &record)?;
            Ok::<_, AppsError>(record)
        })();
        match created {
            Ok(record) => {
                tracing::info!(app = %app, owner = %caller.user, uid = ?record.uid, "app created");
                self.announce_change();
                Ok((app, record))
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                let _ = std::fs::remove_dir_all(&repo);
                let _ = std::fs::remove_dir_all(self.data.app(app.as_str()));
                Err(e)
            }
        }
    }

    /// Creates app `name` for `caller`, refusing a name that is taken (by
    /// anyone: "similar apps" and deploys from URLs make new apps only).
    pub async fn create_new(
        &self,
        caller: &Caller,
        name: &str,
        similar_to: Option<&str>,
    ) -> Result<(AppName, AppRecord), AppsError> {
        let app = AppName::parse(name)?;
        // The check and the creation are one step under the creation lock: of two
        // creations of one name, exactly one creates it and the other is refused, so
        // the loser's cleanup never touches the winner's app.
        let _guard = self.create.lock().await;
        if self.record(&app)?.is_some() {
            return Err(AppsError::Taken(app.to_string()));
        }
        self.create_locked(
            caller,
            app,
            AppRecord {
                similar_to: similar_to.map(str::to_owned),
                ..AppRecord::default()
            },
        )
    }

    /// Every app `caller` may see, by name.
    pub fn visible(&self, caller: &Caller) -> Result<Vec<(AppName, AppRecord)>, AppsError> {
        let mut apps = Vec::new();
        let entries = match std::fs::read_dir(self.data.apps()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(apps),
            Err(source) => {
                return Err(StoreError::Io {
                    path: self.data.apps(),
                    source,
                }
                .into());
            }
        };
        for entry in entries.flatten() {
            let Some(app) = entry
                .file_name()
                .to_str()
                .and_then(|n| AppName::parse(n).ok())
            else {
                continue;
            };
            if let Some(record) = self.record(&app)?
                && check_access(caller, &app, Some(&record.owner), Action::Read).is_ok()
            {
                apps.push((app, record));
            }
        }
        apps.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(apps)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Issue 13: two `deploy twin --from` of one user both passed, and the one whose
    /// fetch failed removed the other's app. Both creations are lined up behind the
    /// creation lock, so that when it is let go they run as interleaved as the runtime
    /// can make them: a check and a creation that are two steps would both pass.
    #[tokio::test]
    async fn of_two_creations_of_one_name_exactly_one_makes_the_app() {
        let dir = tempfile::tempdir().expect("temp dir");
        let apps = Arc::new(Apps::new(
            DataDir::new(dir.path()).expect("data dir"),
            None,
            PathBuf::from("/bin/false"),
        ));
        let alice = Caller {
            user: "alice".to_owned(),
            admin: false,
        };
        let held = apps.create.lock().await;
        let creations: Vec<_> = (0..2)
            .map(|_| {
                let (apps, alice) = (apps.clone(), alice.clone());
                tokio::spawn(async move { apps.create_new(&alice, "twin", None).await })
            })
            .collect();
        // One thread runs this test: yielding lets both creations run until they wait.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        drop(held);
        let mut made = 0;
        for creation in creations {
            match creation.await.expect("the creation ran") {
                Ok((app, record)) => {
                    assert_eq!((app.as_str(), record.owner.as_str()), ("twin", "alice"));
                    made += 1;
                }
                Err(AppsError::Taken(name)) => assert_eq!(name, "twin"),
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(made, 1, "both creations passed");
        let twin = AppName::parse("twin").expect("a name");
        assert!(apps.record(&twin).expect("readable").is_some());
    }
}
