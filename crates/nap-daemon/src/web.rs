//! The daemon behind the web manager (nap-web), which goes through the same
//! access rule and the same commands as SSH, and the router's (nap-router)
//! membership.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// How often the stopgap below looks at the instances again.
const ROUTES_POLL: Duration = Duration::from_millis(100);

/// The router's membership: a snapshot of every app and the addresses of its
/// instances that are up, as `nap_router::serve` takes it.
///
/// **Stopgap** until the runtime pushes its own snapshot of up instances (the
/// Runtime work): [`RoutesFeed::run`] rebuilds the snapshot every 100 ms from
/// `runtime.list()` (in a cluster with etcd, from the sidekicks' etcd keys)
/// and the app records, and publishes it only when it changed. The lead
/// replaces this feed with the runtime's pushed channel; the router side does
/// not change.
pub struct RoutesFeed {
    daemon: Arc<Daemon>,
    publish: watch::Sender<Arc<Routes>>,
    /// Apps whose record was found: their directory alone says they still
    /// exist, so records are read once per app, not once per poll.
    known: HashSet<AppName>,
}

impl RoutesFeed {
    /// The feed and the receiver for the router, with the apps as they are
    /// now already in it.
    pub async fn start(daemon: Arc<Daemon>) -> (RoutesFeed, RoutesReceiver) {
        let (publish, receiver) = watch::channel(Arc::new(Routes::new()));
        let mut feed = RoutesFeed {
            daemon,
            publish,
            known: HashSet::new(),
        };
        feed.refresh().await;
        (feed, receiver)
    }

    /// Keeps the snapshot up to date until `stop` completes or the router is
    /// gone.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut tick = tokio::time::interval(ROUTES_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.publish.is_closed() {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => self.refresh().await,
            }
        }
    }

    async fn refresh(&mut self) {
        let routes = self.snapshot().await;
        self.publish.send_if_modified(|current| {
            if **current == routes {
                false
            } else {
                *current = Arc::new(routes);
                true
            }
        });
    }

    async fn snapshot(&mut self) -> Routes {
        let apps = self.apps();
        let previous = self.publish.borrow().clone();
        let mut routes = Routes::new();
        match &self.daemon.etcd {
            // In a cluster, the sidekicks' etcd keys say where instances serve.
            Some(etcd) => {
                for app in &apps {
                    let up = match etcd.instances(app.as_str()).await {
                        Ok(up) => up,
                        // A hiccup of etcd should not take an app off the
                        // router: it keeps what it had.
                        Err(error) => {
                            debug!(app = %app, %error, "etcd: instances");
                            previous
                                .instances(app.as_str())
                                .map(<[SocketAddr]>::to_vec)
                                .unwrap_or_default()
                        }
                    };
                    routes.insert(app.as_str(), up);
                }
            }
            None => {
                let mut instances = self.daemon.runtime.list().await;
                // Round robin walks this order: keep it the same from one
                // snapshot to the next.
                instances.sort_by(|a, b| a.id.cmp(&b.id));
                let mut up: HashMap<String, Vec<SocketAddr>> = HashMap::new();
                for instance in instances {
                    if instance.state == nap_runtime::InstanceState::Up {
                        up.entry(instance.id.app)
                            .or_default()
                            .push(instance.address);
                    }
                }
                for app in &apps {
                    routes.insert(app.as_str(), up.remove(app.as_str()).unwrap_or_default());
                }
            }
        }
        routes
    }

    /// The apps that exist: a directory under the data's apps with a record.
    fn apps(&mut self) -> Vec<AppName> {
        let root = self.daemon.data.apps();
        let entries = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(error) => {
                if error.kind() != std::io::ErrorKind::NotFound {
                    debug!(path = %root.display(), %error, "cannot list the apps");
                }
                return Vec::new();
            }
        };
        let mut apps = Vec::new();
        for entry in entries.flatten() {
            let Some(app) = entry
                .file_name()
                .to_str()
                .and_then(|name| AppName::parse(name).ok())
            else {
                continue;
            };
            if self.known.contains(&app) || matches!(self.daemon.apps.record(&app), Ok(Some(_))) {
                apps.push(app);
            }
        }
        self.known = apps.iter().cloned().collect();
        apps
    }
}
