//! The accept loop: caps connections, bounds unauthenticated time, and stops
//! when told to.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::server::Config;
use russh::{MethodKind, MethodSet, Preferred, cipher};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, info, warn};

use crate::Gate;
use crate::handler::ClientHandler;
use crate::quick_ack::QuickAck;

/// How the SSH front door behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The only login name accepted (`iwanna` by default).
    pub git_user: String,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Time a client has to authenticate.
    pub auth_timeout: Duration,
    /// Delay before a rejected authentication is answered.
    pub rejection_delay: Duration,
    /// Interval of keepalive probes on quiet connections; three unanswered
    /// probes end the connection.
    pub keepalive: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            git_user: "iwanna".into(),
            max_connections: 256,
            auth_timeout: Duration::from_secs(30),
            rejection_delay: Duration::from_millis(500),
            keepalive: Duration::from_secs(30),
        }
    }
}

fn config(host_key: PrivateKey, options: &Options) -> Config {
    // AES-GCM first: with AES-NI it is several times faster than
    // chacha20-poly1305, which matters for large pushes.
    let preferred = Preferred {
        cipher: std::borrow::Cow::Owned(vec![
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_CTR,
            cipher::AES_128_CTR,
        ]),
        ..Preferred::default()
    };
    Config {
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: options.rejection_delay,
        // OpenSSH probes with "none" first; answering that at once costs
        // nothing and saves every connection the delay.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        max_auth_attempts: 6,
        inactivity_timeout: None,
        keepalive_interval: Some(options.keepalive),
        keepalive_max: 3,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        // (`nodelay` is applied by russh's own accept loop only; `serve` sets it.)
        preferred,
        ..Config::default()
    }
}

/// Serves SSH on `listener` until `shutdown` completes; then stops accepting
/// and returns (running sessions end with the process).
pub async fn serve(
    listener: TcpListener,
    host_key: PrivateKey,
    options: Options,
    gate: Arc<dyn Gate>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let config = Arc::new(config(host_key, &options));
    let options = Arc::new(options);
    let permits = Arc::new(Semaphore::new(options.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            // Out of file descriptors and the like: the helper waits and keeps serving.
            accepted = nap_stdx::accept("ssh", || listener.accept()) => accepted?,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%peer, "too many connections; closing this one");
            continue;
        };
        // SSH is a conversation of small packets: with Nagle's algorithm, a second
        // small write waits for the client's delayed ACK of the first (40 ms on Linux),
        // several times per session.
        if let Err(error) = socket.set_nodelay(true) {
            debug!(%peer, %error, "cannot turn Nagle's algorithm off");
        }
        let authenticated = Arc::new(AtomicBool::new(false));
        let handler = ClientHandler::new(gate.clone(), options.clone(), authenticated.clone());
        let config = config.clone();
        let auth_timeout = options.auth_timeout;
        let span = tracing::info_span!("ssh", %peer);
        tokio::spawn(
            async move {
                let _permit = permit;
                let session = match russh::server::run_stream(config, QuickAck::new(socket), handler).await {
                    Ok(session) => session,
                    Err(e) => {
                        debug!(error = ?e, "handshake failed");
                        return;
                    }
                };
                let handle = session.handle();
                tokio::pin!(session);
                tokio::select! {
                    result = &mut session => {
                        if let Err(e) = result { debug!(error = ?e, "session ended with an error"); }
                        return;
                    }
                    () = tokio::time::sleep(auth_timeout) => {}
                }
                if !authenticated.load(Ordering::SeqCst) {
                    info!("no authentication in time; disconnecting");
                    let _ = handle
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "authentication timed out".into(),
                            String::new(),
                        )
                        .await;
                }
                if let Err(e) = session.await {
                    debug!(error = ?e, "session ended with an error");
                }
            }
            .instrument(span),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};

    use russh::keys::PublicKey;
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::{BoxFuture, Io};

    struct Nobody;

    impl Gate for Nobody {
        fn identify(&self, _key: &PublicKey) -> Option<nap_core::Caller> {
            None
        }

        fn exec<'a>(&'a self, _: nap_core::Caller, _: String, _: Io<'a>) -> BoxFuture<'a, u32> {
            Box::pin(async { 1 })
        }
    }

    /// Copies of this process's TCP sockets from `local` to `peer`, with the descriptor
    /// each was copied from (`pidfd_getfd` on ourselves: a new descriptor for the same
    /// socket, without unsafe code).
    fn sockets_between(local: SocketAddr, peer: SocketAddr) -> Vec<(RawFd, OwnedFd)> {
        let us = pidfd_open(getpid(), PidfdFlags::empty()).expect("pidfd_open");
        let address = |a: Option<rustix::net::SocketAddrAny>| SocketAddr::try_from(a?).ok();
        std::fs::read_dir("/proc/self/fd")
            .expect("list /proc/self/fd")
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
            .filter_map(|fd| Some((fd, pidfd_getfd(&us, fd, PidfdGetfdFlags::empty()).ok()?)))
            .filter(|(_, copy)| {
                address(rustix::net::getsockname(copy).ok()) == Some(local)
                    && address(rustix::net::getpeername(copy).ok().flatten()) == Some(peer)
            })
            .collect()
    }

    #[tokio::test]
    async fn accepted_connections_do_not_wait_for_delayed_acks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = crate::load_or_create_host_key(&dir.path().join("host_key")).expect("key");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            key,
            Options::default(),
            Arc::new(Nobody),
            async move {
                let _ = stopped.await;
            },
        ));
        let mut client = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        // The banner: the server has accepted the connection and holds its socket.
        let mut banner = [0u8; 8];
        client.read_exact(&mut banner).await.expect("banner");
        assert_eq!(&banner, b"SSH-2.0-");
        let client_address = client.local_addr().expect("client address");
        let ours: Vec<RawFd> = sockets_between(client_address, address)
            .into_iter()
            .map(|(fd, _)| fd)
            .collect();
        assert_eq!(
            ours,
            [client.as_raw_fd()],
            "the lookup finds the client's socket"
        );
        let servers = sockets_between(address, client_address);
        assert_eq!(servers.len(), 1, "the server's side of the connection");
        assert!(
            rustix::net::sockopt::tcp_nodelay(&servers[0].1).expect("TCP_NODELAY"),
            "the server's socket has Nagle's algorithm on"
        );
        let _ = stop.send(());
        server.await.expect("server task").expect("serve");
    }
}
