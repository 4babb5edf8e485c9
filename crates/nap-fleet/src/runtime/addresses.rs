//! Where the cluster's instances that are up serve, for the router: the sidekicks' keys in
//! etcd when etcd is configured, else the units that fleet reports active on their machines.
//!
//! A background task reads them every [`super::FleetOptions::discovery_interval`] (the
//! cluster changes behind nap's back: machines fail, fleet moves units), and the runtime reads
//! them again at once after each of its own health checks and stops, so that a deploy that
//! returned is already in the router's view. Readers get the snapshot through a watch channel;
//! one that cannot be read keeps the last one (saying "nothing runs" would turn every request
//! into a 502).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use nap_runtime::{InstanceState, UpAddresses};
use tokio::sync::watch;

use super::observe;
use crate::client::FleetClient;
use crate::etcd::EtcdClient;

pub(super) struct Discovery {
    fleet: FleetClient,
    etcd: Option<Arc<EtcdClient>>,
    interval: Duration,
    published: watch::Sender<Arc<UpAddresses>>,
    /// One reading at a time, so that an older answer never replaces a newer one.
    reading: tokio::sync::Mutex<()>,
    /// Whether the background task runs.
    polling: AtomicBool,
}

impl Discovery {
    pub(super) fn new(
        fleet: FleetClient,
        etcd: Option<Arc<EtcdClient>>,
        interval: Duration,
    ) -> Discovery {
        Discovery {
            fleet,
            etcd,
            interval,
            published: watch::Sender::new(Arc::new(UpAddresses::new())),
            reading: tokio::sync::Mutex::new(()),
            polling: AtomicBool::new(false),
        }
    }

    /// The snapshots, starting the background task on the first call (inside a tokio
    /// runtime; outside one the snapshot changes only after the runtime's own operations).
    pub(super) fn receiver(self: &Arc<Self>) -> watch::Receiver<Arc<UpAddresses>> {
        if let Ok(tokio) = tokio::runtime::Handle::try_current()
            && !self.polling.swap(true, Ordering::SeqCst)
        {
            tokio.spawn(poll(Arc::downgrade(self)));
        }
        self.published.subscribe()
    }

    /// Reads the addresses now and publishes them if they changed.
    pub(super) async fn refresh(&self) {
        let _one_at_a_time = self.reading.lock().await;
        let read = match &self.etcd {
            Some(etcd) => etcd.all_instances().await.map_err(|e| format!("etcd: {e}")),
            None => self.read_fleet().await.map_err(|e| format!("fleet: {e}")),
        };
        let book = match read {
            Ok(book) => book,
            Err(error) => {
                tracing::warn!(%error, "cannot read where instances serve; the router keeps the last addresses");
                return;
            }
        };
        self.published.send_if_modified(|current| {
            if **current == book {
                false
            } else {
                *current = Arc::new(book);
                true
            }
        });
    }

    async fn read_fleet(&self) -> Result<UpAddresses, crate::client::FleetError> {
        let instances = observe::instances(&self.fleet, None, &HashMap::new()).await?;
        let mut book = UpAddresses::new();
        for instance in instances {
            if instance.state == InstanceState::Up && !instance.address.ip().is_unspecified() {
                book.entry(instance.id.app)
                    .or_default()
                    .push(instance.address);
            }
        }
        Ok(book)
    }
}

/// Reads the addresses every interval until the runtime is gone.
async fn poll(discovery: Weak<Discovery>) {
    loop {
        let Some(discovery) = discovery.upgrade() else {
            return;
        };
        discovery.refresh().await;
        let interval = discovery.interval;
        drop(discovery);
        tokio::time::sleep(interval).await;
    }
}
