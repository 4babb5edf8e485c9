//! The SSH front door's view of the daemon.

use std::sync::Arc;

use nap_ssh::{BoxFuture, Caller, Gate, Io, PublicKey};

use crate::{Daemon, Out};

pub struct SshGate(pub Arc<Daemon>);

impl Gate for SshGate {
    fn identify(&self, key: &PublicKey) -> Option<Caller> {
        self.0.users.identify(key)
    }

    fn exec<'a>(&'a self, caller: Caller, command: String, io: Io<'a>) -> BoxFuture<'a, u32> {
        Box::pin(async move {
            let Io {
                stdin,
                stdout,
                stderr,
            } = io;
            let mut out = Out::new(stdout, stderr);
            let status = self.0.execute(&caller, &command, stdin, &mut out).await;
            out.flush().await;
            status
        })
    }
}

impl Daemon {
    /// Runs one command line from any door: git's two services, or a
    /// management command. The line is split like a shell would, but never
    /// given to one.
    pub async fn execute(
        self: &Arc<Self>,
        caller: &Caller,
        line: &str,
        stdin: Box<dyn tokio::io::AsyncRead + Send + Unpin + '_>,
        out: &mut Out<'_>,
    ) -> u32 {
        let words = match shell_words::split(line) {
            Ok(words) => words,
            Err(e) => {
                out.err(&format!(" !     cannot parse the command line: {e}"))
                    .await;
                return 2;
            }
        };
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let git_service = match words.as_slice() {
            ["git-receive-pack", path] | ["git", "receive-pack", path] => {
                Some(("receive-pack", *path))
            }
            ["git-upload-pack", path] | ["git", "upload-pack", path] => {
                Some(("upload-pack", *path))
            }
            _ => None,
        };
        match git_service {
            Some((service, path)) => {
                crate::git_exec::run(self, caller, service, path, stdin, out).await
            }
            None => crate::commands::run(self, caller, &words, stdin, out).await,
        }
    }
}
