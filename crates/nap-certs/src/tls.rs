//! The TLS side of the router's HTTPS listener: the rustls server config,
//! the certificate picked by SNI, and the handshake.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::host::HostName;

/// The ALPN protocols offered, in the server's order of preference.
const ALPN_HTTP2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// How long a client gets to finish its handshake by default: long enough
/// for a slow mobile link, short enough that idle sockets do not pile up.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ring, the one crypto provider nap builds rustls with. It is passed
/// explicitly everywhere so that nothing depends on a process-wide default.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates being served, by host: rustls asks it for a certificate
/// on every handshake, by the name the client sent (SNI). The store updates
/// it whenever it saves or removes a certificate, so a new or renewed
/// certificate is served from the next handshake on.
#[derive(Default)]
pub struct CertResolver {
    by_host: RwLock<HashMap<HostName, Arc<CertifiedKey>>>,
}

impl CertResolver {
    /// The hosts a certificate is served for, sorted.
    pub fn hosts(&self) -> Vec<HostName> {
        let mut hosts: Vec<HostName> = self.read().keys().cloned().collect();
        hosts.sort();
        hosts
    }

    /// Whether a certificate is served for `host`.
    pub fn serves(&self, host: &HostName) -> bool {
        self.read().contains_key(host)
    }

    pub(crate) fn insert(&self, host: HostName, certified_key: Arc<CertifiedKey>) {
        self.write().insert(host, certified_key);
    }

    pub(crate) fn remove(&self, host: &HostName) {
        self.write().remove(host);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<HostName, Arc<CertifiedKey>>> {
        // The map is replaced entry by entry and never left half-changed, so
        // a panic elsewhere while the lock was held leaves it usable.
        self.by_host
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<HostName, Arc<CertifiedKey>>> {
        self.by_host
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("hosts", &self.hosts())
            .finish()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No SNI, or a name nap has no certificate for: returning `None`
        // makes rustls end the handshake with an alert. There is no default
        // certificate, which would only show the client a name mismatch.
        let Some(name) = client_hello.server_name() else {
            tracing::debug!("TLS handshake without SNI refused");
            return None;
        };
        let Ok(host) = HostName::parse(name) else {
            tracing::debug!(name = %name.escape_default(), "TLS handshake for an invalid name refused");
            return None;
        };
        let found = self.read().get(&host).cloned();
        if found.is_none() {
            tracing::debug!(%host, "TLS handshake for a host without certificate refused");
        }
        found
    }
}

/// The rustls config could not be made (only if the system's random number
/// generator fails).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS: {0}")]
pub struct TlsSetupError(#[from] rustls::Error);

/// The server config of the HTTPS listener: TLS 1.3 and 1.2 only, ALPN `h2`
/// then `http/1.1`, certificates by SNI from `resolver`, session tickets
/// for resumption, no 0-RTT data (it could be replayed).
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_HTTP2.to_vec(), ALPN_HTTP1.to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// Why a TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client took longer than the handshake timeout.
    #[error("TLS handshake timed out after {0:?}")]
    TimedOut(Duration),
    /// The handshake failed: no or unknown SNI, no common protocol version
    /// or cipher, a broken connection.
    #[error("TLS handshake failed: {0}")]
    Failed(#[source] io::Error),
}

/// Accepts TLS connections on the router's HTTPS listener. Cheap to clone.
#[derive(Clone)]
pub struct HttpsAcceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl HttpsAcceptor {
    /// An acceptor for `config`; a client gets `handshake_timeout` to finish
    /// its handshake ([`DEFAULT_HANDSHAKE_TIMEOUT`] unless a test needs less).
    pub fn new(config: Arc<ServerConfig>, handshake_timeout: Duration) -> HttpsAcceptor {
        HttpsAcceptor {
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            handshake_timeout,
        }
    }

    /// Runs the server side of the handshake on `io` (an accepted TCP
    /// stream).
    pub async fn accept<IO>(&self, io: IO) -> Result<HttpsStream<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(io)).await {
            Ok(Ok(stream)) => Ok(HttpsStream { stream }),
            Ok(Err(error)) => Err(HandshakeError::Failed(error)),
            Err(_) => Err(HandshakeError::TimedOut(self.handshake_timeout)),
        }
    }
}

impl fmt::Debug for HttpsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsAcceptor")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// A TLS connection after its handshake: read and write plain HTTP bytes.
pub struct HttpsStream<IO> {
    stream: tokio_rustls::server::TlsStream<IO>,
}

impl<IO> HttpsStream<IO> {
    /// Whether the client chose HTTP/2 by ALPN; otherwise it speaks HTTP/1.1.
    pub fn is_http2(&self) -> bool {
        self.stream.get_ref().1.alpn_protocol() == Some(ALPN_HTTP2)
    }

    /// The host the client asked for (SNI), lower case.
    pub fn server_name(&self) -> Option<&str> {
        self.stream.get_ref().1.server_name()
    }

    /// The underlying connection (for its peer address).
    pub fn get_ref(&self) -> &IO {
        self.stream.get_ref().0
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for HttpsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HttpsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl<IO: fmt::Debug> fmt::Debug for HttpsStream<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsStream")
            .field("io", self.get_ref())
            .field("server_name", &self.server_name())
            .field("http2", &self.is_http2())
            .finish()
    }
}
