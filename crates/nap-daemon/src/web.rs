//! The daemon behind the web manager (nap-web), which goes through the same
//! access rule and the same commands as SSH. (The router's membership is
//! `routing.rs`.)

use std::sync::Arc;

use nap_core::{AccessError, Action, Caller};
use nap_web::{BoxFuture, Chunk, Denied, User};
use tokio::sync::mpsc;

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
