//! Custom hosts: which app each one belongs to, and each app's HTTPS
//! settings, in one index (`DATA/domains.json`).
//!
//! One file rather than a list per app, because the rule that matters is
//! across apps: a host belongs to at most one. The index is held in memory
//! and every change is made to a copy, written atomically and only then made
//! current, under one lock; so two `domains:add` of the same host can never
//! both win, and a change that could not be saved changed nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};

use nap_core::{AppName, HostName};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The file, as an operator reads it:
///
/// ```json
/// {
///   "hosts": { "www.example.com": "web" },
///   "apps": { "web": { "https_redirect": true, "acme": true } }
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainIndex {
    /// Every custom host and the app it belongs to.
    #[serde(default)]
    pub hosts: BTreeMap<HostName, String>,
    /// The HTTPS settings of apps that have any (absent: the defaults).
    #[serde(default)]
    pub apps: BTreeMap<String, AppHttps>,
}

/// One app's HTTPS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppHttps {
    /// Redirect plain-HTTP requests for the app's hosts to HTTPS (308), for
    /// each host that has a certificate.
    #[serde(default)]
    pub https_redirect: bool,
    /// Get and renew the app's certificates from ACME; `None` follows the
    /// daemon's `acme_auto` setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<bool>,
}

impl AppHttps {
    fn is_default(&self) -> bool {
        *self == AppHttps::default()
    }
}

impl DomainIndex {
    /// The hosts of `app`, sorted.
    pub fn hosts_of(&self, app: &str) -> Vec<HostName> {
        self.hosts
            .iter()
            .filter(|(_, owner)| owner.as_str() == app)
            .map(|(host, _)| host.clone())
            .collect()
    }

    /// The settings of `app`.
    pub fn settings(&self, app: &str) -> AppHttps {
        self.apps.get(app).cloned().unwrap_or_default()
    }
}

/// Why a host could not be added or removed. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The host is another app's. The message the caller sees is made by the
    /// command, which knows whether it may name that app.
    #[error("{host} is a domain of app {app}")]
    Taken {
        /// The host.
        host: HostName,
        /// The app it belongs to.
        app: String,
    },
    /// The host is not a domain of the app.
    #[error("{host} is not a domain of {app}")]
    NotThere {
        /// The host.
        host: HostName,
        /// The app.
        app: AppName,
    },
    /// Too many hosts for one app.
    #[error("{app} has {limit} domains already, the most an app may have")]
    TooMany {
        /// The app.
        app: AppName,
        /// The limit.
        limit: usize,
    },
    /// The index could not be saved.
    #[error(transparent)]
    Store(#[from] nap_store::StoreError),
}

/// What `add` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// The host is the app's now.
    Added,
    /// It was already; nothing changed.
    AlreadyThere,
}

/// Most hosts one app may have: a certificate per host is ordered and renewed,
/// and an ACME CA limits orders per account.
pub const MAX_HOSTS_PER_APP: usize = 100;

/// The index, in memory and on disk.
pub struct Domains {
    path: PathBuf,
    /// What readers see: held only to copy or swap, never across a write.
    index: RwLock<DomainIndex>,
    /// One change at a time, held while the file is written.
    writer: Mutex<()>,
    /// Bumped after every change, so the router's routes follow.
    changed: watch::Sender<u64>,
}

impl Domains {
    /// Reads the index at `path` (none yet: empty).
    pub fn load(path: PathBuf) -> Result<Domains, nap_store::StoreError> {
        let index = nap_store::read_json(&path)?.unwrap_or_default();
        Ok(Domains {
            path,
            index: RwLock::new(index),
            writer: Mutex::new(()),
            changed: watch::Sender::new(0),
        })
    }

    /// The index as it is now.
    pub fn snapshot(&self) -> DomainIndex {
        self.read().clone()
    }

    /// Learns of every change from now on.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The hosts of `app`, sorted.
    pub fn hosts_of(&self, app: &AppName) -> Vec<HostName> {
        self.read().hosts_of(app.as_str())
    }

    /// The settings of `app`.
    pub fn settings(&self, app: &AppName) -> AppHttps {
        self.read().settings(app.as_str())
    }

    /// The app `host` belongs to, if any.
    pub fn app_of(&self, host: &HostName) -> Option<String> {
        self.read().hosts.get(host).cloned()
    }

    /// Gives `host` to `app`, unless it is another app's.
    pub fn add(&self, app: &AppName, host: &HostName) -> Result<Added, DomainError> {
        self.change(|index| {
            match index.hosts.get(host) {
                Some(owner) if owner == app.as_str() => return Ok(Added::AlreadyThere),
                Some(owner) => {
                    return Err(DomainError::Taken {
                        host: host.clone(),
                        app: owner.clone(),
                    });
                }
                None => {}
            }
            if index.hosts_of(app.as_str()).len() >= MAX_HOSTS_PER_APP {
                return Err(DomainError::TooMany {
                    app: app.clone(),
                    limit: MAX_HOSTS_PER_APP,
                });
            }
            index.hosts.insert(host.clone(), app.to_string());
            Ok(Added::Added)
        })
    }

    /// Takes `host` away from `app`.
    pub fn remove(&self, app: &AppName, host: &HostName) -> Result<(), DomainError> {
        self.change(|index| match index.hosts.get(host) {
            Some(owner) if owner == app.as_str() => {
                index.hosts.remove(host);
                Ok(())
            }
            _ => Err(DomainError::NotThere {
                host: host.clone(),
                app: app.clone(),
            }),
        })
    }

    /// Changes `app`'s settings with `update`; returns the new settings.
    pub fn update_settings(
        &self,
        app: &AppName,
        update: impl FnOnce(&mut AppHttps),
    ) -> Result<AppHttps, DomainError> {
        self.change(|index| {
            let mut settings = index.settings(app.as_str());
            update(&mut settings);
            if settings.is_default() {
                index.apps.remove(app.as_str());
            } else {
                index.apps.insert(app.to_string(), settings.clone());
            }
            Ok(settings)
        })
    }

    /// Forgets everything of `app` (it is being destroyed); returns the hosts
    /// it had, now free.
    pub fn forget_app(&self, app: &AppName) -> Result<Vec<HostName>, DomainError> {
        self.change(|index| {
            let hosts = index.hosts_of(app.as_str());
            for host in &hosts {
                index.hosts.remove(host);
            }
            index.apps.remove(app.as_str());
            Ok(hosts)
        })
    }

    /// Applies `change` to a copy, saves the copy if it changed, and only
    /// then makes it current.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut DomainIndex) -> Result<T, DomainError>,
    ) -> Result<T, DomainError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut copy = self.read().clone();
        let result = change(&mut copy)?;
        if copy != *self.read() {
            nap_store::write_json(&self.path, &copy)?;
            *self.write() = copy;
            self.changed
                .send_modify(|version| *version = version.wrapping_add(1));
        }
        Ok(result)
    }

    fn read(&self) -> RwLockReadGuard<'_, DomainIndex> {
        // The index is replaced whole, never left half-changed.
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, DomainIndex> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> HostName {
        HostName::parse(name).unwrap()
    }

    fn app(name: &str) -> AppName {
        AppName::parse(name).unwrap()
    }

    #[test]
    fn a_host_belongs_to_one_app_and_the_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("domains.json");
        let domains = Domains::load(path.clone()).unwrap();
        let mut changes = domains.changes();
        assert_eq!(
            domains.add(&app("web"), &host("www.example.com")).unwrap(),
            Added::Added
        );
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert_eq!(
            domains.add(&app("web"), &host("www.example.com")).unwrap(),
            Added::AlreadyThere
        );
        assert!(!changes.has_changed().unwrap(), "nothing changed");
        let taken = domains
            .add(&app("shop"), &host("www.example.com"))
            .unwrap_err();
        assert!(matches!(taken, DomainError::Taken { app, .. } if app == "web"));
        domains
            .update_settings(&app("web"), |settings| settings.https_redirect = true)
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"www.example.com\": \"web\"")
                && text.contains("\"https_redirect\": true"),
            "{text}"
        );
        let again = Domains::load(path.clone()).unwrap();
        assert_eq!(again.snapshot(), domains.snapshot());

        assert!(matches!(
            domains.remove(&app("shop"), &host("www.example.com")),
            Err(DomainError::NotThere { .. })
        ));
        assert_eq!(
            domains.forget_app(&app("web")).unwrap(),
            vec![host("www.example.com")]
        );
        assert_eq!(domains.snapshot(), DomainIndex::default());
    }

    #[test]
    fn two_apps_racing_for_one_host_cannot_both_win() {
        let dir = tempfile::tempdir().unwrap();
        let domains = std::sync::Arc::new(Domains::load(dir.path().join("domains.json")).unwrap());
        let winners: usize = (0..8)
            .map(|n| {
                let domains = domains.clone();
                std::thread::spawn(move || {
                    domains
                        .add(&app(&format!("app{n}")), &host("contested.example.com"))
                        .is_ok()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|thread| usize::from(thread.join().unwrap()))
            .sum();
        assert_eq!(winners, 1);
    }

    #[test]
    fn a_failed_save_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should go: the write fails.
        let path = dir.path().join("domains.json");
        std::fs::create_dir(&path).unwrap();
        let domains = Domains {
            path,
            index: RwLock::default(),
            writer: Mutex::new(()),
            changed: watch::Sender::new(0),
        };
        assert!(matches!(
            domains.add(&app("web"), &host("www.example.com")),
            Err(DomainError::Store(_))
        ));
        assert_eq!(domains.snapshot(), DomainIndex::default());
    }
}
