//! Certificates on disk, one entry per host, and the resolver that serves
//! them.
//!
//! ```text
//! certs/
//!   acme/account.json                  the ACME account (key inside, 0600)
//!   hosts/www.example.com -> ../versions/www.example.com@3
//!   versions/www.example.com@3/
//!     chain.pem                        leaf first, then intermediates (0644)
//!     key.pem                          the private key (0600)
//!     cert.json                        the record: source, names, dates, last attempt
//! ```
//!
//! A certificate and its key must change together, and no single rename
//! replaces two files. So each version lives in its own directory, written
//! and synced completely before the host's link is switched to it by one
//! atomic rename. A reader (rustls at startup, `cat hosts/HOST/key.pem`) sees
//! the old pair or the new pair, never a mix, whenever the machine stops.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::certificate::{CheckError, CheckedCertificate};
use crate::host::HostName;
use crate::record::{Attempt, CertRecord, CertificateRecord, Source, Timestamp};
use crate::tls::{CertResolver, HttpsAcceptor, TlsSetupError, server_config};

const HOSTS_DIR: &str = "hosts";
const VERSIONS_DIR: &str = "versions";
const ACME_DIR: &str = "acme";
const ACCOUNT_FILE: &str = "account.json";
const CHAIN_FILE: &str = "chain.pem";
const KEY_FILE: &str = "key.pem";
const RECORD_FILE: &str = "cert.json";

/// A certificate entry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CertStoreError {
    /// Reading or writing a file failed, or a record is not valid JSON.
    #[error(transparent)]
    File(#[from] nap_store::StoreError),
    /// A directory or link operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file, directory or link.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The entry's PEM files do not hold a usable chain and key.
    #[error("{path}: the stored certificate is unusable: {source}")]
    Unusable {
        /// The entry's directory.
        path: PathBuf,
        /// What is wrong with it.
        source: CheckError,
    },
    /// Something in `hosts/` that nap did not make.
    #[error("{path}: not an entry made by nap (expected a link to ../{VERSIONS_DIR}/HOST@N)")]
    Foreign {
        /// The odd entry.
        path: PathBuf,
    },
    /// The entry has no `cert.json`.
    #[error("{path}: the record is missing")]
    MissingRecord {
        /// Where it should be.
        path: PathBuf,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CertStoreError + '_ {
    move |source| CertStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// When certificates are due for renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalPolicy {
    /// Renew this long before a certificate expires (30 days, as certbot
    /// does for Let's Encrypt's 90-day certificates).
    pub renew_before: Duration,
    /// After a failed attempt, wait this long before the next (1 hour:
    /// Let's Encrypt allows 5 failed validations per host and hour).
    pub retry_failed_after: Duration,
}

impl Default for RenewalPolicy {
    fn default() -> RenewalPolicy {
        RenewalPolicy {
            renew_before: Duration::from_secs(30 * 24 * 3600),
            retry_failed_after: Duration::from_secs(3600),
        }
    }
}

/// A host whose certificate is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The host.
    pub host: HostName,
    /// The certificate's source and expiry; `None` when nap has tried and
    /// failed to get a first one.
    pub current: Option<(Source, Timestamp)>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

/// The certificates of every host, under one directory (`DATA/certs`), and
/// the resolver that serves them. Every change goes through the store, which
/// updates the resolver at once: a certificate saved is served by the next
/// handshake. One store per directory and process; it serialises its own
/// writes.
#[derive(Debug)]
pub struct CertStore {
    dir: PathBuf,
    resolver: Arc<CertResolver>,
    writing: Mutex<()>,
}

impl CertStore {
    /// Opens the store at `dir`, creating it (mode 0700) if needed, removes
    /// what an interrupted write left behind, and loads every certificate
    /// into the resolver. An entry that cannot be loaded is logged and not
    /// served; the others still are.
    pub fn open(dir: &Path) -> Result<CertStore, CertStoreError> {
        for sub in [
            dir.to_owned(),
            dir.join(HOSTS_DIR),
            dir.join(VERSIONS_DIR),
            dir.join(ACME_DIR),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&sub)
                .map_err(io_error(&sub))?;
        }
        let store = CertStore {
            dir: dir.to_owned(),
            resolver: Arc::default(),
            writing: Mutex::new(()),
        };
        store.remove_leftovers()?;
        for host in store.hosts()? {
            match store.load(&host) {
                Ok((_, Some(certificate))) => {
                    store.resolver.insert(host, certificate.certified_key());
                }
                Ok((_, None)) => {}
                Err(error) => tracing::warn!(%host, %error, "certificate not served"),
            }
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The resolver the HTTPS listener picks certificates from.
    pub fn resolver(&self) -> Arc<CertResolver> {
        Arc::clone(&self.resolver)
    }

    /// The rustls config of the HTTPS listener, serving this store's
    /// certificates (see [`server_config`]).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
        server_config(self.resolver())
    }

    /// The acceptor of the HTTPS listener, on [`CertStore::server_config`]:
    /// what the router needs, without naming a rustls type.
    pub fn https_acceptor(
        &self,
        handshake_timeout: Duration,
    ) -> Result<HttpsAcceptor, TlsSetupError> {
        Ok(HttpsAcceptor::new(self.server_config()?, handshake_timeout))
    }

    /// Where the ACME account is kept.
    pub(crate) fn account_file(&self) -> PathBuf {
        self.dir.join(ACME_DIR).join(ACCOUNT_FILE)
    }

    /// Every host with an entry (a certificate, or a failed first attempt), sorted.
    pub fn hosts(&self) -> Result<Vec<HostName>, CertStoreError> {
        let hosts_dir = self.dir.join(HOSTS_DIR);
        let mut hosts = Vec::new();
        for entry in fs::read_dir(&hosts_dir).map_err(io_error(&hosts_dir))? {
            let entry = entry.map_err(io_error(&hosts_dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            match HostName::parse(name) {
                Ok(host) if host.as_str() == name => hosts.push(host),
                _ => {
                    tracing::warn!(path = %entry.path().display(), "ignoring a file nap did not make")
                }
            }
        }
        hosts.sort();
        Ok(hosts)
    }

    /// The record of `host`, `None` if it has no entry.
    pub fn record(&self, host: &HostName) -> Result<Option<CertRecord>, CertStoreError> {
        let Some(version) = self.current_version(host)? else {
            return Ok(None);
        };
        self.read_record(&self.version_dir(host, version)).map(Some)
    }

    /// Stores `certificate` for `host`, replacing what was there, and serves
    /// it from the next handshake. An ACME certificate records a successful
    /// attempt at `now`.
    pub fn save(
        &self,
        host: &HostName,
        certificate: &CheckedCertificate,
        source: Source,
        now: SystemTime,
    ) -> Result<CertRecord, CertStoreError> {
        let info = certificate.info();
        let record = CertRecord {
            host: host.to_string(),
            certificate: Some(CertificateRecord {
                source,
                names: info.names.clone(),
                issuer: info.issuer.clone(),
                serial: info.serial.clone(),
                not_before: info.not_before,
                not_after: info.not_after,
                stored_at: Timestamp::new(now),
            }),
            last_attempt: (source == Source::Acme).then(|| Attempt {
                at: Timestamp::new(now),
                error: None,
            }),
        };
        let _writing = self.lock();
        self.write_version(host, &record, Some(certificate))?;
        self.resolver
            .insert(host.clone(), certificate.certified_key());
        tracing::info!(%host, %source, not_after = %info.not_after, "certificate stored");
        Ok(record)
    }

    /// Records that ordering a certificate for `host` failed at `now` with
    /// `error`. The certificate (if any) stays and is still served; a host
    /// without one gets an entry that holds only the record.
    pub fn record_failure(
        &self,
        host: &HostName,
        now: SystemTime,
        error: &str,
    ) -> Result<CertRecord, CertStoreError> {
        let attempt = Attempt {
            at: Timestamp::new(now),
            error: Some(error.to_owned()),
        };
        let _writing = self.lock();
        match self.current_version(host)? {
            Some(version) => {
                let dir = self.version_dir(host, version);
                let mut record = self.read_record(&dir)?;
                record.last_attempt = Some(attempt);
                nap_store::write_json(&dir.join(RECORD_FILE), &record)?;
                Ok(record)
            }
            None => {
                let record = CertRecord {
                    host: host.to_string(),
                    certificate: None,
                    last_attempt: Some(attempt),
                };
                self.write_version(host, &record, None)?;
                Ok(record)
            }
        }
    }

    /// Removes the entry of `host` and stops serving it; `false` if there
    /// was none.
    pub fn remove(&self, host: &HostName) -> Result<bool, CertStoreError> {
        let _writing = self.lock();
        let Some(version) = self.current_version(host)? else {
            return Ok(false);
        };
        self.resolver.remove(host);
        let link = self.link(host);
        fs::remove_file(&link).map_err(io_error(&link))?;
        sync_dir(&self.dir.join(HOSTS_DIR))?;
        let dir = self.version_dir(host, version);
        fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
        tracing::info!(%host, "certificate removed");
        Ok(true)
    }

    /// The hosts due for renewal at `now`, soonest expiry first: those whose
    /// certificate expires within `policy.renew_before`, and those that have
    /// an entry but no certificate yet, skipping any whose last attempt
    /// failed less than `policy.retry_failed_after` ago. Uploaded
    /// certificates are included (with their source); whether to replace
    /// them by ACME is the caller's decision.
    pub fn due(&self, now: SystemTime, policy: &RenewalPolicy) -> Result<Vec<Due>, CertStoreError> {
        let mut due = Vec::new();
        for host in self.hosts()? {
            let record = match self.record(&host) {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                // One odd entry must not stop the renewal of the others.
                Err(error) => {
                    tracing::warn!(%host, %error, "certificate entry unreadable");
                    continue;
                }
            };
            let expiring = match &record.certificate {
                Some(certificate) => {
                    now + policy.renew_before >= certificate.not_after.system_time()
                }
                None => true,
            };
            let last_error = record
                .last_attempt
                .as_ref()
                .and_then(|attempt| attempt.error.clone());
            let failed_recently = record.last_attempt.as_ref().is_some_and(|attempt| {
                attempt.error.is_some()
                    && now < attempt.at.system_time() + policy.retry_failed_after
            });
            if expiring && !failed_recently {
                due.push(Due {
                    host,
                    current: record
                        .certificate
                        .map(|certificate| (certificate.source, certificate.not_after)),
                    last_error,
                });
            }
        }
        due.sort_by_key(|entry| entry.current.map(|(_, not_after)| not_after));
        Ok(due)
    }

    /// Reads the entry of `host`: its record and, if it has one, its
    /// certificate (dates not checked).
    fn load(
        &self,
        host: &HostName,
    ) -> Result<(CertRecord, Option<CheckedCertificate>), CertStoreError> {
        let version = self
            .current_version(host)?
            .ok_or_else(|| CertStoreError::Foreign {
                path: self.link(host),
            })?;
        // Read through the version directory, not the link: a link switched
        // between reading the chain and the key would pair the wrong two.
        let dir = self.version_dir(host, version);
        let record = self.read_record(&dir)?;
        if record.certificate.is_none() {
            return Ok((record, None));
        }
        let mut pem = read(&dir.join(CHAIN_FILE))?;
        pem.push(b'\n');
        pem.extend(read(&dir.join(KEY_FILE))?);
        let certificate = CheckedCertificate::parse_any_time(&pem).map_err(|source| {
            CertStoreError::Unusable {
                path: dir.clone(),
                source,
            }
        })?;
        Ok((record, Some(certificate)))
    }

    fn read_record(&self, dir: &Path) -> Result<CertRecord, CertStoreError> {
        let path = dir.join(RECORD_FILE);
        nap_store::read_json(&path)?.ok_or(CertStoreError::MissingRecord { path })
    }

    /// Writes a complete new version of `host`'s entry and switches the
    /// host's link to it; the previous version is deleted afterwards.
    /// Called with the write lock held.
    fn write_version(
        &self,
        host: &HostName,
        record: &CertRecord,
        certificate: Option<&CheckedCertificate>,
    ) -> Result<(), CertStoreError> {
        let previous = self.current_version(host)?;
        let version = previous.map_or(1, |version| version + 1);
        let dir = self.version_dir(host, version);
        if dir.exists() {
            // Left by a write that stopped before its link was switched.
            fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_error(&dir))?;
        if let Some(certificate) = certificate {
            nap_store::atomic_write(
                &dir.join(CHAIN_FILE),
                certificate.chain_pem().as_bytes(),
                0o644,
            )?;
            nap_store::atomic_write(&dir.join(KEY_FILE), certificate.key_pem().as_bytes(), 0o600)?;
        }
        nap_store::write_json(&dir.join(RECORD_FILE), record)?;

        let hosts_dir = self.dir.join(HOSTS_DIR);
        let temporary_link = hosts_dir.join(format!(".{host}.link"));
        match fs::remove_file(&temporary_link) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(&temporary_link)(error)),
        }
        std::os::unix::fs::symlink(link_target(host, version), &temporary_link)
            .map_err(io_error(&temporary_link))?;
        let link = self.link(host);
        fs::rename(&temporary_link, &link).map_err(io_error(&link))?;
        sync_dir(&hosts_dir)?;

        if let Some(previous) = previous {
            let old = self.version_dir(host, previous);
            if let Err(error) = fs::remove_dir_all(&old) {
                // Harmless: the next open removes it.
                tracing::warn!(path = %old.display(), %error, "old certificate version not removed");
            }
        }
        Ok(())
    }

    /// The version `host`'s link points to; `None` without a link.
    fn current_version(&self, host: &HostName) -> Result<Option<u64>, CertStoreError> {
        let link = self.link(host);
        let target = match fs::read_link(&link) {
            Ok(target) => target,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::InvalidInput => {
                return Err(CertStoreError::Foreign { path: link });
            }
            Err(error) => return Err(io_error(&link)(error)),
        };
        let version = target
            .to_str()
            .and_then(|target| target.strip_prefix(&format!("../{VERSIONS_DIR}/{host}@")))
            .and_then(|number| number.parse().ok());
        match version {
            Some(version) => Ok(Some(version)),
            None => Err(CertStoreError::Foreign { path: link }),
        }
    }

    fn link(&self, host: &HostName) -> PathBuf {
        self.dir.join(HOSTS_DIR).join(host.as_str())
    }

    fn version_dir(&self, host: &HostName, version: u64) -> PathBuf {
        self.dir
            .join(VERSIONS_DIR)
            .join(format!("{host}@{version}"))
    }

    /// Removes versions no link points to and temporary links and files of
    /// writes that were interrupted.
    fn remove_leftovers(&self) -> Result<(), CertStoreError> {
        let hosts_dir = self.dir.join(HOSTS_DIR);
        let mut current = Vec::new();
        for entry in fs::read_dir(&hosts_dir).map_err(io_error(&hosts_dir))? {
            let entry = entry.map_err(io_error(&hosts_dir))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_error(&path))?;
                continue;
            }
            if let Ok(host) = HostName::parse(&name.to_string_lossy())
                && let Ok(Some(version)) = self.current_version(&host)
            {
                current.push(format!("{host}@{version}"));
            }
        }
        let versions_dir = self.dir.join(VERSIONS_DIR);
        for entry in fs::read_dir(&versions_dir).map_err(io_error(&versions_dir))? {
            let entry = entry.map_err(io_error(&versions_dir))?;
            let path = entry.path();
            if current.contains(&entry.file_name().to_string_lossy().into_owned()) {
                remove_temporary_files(&path)?;
            } else {
                tracing::info!(path = %path.display(), "removing an unused certificate version");
                fs::remove_dir_all(&path).map_err(io_error(&path))?;
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data, only the order of writes.
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn link_target(host: &HostName, version: u64) -> PathBuf {
    PathBuf::from(format!("../{VERSIONS_DIR}/{host}@{version}"))
}

fn read(path: &Path) -> Result<Vec<u8>, CertStoreError> {
    fs::read(path).map_err(io_error(path))
}

/// `atomic_write` leaves `.NAME.tmp-PID` behind only when it was stopped
/// half-way; such files are never part of a version.
fn remove_temporary_files(dir: &Path) -> Result<(), CertStoreError> {
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_error(&path))?;
        }
    }
    Ok(())
}

/// A rename or unlink is durable only once its directory is synced.
fn sync_dir(dir: &Path) -> Result<(), CertStoreError> {
    fs::File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(io_error(dir))
}
