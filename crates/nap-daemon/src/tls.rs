//! Certificates of the custom hosts: the store the router's HTTPS listener
//! serves from, the ACME client whose HTTP-01 challenges the router's
//! plain-HTTP listener answers, and the renewal task.
//!
//! nap-certs does the TLS, X.509 and ACME; this module decides *which* hosts
//! get a certificate from ACME and when: the hosts of the apps whose
//! certificates are automatic (`certs:auto APP`, or the `acme_auto` default),
//! when they have none or theirs expires within the renewal window.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nap_certs::{
    Acme, AcmeOptions, CertRecord, CertStore, Challenges, HostName, RenewError, RenewalPolicy,
    Source,
};
use nap_core::AppName;
use tokio::sync::{Notify, watch};

use crate::Daemon;

/// How often the renewal task looks, besides at start and when woken.
const RENEWAL_CHECK_EVERY: Duration = Duration::from_secs(3600);

/// Where and how nap orders certificates.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The ACME server's directory URL.
    pub directory: String,
    /// Contacts for the account (`mailto:` is added to a bare address).
    pub contact: Vec<String>,
    /// The one root to trust for the ACME server's own HTTPS (a private or
    /// test CA); `None` trusts the system's roots.
    pub root: Option<PathBuf>,
    /// Whether an app without a setting of its own gets its certificates from
    /// ACME.
    pub auto_default: bool,
}

impl Default for AcmeSettings {
    fn default() -> AcmeSettings {
        AcmeSettings {
            directory: nap_certs::LETS_ENCRYPT_DIRECTORY.to_owned(),
            contact: Vec::new(),
            root: None,
            auto_default: false,
        }
    }
}

/// The daemon's certificates and ACME client.
pub struct Tls {
    /// Every host's certificate, and the resolver the HTTPS listener uses.
    pub store: CertStore,
    /// The challenges in flight, which the router answers.
    pub challenges: Challenges,
    acme: Acme,
    /// One ACME order at a time, whoever asks (`certs:auto`, the renewal task):
    /// never two orders for one host, and the CA's rate limits are spent slowly.
    ordering: tokio::sync::Mutex<()>,
    /// Wakes the renewal task before its hour is up.
    wake: Notify,
    /// Bumped after a certificate is stored or removed: the router redirects a
    /// host to HTTPS only while it has one.
    changed: watch::Sender<u64>,
    /// When certificates are renewed.
    pub policy: RenewalPolicy,
    auto_default: bool,
}

impl Tls {
    /// Opens the store in `dir` and makes the ACME client (which sends nothing
    /// before its first order).
    pub fn open(
        dir: &std::path::Path,
        settings: &AcmeSettings,
    ) -> Result<Tls, nap_certs::CertStoreError> {
        let store = CertStore::open(dir)?;
        let challenges = Challenges::new();
        let mut options = AcmeOptions::new(settings.directory.clone());
        options.contact = settings.contact.clone();
        options.root_certificate = settings.root.clone();
        let acme = Acme::new(&store, options, challenges.clone());
        Ok(Tls {
            store,
            challenges,
            acme,
            ordering: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            changed: watch::Sender::new(0),
            policy: RenewalPolicy::default(),
            auto_default: settings.auto_default,
        })
    }

    /// Learns of every certificate stored or removed from now on.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Tells whoever follows certificates that one changed.
    pub fn announce_change(&self) {
        self.changed
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    /// Whether an app with `settings` gets its certificates from ACME.
    pub fn is_auto(&self, settings: &crate::domains::AppHttps) -> bool {
        settings.acme.unwrap_or(self.auto_default)
    }

    /// Asks the renewal task to look now.
    pub fn wake_renewal(&self) {
        self.wake.notify_one();
    }

    /// Orders a certificate for `host` and stores it in place of the one it
    /// had, which stays in service if the order fails (the failure is
    /// recorded in the host's entry).
    pub async fn order(&self, host: &HostName) -> Result<CertRecord, RenewError> {
        let _ordering = self.ordering.lock().await;
        let result = nap_certs::renew(&self.store, &self.acme, host, SystemTime::now()).await;
        // Also a failure changes the entry (its last attempt).
        self.announce_change();
        result
    }
}

impl Daemon {
    /// Whether `app`'s certificates come from ACME.
    pub(crate) fn acme_auto(&self, app: &AppName) -> bool {
        self.tls.is_auto(&self.domains.settings(app))
    }

    /// Removes the certificate of `host`, if it has one.
    pub(crate) fn remove_certificate(
        &self,
        host: &HostName,
    ) -> Result<bool, nap_certs::CertStoreError> {
        let removed = self.tls.store.remove(host)?;
        if removed {
            self.tls.announce_change();
        }
        Ok(removed)
    }

    /// Removes what a destroyed app leaves in the index and the store: its
    /// hosts become free and their certificates are no longer served.
    pub(crate) fn forget_domains(&self, app: &AppName) {
        let hosts = match self.domains.forget_app(app) {
            Ok(hosts) => hosts,
            Err(error) => {
                // The renewal task's tidy-up removes the certificates of hosts
                // that are in no app's list; the index keeps them until then.
                tracing::warn!(app = %app, %error, "cannot free the app's domains");
                return;
            }
        };
        for host in hosts {
            if let Err(error) = self.remove_certificate(&host) {
                tracing::warn!(%host, %error, "cannot remove the certificate of a freed host");
            }
        }
    }

    /// Runs the renewal task until `stop` completes: a pass at start, then one
    /// every hour and whenever woken.
    pub(crate) async fn renew_certificates(
        self: Arc<Self>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        self.remove_orphan_certificates();
        loop {
            tokio::select! {
                () = self.renewal_pass() => {}
                () = &mut stop => return,
            }
            tokio::select! {
                () = tokio::time::sleep(RENEWAL_CHECK_EVERY) => {}
                () = self.tls.wake.notified() => {}
                () = &mut stop => return,
            }
        }
    }

    /// Orders a certificate for every host of an automatic app that needs
    /// one: no entry at all, a certificate within the renewal window, or a
    /// failed attempt whose retry wait is over. A certificate that is not
    /// renewed stays in service whatever happens here.
    async fn renewal_pass(&self) {
        let index = self.domains.snapshot();
        let now = SystemTime::now();
        let mut todo = Vec::new();
        match self.tls.store.due(now, &self.tls.policy) {
            Ok(due) => {
                for entry in due {
                    match index.hosts.get(&entry.host) {
                        Some(app) if self.tls.is_auto(&index.settings(app)) => {
                            todo.push(entry.host);
                        }
                        Some(app) => {
                            if let Some((Source::Uploaded, not_after)) = entry.current {
                                tracing::warn!(
                                    host = %entry.host, app = %app, %not_after,
                                    "the uploaded certificate expires soon; upload a new one, or run certs:auto {app}"
                                );
                            }
                        }
                        None => {}
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list the certificates due for renewal"),
        }
        for (host, app) in &index.hosts {
            if self.tls.is_auto(&index.settings(app))
                && matches!(self.tls.store.record(host), Ok(None))
            {
                todo.push(host.clone());
            }
        }
        for host in todo {
            match self.tls.order(&host).await {
                Ok(record) => tracing::info!(
                    %host,
                    not_after = %record.certificate.map_or_else(String::new, |c| c.not_after.to_string()),
                    "certificate renewed"
                ),
                // nap-certs logged it and wrote it into the host's entry.
                Err(error) => tracing::debug!(%host, %error, "renewal failed"),
            }
        }
    }

    /// Certificates of hosts that no app has (left by a destroy that could not
    /// remove them) are removed: nothing should be served for them.
    fn remove_orphan_certificates(&self) {
        let index = self.domains.snapshot();
        let hosts = match self.tls.store.hosts() {
            Ok(hosts) => hosts,
            Err(error) => {
                tracing::warn!(%error, "cannot list the stored certificates");
                return;
            }
        };
        for host in hosts
            .into_iter()
            .filter(|host| !index.hosts.contains_key(host))
        {
            tracing::info!(%host, "removing the certificate of a host no app has");
            if let Err(error) = self.remove_certificate(&host) {
                tracing::warn!(%host, %error, "cannot remove the certificate");
            }
        }
    }
}
