//! nap's router, run in this process the way `nap serve` runs it, for the router figure.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use nap_certs::{CertStore, CheckedCertificate, HostName, Source};
use nap_router::{Https, Listeners, Routes};
use tokio::sync::{oneshot, watch};

/// `nap_router::serve_listeners` on a free 127.0.0.1 port (and one for HTTPS), on a
/// runtime of its own; stopped when dropped.
pub struct RouterUnderTest {
    pub port: u16,
    /// The HTTPS listener's port, if it was given a certificate.
    pub https_port: Option<u16>,
    stop: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RouterUnderTest {
    /// Serves `bench.localhost` from `instances`; with `tls`, also over HTTPS with that
    /// certificate, stored as `nap serve` stores an uploaded one (in a [`CertStore`] at
    /// `store`).
    pub fn start(
        instances: &[SocketAddr],
        tls: Option<(&crate::nginx::Tls, &std::path::Path)>,
    ) -> anyhow::Result<RouterUnderTest> {
        // `nap serve` logs at `info` unless NAP_LOG says otherwise; the router's
        // per-request lines are `debug`, so they cost what they cost there.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::io::stderr)
            .try_init();
        // As `nap serve` builds its runtime; the router itself runs on worker threads
        // of its own.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start a tokio runtime for the router")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .context("cannot bind the router")?;
        let port = listener.local_addr()?.port();
        let https = match tls {
            Some((tls, store)) => {
                let listener = runtime
                    .block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
                    .context("cannot bind the router's HTTPS listener")?;
                Some(Https {
                    listener,
                    acceptor: acceptor(tls, store)?,
                })
            }
            None => None,
        };
        let https_port = match &https {
            Some(https) => Some(https.listener.local_addr()?.port()),
            None => None,
        };
        // A fixed snapshot: the app `bench` and its instances. The sender stays
        // with the router task, as the daemon's stays alive while it serves.
        let routes: Routes = [("bench", instances.to_vec())].into_iter().collect();
        let (publish, receiver) = watch::channel(Arc::new(routes));
        let (stop, stopped) = oneshot::channel::<()>();
        runtime.spawn(nap_router::serve_listeners(
            Listeners {
                http: listener,
                https,
            },
            nap_router::Options::default(),
            receiver,
            async move {
                let _ = stopped.await;
                drop(publish);
            },
        ));
        Ok(RouterUnderTest {
            port,
            https_port,
            stop: Some(stop),
            runtime: Some(runtime),
        })
    }
}

/// The acceptor `nap serve` would build for `tls`'s certificate after a `certs:add`.
fn acceptor(
    tls: &crate::nginx::Tls,
    store: &std::path::Path,
) -> anyhow::Result<nap_router::HttpsAcceptor> {
    let mut pem = std::fs::read(&tls.certificate)?;
    pem.extend(std::fs::read(&tls.key)?);
    let now = std::time::SystemTime::now();
    let certificate = CheckedCertificate::parse(&pem, now).context("the bench certificate")?;
    let store = CertStore::open(store)?;
    store.save(
        &HostName::parse(crate::nginx::HOST)?,
        &certificate,
        Source::Uploaded,
        now,
    )?;
    Ok(store.https_acceptor(nap_certs::DEFAULT_HANDSHAKE_TIMEOUT)?)
}

impl Drop for RouterUnderTest {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}
