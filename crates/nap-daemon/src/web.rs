//! The daemon behind the web manager (nap-web), which goes through the same
//! access rule and the same commands as SSH, and the router's (nap-router)
//! membership.

use std::sync::Arc;

use nap_core::{AccessError, Action, AppName, Caller};
use nap_router::{Routes, RoutesReceiver};
use nap_web::{BoxFuture, Chunk, Denied, User};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::{AppsError, Daemon, Out};

/// The daemon as nap-web's backend.
pub struct WebBackend(pub Arc<Daemon>);

fn caller(user: &User) -> Caller {
    Caller {
        user: user.name.clone(),
        admin: user.admin,
    }
}

impl nap_web::Backend for WebBackend {
    fn authenticate(&self, token: &str) -> Option<User> {
        self.0.authenticate_token(token).map(|c| User {
            name: c.user,
            admin: c.admin,
        })
    }

    fn access(&self, user: &User, app: &str, write: bool) -> Result<(), Denied> {
        let action = if write { Action::Write } else { Action::Read };
        match self.0.apps.existing(&caller(user), app, action) {
            Ok(_) => Ok(()),
            Err(AppsError::Access(e @ AccessError::NotYours(_))) => {
                Err(Denied::Forbidden(e.to_string()))
            }
            Err(e) => Err(Denied::NotFound(e.to_string())),
        }
    }

    fn run(
        &self,
        user: User,
        args: Vec<String>,
        output: mpsc::Sender<Chunk>,
    ) -> BoxFuture<'static, u32> {
        let daemon = self.0.clone();
        Box::pin(async move {
            let caller = caller(&user);
            let (out_writer, out_reader) = tokio::io::duplex(64 * 1024);
            let (err_writer, err_reader) = tokio::io::duplex(64 * 1024);
            let run = async {
                let mut out = Out::new(Box::new(out_writer), Box::new(err_writer));
                let words: Vec<&str> = args.iter().map(String::as_str).collect();
                // Management commands only: git's services are not for the web.
                let status = crate::commands::run(
                    &daemon,
                    &caller,
                    &words,
                    Box::new(tokio::io::empty()),
                    &mut out,
                )
                .await;
                drop(out);
                status
            };
            let (status, (), ()) = tokio::join!(
                run,
                crate::output::pump(out_reader, output.clone(), Chunk::Stdout),
                crate::output::pump(err_reader, output, Chunk::Stderr)
            );
            status
        })
    }
}

/// The router's membership: a snapshot of every app and the addresses of its
/// instances that are up, as `nap_router::serve` takes it.
///
/// Nothing here polls. The runtime pushes a new snapshot of up instances on
/// every change of an instance's state ([`nap_runtime::Runtime::up_addresses`]),
/// and [`crate::apps::Apps`] announces every app it creates or forgets; the
/// feed joins the two (an app with nothing up is in the routes with no
/// address, so that the router answers 502 rather than 404) and publishes
/// only when the result differs.
pub struct RoutesFeed {
    daemon: Arc<Daemon>,
    publish: watch::Sender<Arc<Routes>>,
    up: watch::Receiver<Arc<nap_runtime::UpAddresses>>,
    apps_changed: watch::Receiver<u64>,
    /// Custom hosts, or an app's redirect setting, changed.
    domains_changed: watch::Receiver<u64>,
    /// A certificate was stored or removed (a host redirects only with one).
    certs_changed: watch::Receiver<u64>,
    /// The apps that exist, read again only when `apps_changed` says so.
    apps: Vec<AppName>,
}

impl RoutesFeed {
    /// The feed and the receiver for the router, with the apps as they are
    /// now already in it.
    pub async fn start(daemon: Arc<Daemon>) -> (RoutesFeed, RoutesReceiver) {
        let (publish, receiver) = watch::channel(Arc::new(Routes::new()));
        let up = daemon.runtime.up_addresses();
        let apps_changed = daemon.apps.changes();
        let domains_changed = daemon.domains.changes();
        let certs_changed = daemon.tls.changes();
        let mut feed = RoutesFeed {
            daemon,
            publish,
            up,
            apps_changed,
            domains_changed,
            certs_changed,
            apps: Vec::new(),
        };
        feed.apps = feed.existing_apps().await;
        feed.refresh();
        (feed, receiver)
    }

    /// Keeps the snapshot up to date until `stop` completes, the router is
    /// gone or the runtime stops publishing.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        while !self.publish.is_closed() {
            tokio::select! {
                () = &mut stop => return,
                changed = self.up.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                changed = self.apps_changed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.apps = self.existing_apps().await;
                }
                changed = self.domains_changed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                changed = self.certs_changed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            self.refresh();
        }
    }

    fn refresh(&mut self) {
        let up = self.up.borrow_and_update().clone();
        // Round robin walks each list in this order, which the runtime
        // keeps the same from one snapshot to the next.
        let mut routes: Routes = self
            .apps
            .iter()
            .map(|app| {
                (
                    app.as_str(),
                    up.get(app.as_str()).cloned().unwrap_or_default(),
                )
            })
            .collect();
        self.domains_changed.borrow_and_update();
        self.certs_changed.borrow_and_update();
        add_custom_hosts(&self.daemon, &mut routes);
        self.publish.send_if_modified(|current| {
            if **current == routes {
                false
            } else {
                *current = Arc::new(routes);
                true
            }
        });
    }

    /// The apps that exist: every app with a record.
    async fn existing_apps(&mut self) -> Vec<AppName> {
        self.apps_changed.borrow_and_update();
        let daemon = self.daemon.clone();
        let everyone = Caller {
            user: String::new(),
            admin: true,
        };
        let listed = tokio::task::spawn_blocking(move || daemon.apps.visible(&everyone)).await;
        match listed {
            Ok(Ok(apps)) => apps.into_iter().map(|(app, _)| app).collect(),
            Ok(Err(error)) => {
                debug!(%error, "cannot list the apps; the routes keep the ones known");
                self.apps.clone()
            }
            Err(error) => {
                debug!(%error, "listing the apps failed; the routes keep the ones known");
                self.apps.clone()
            }
        }
    }
}

/// Adds every custom host of an existing app to `routes`. A host redirects
/// plain HTTP to HTTPS only if its app asks for it *and* a certificate for
/// it is in service: a redirect to a handshake that must fail would take the
/// host down.
fn add_custom_hosts(daemon: &Daemon, routes: &mut Routes) {
    let index = daemon.domains.snapshot();
    let resolver = daemon.tls.store.resolver();
    for (host, app) in &index.hosts {
        // A host left over by a destroy that failed halfway leads nowhere.
        if routes.instances(app).is_none() {
            continue;
        }
        let redirect = index.settings(app).https_redirect && resolver.serves(host);
        routes.insert_host(host.as_str(), app, redirect);
    }
}
