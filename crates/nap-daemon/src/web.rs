//! The daemon behind the web manager (nap-web) and the router (nap-router):
//! both go through the same access rule and the same commands as SSH.

use std::net::SocketAddr;
use std::sync::Arc;

use nap_core::{AccessError, Action, Caller};
use nap_web::{BoxFuture, Chunk, Denied, User};
use tokio::sync::{mpsc, watch};

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

/// The daemon as the router's membership: an app's instances that are up, from the snapshot
/// the runtime pushes (no runtime or etcd call per request).
pub struct Members {
    daemon: Arc<Daemon>,
    up: watch::Receiver<Arc<nap_runtime::UpAddresses>>,
}

impl Members {
    /// Follows the daemon's runtime's snapshots.
    pub fn new(daemon: Arc<Daemon>) -> Members {
        let up = daemon.runtime.up_addresses();
        Members { daemon, up }
    }
}

impl nap_router::Membership for Members {
    fn instances<'a>(&'a self, app: &'a str) -> nap_router::BoxFuture<'a, Option<Vec<SocketAddr>>> {
        Box::pin(async move {
            let name = nap_core::AppName::parse(app).ok()?;
            let up = self.up.borrow().get(name.as_str()).cloned();
            if let Some(up) = up.filter(|up| !up.is_empty()) {
                return Some(up);
            }
            // Nothing up: an app with no live instance (502) or no app (404).
            // Only then is its record read: no file read per routed request.
            self.daemon.apps.record(&name).ok()?.map(|_| Vec::new())
        })
    }
}
