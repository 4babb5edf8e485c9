//! The router's membership, and draining instances before they stop.
//!
//! [`Routing`] publishes the snapshot of routes the router serves from (`nap_router::Routes`
//! through a watch channel): every app that exists, with the addresses of its instances
//! that are up ([`nap_runtime::Runtime::up_addresses`]) minus those being drained. Nothing
//! polls: the feed ([`feed`]) publishes again when the runtime pushes a new snapshot of up
//! instances or an app is created or removed, and a drain publishes at once.
//!
//! An instance leaves the router's rotation before it is sent SIGTERM ([`Routing::drain`]):
//! it is taken out of the published routes, then out of the router's rotation
//! (`nap_router::Traffic::retire`, which also covers requests that read their routes
//! before), and the drain waits until the router has no request in flight to it, or the
//! drain timeout. Only then is it stopped; when it is gone ([`Drained`] dropped) its address
//! is free for a new instance. A deploy also waits until its new instances are in the
//! published routes ([`Routing::until_routed`]) before the old ones are drained: the router
//! reads the published snapshot on its next request, so once it is published the router
//! has it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nap_core::{AppName, Caller};
use nap_router::{Routes, RoutesReceiver, Traffic};
use nap_runtime::UpAddresses;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::Daemon;

/// The published routes and what they are made of.
pub(crate) struct Routing {
    published: watch::Sender<Arc<Routes>>,
    up: watch::Receiver<Arc<UpAddresses>>,
    traffic: Traffic,
    drain_timeout: Duration,
    inputs: Mutex<Inputs>,
}

#[derive(Default)]
struct Inputs {
    /// The apps that exist, read again only when the apps change.
    apps: Vec<AppName>,
    /// Addresses being drained or held (a new instance not through its health check),
    /// with how many drains and holds asked for each: out of the routes.
    draining: HashMap<SocketAddr, usize>,
    /// Custom hosts: (host, app, whether plain HTTP redirects to HTTPS), read again only
    /// when the domains or the certificates change.
    hosts: Vec<(String, String, bool)>,
}

/// Instances taken out of the routes and drained; they go back (if they still run)
/// when this is dropped, which the caller does once they are stopped.
pub(crate) struct Drained<'a> {
    routing: &'a Routing,
    addrs: Vec<SocketAddr>,
}

impl Routing {
    pub(crate) fn new(
        up: watch::Receiver<Arc<UpAddresses>>,
        traffic: Traffic,
        drain_timeout: Duration,
    ) -> Routing {
        Routing {
            published: watch::Sender::new(Arc::new(Routes::new())),
            up,
            traffic,
            drain_timeout,
            inputs: Mutex::default(),
        }
    }

    /// What the router reads.
    pub(crate) fn receiver(&self) -> RoutesReceiver {
        self.published.subscribe()
    }

    /// The router's book of requests in flight, to give it in its options.
    pub(crate) fn traffic(&self) -> Traffic {
        self.traffic.clone()
    }

    fn inputs(&self) -> std::sync::MutexGuard<'_, Inputs> {
        self.inputs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes the routes as they are now, if they changed. Under the inputs' lock, so
    /// that two publishers cannot publish in the wrong order.
    fn refresh(&self) {
        let inputs = self.inputs();
        let up = self.up.borrow().clone();
        // Round robin walks each list in this order, which the runtime keeps the same
        // from one snapshot to the next.
        let mut routes: Routes = inputs
            .apps
            .iter()
            .map(|app| {
                let addrs = up
                    .get(app.as_str())
                    .into_iter()
                    .flatten()
                    .filter(|addr| !inputs.draining.contains_key(addr))
                    .copied()
                    .collect();
                (app.as_str(), addrs)
            })
            .collect();
        for (host, app, redirect) in &inputs.hosts {
            // A host left over by a destroy that failed halfway leads nowhere.
            if routes.instances(app).is_some() {
                routes.insert_host(host, app, *redirect);
            }
        }
        self.published.send_if_modified(|current| {
            if **current == routes {
                false
            } else {
                *current = Arc::new(routes);
                true
            }
        });
    }

    /// Takes `addrs` out of the routes and out of the router's rotation, and waits until
    /// the router has no request in flight to them (at most the drain timeout). Stop
    /// them, then drop the answer.
    pub(crate) async fn drain(&self, app: &AppName, addrs: Vec<SocketAddr>) -> Drained<'_> {
        {
            let mut inputs = self.inputs();
            for &addr in &addrs {
                *inputs.draining.entry(addr).or_default() += 1;
            }
        }
        let drained = Drained {
            routing: self,
            addrs,
        };
        if drained.addrs.is_empty() {
            return drained;
        }
        self.refresh();
        self.traffic.retire(&drained.addrs);
        let idle = self.traffic.until_idle(&drained.addrs);
        if tokio::time::timeout(self.drain_timeout, idle)
            .await
            .is_err()
        {
            let in_flight: usize = drained
                .addrs
                .iter()
                .map(|&addr| self.traffic.in_flight(addr))
                .sum();
            warn!(%app, in_flight, "requests still in flight after the drain timeout of {}s; stopping the instances anyway", self.drain_timeout.as_secs());
        }
        drained
    }

    /// Keeps `addr` out of the routes until the answer is dropped: a new instance that
    /// is up but has not passed its health check yet takes no requests.
    pub(crate) fn hold(&self, addr: SocketAddr) -> Held<'_> {
        *self.inputs().draining.entry(addr).or_default() += 1;
        self.refresh();
        Held {
            routing: self,
            addr,
        }
    }

    /// Undoes one [`Routing::drain`] or [`Routing::hold`] of each of `addrs` (the
    /// caller publishes).
    fn release(&self, addrs: &[SocketAddr]) {
        let mut inputs = self.inputs();
        for addr in addrs {
            if let Some(count) = inputs.draining.get_mut(addr) {
                *count -= 1;
                if *count == 0 {
                    inputs.draining.remove(addr);
                }
            }
        }
    }

    /// Waits until the published routes list every one of `addrs` for `app` (new
    /// instances that are up), at most the drain timeout.
    pub(crate) async fn until_routed(&self, app: &AppName, addrs: &[SocketAddr]) {
        if addrs.is_empty() {
            return;
        }
        let mut routes = self.receiver();
        let routed = routes.wait_for(|routes| {
            routes
                .instances(app.as_str())
                .is_some_and(|routed| addrs.iter().all(|addr| routed.contains(addr)))
        });
        match tokio::time::timeout(self.drain_timeout, routed).await {
            Ok(Ok(_)) => {}
            _ => {
                warn!(%app, ?addrs, "the new instances are not in the routes (not up any more?); going on")
            }
        }
    }
}

impl Drop for Drained<'_> {
    fn drop(&mut self) {
        self.routing.traffic.forget(&self.addrs);
        self.routing.release(&self.addrs);
        self.routing.refresh();
    }
}

/// A new instance's address held out of the routes until it passes its health check
/// (`healthcheck.rs`); it is routed as soon as this is dropped.
pub(crate) struct Held<'a> {
    routing: &'a Routing,
    addr: SocketAddr,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.routing.release(&[self.addr]);
        self.routing.refresh();
    }
}

/// Keeps the routes up to date until `stop` completes or the runtime stops publishing:
/// publishes with the apps as they are now, then on every change of the instances that
/// are up, of the apps, of the custom hosts and of the certificates.
pub(crate) async fn feed(daemon: Arc<Daemon>, stop: impl std::future::Future<Output = ()>) {
    let mut up = daemon.runtime.up_addresses();
    let mut apps_changed = daemon.apps.changes();
    let mut domains_changed = daemon.domains.changes();
    let mut certs_changed = daemon.tls.changes();
    let mut stop = std::pin::pin!(stop);
    loop {
        apps_changed.borrow_and_update();
        load_apps(&daemon).await;
        loop {
            tokio::select! {
                () = &mut stop => return,
                changed = up.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    daemon.routing.refresh();
                }
                changed = domains_changed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    load_hosts(&daemon);
                }
                changed = certs_changed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    load_hosts(&daemon);
                }
                changed = apps_changed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// Reads which apps exist and publishes the routes with them (and the custom hosts).
pub(crate) async fn load_apps(daemon: &Arc<Daemon>) {
    if let Some(apps) = existing_apps(daemon).await {
        daemon.routing.inputs().apps = apps;
    }
    load_hosts(daemon);
}

/// Reads the custom hosts and publishes the routes with them. A host redirects plain
/// HTTP to HTTPS only if its app asks for it *and* a certificate for it is in service:
/// a redirect to a handshake that must fail would take the host down.
fn load_hosts(daemon: &Daemon) {
    let index = daemon.domains.snapshot();
    let resolver = daemon.tls.store.resolver();
    let hosts = index
        .hosts
        .iter()
        .map(|(host, app)| {
            let redirect = index.settings(app).https_redirect && resolver.serves(host);
            (host.as_str().to_owned(), app.clone(), redirect)
        })
        .collect();
    daemon.routing.inputs().hosts = hosts;
    daemon.routing.refresh();
}

/// The apps that exist (every app with a record), or `None` if they cannot be listed
/// (the routes keep the ones known).
async fn existing_apps(daemon: &Arc<Daemon>) -> Option<Vec<AppName>> {
    let daemon = daemon.clone();
    let everyone = Caller {
        user: String::new(),
        admin: true,
    };
    match tokio::task::spawn_blocking(move || daemon.apps.visible(&everyone)).await {
        Ok(Ok(apps)) => Some(apps.into_iter().map(|(app, _)| app).collect()),
        Ok(Err(error)) => {
            debug!(%error, "cannot list the apps; the routes keep the ones known");
            None
        }
        Err(error) => {
            debug!(%error, "listing the apps failed; the routes keep the ones known");
            None
        }
    }
}
