//! One HTTP/1.1 request per connection, over TCP or a unix socket: all that
//! the fleet and etcd clients need. fleet's API and etcd's JSON gateway are
//! called a few times per instance start, so a connection pool would buy
//! nothing but state.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// Most bytes of an answer's body read. fleet's largest answer is a page of
/// units (100 by default, a few KiB each); anything far beyond is a server
/// gone wrong, which must not grow the daemon.
pub(crate) const MAX_REPLY_BYTES: usize = 8 << 20;

/// Where a server listens: `http://host:port` or `unix:///path`, as
/// `fleetctl --endpoint` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// TCP, with the `host:port` to connect to (and to send as `Host`).
    Http { authority: String },
    /// A unix socket.
    Unix { path: PathBuf },
}

impl Endpoint {
    /// Parses `http://host:port[/]` or `unix:///absolute/path`.
    pub(crate) fn parse(text: &str) -> Result<Endpoint, String> {
        if let Some(rest) = text.strip_prefix("http://") {
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
                return Err("expected http://HOST:PORT with no path".to_owned());
            }
            let authority = if authority
                .rsplit_once(':')
                .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
                && !authority.ends_with(']')
            {
                authority.to_owned()
            } else {
                format!("{authority}:80")
            };
            return Ok(Endpoint::Http { authority });
        }
        if let Some(path) = text.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err("expected unix:///ABSOLUTE/PATH".to_owned());
            }
            return Ok(Endpoint::Unix {
                path: PathBuf::from(path),
            });
        }
        if text.starts_with("https://") {
            return Err(
                "https is not supported: use http:// on a private network, or unix:///path"
                    .to_owned(),
            );
        }
        Err("expected http://HOST:PORT or unix:///PATH".to_owned())
    }

    /// Sends one request and reads the whole answer. Connection failures are
    /// told apart from failures after the request may have been sent, so
    /// that only the former are retried blindly.
    pub(crate) async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Reply, TransportError> {
        let host = match self {
            Endpoint::Http { authority } => authority.clone(),
            Endpoint::Unix { .. } => "localhost".to_owned(),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, host)
            .header(header::CONNECTION, "close")
            .header(header::ACCEPT, "application/json");
        if json_body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(json_body.unwrap_or_default())))
            .map_err(|e| TransportError::Exchange(e.to_string()))?;
        let exchange = async {
            match self {
                Endpoint::Http { authority } => {
                    let stream = TcpStream::connect(authority.as_str())
                        .await
                        .map_err(TransportError::Connect)?;
                    exchange(stream, request).await
                }
                Endpoint::Unix { path } => {
                    let stream = UnixStream::connect(path)
                        .await
                        .map_err(TransportError::Connect)?;
                    exchange(stream, request).await
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout(timeout))?
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Http { authority } => write!(f, "http://{authority}"),
            Endpoint::Unix { path } => write!(f, "unix://{}", path.display()),
        }
    }
}

async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<Reply, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| TransportError::Exchange(e.to_string()))?;
    // The connection future drives the socket; it ends once the sender is
    // dropped (at the end of `talk`) and the server has closed.
    let talk = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| TransportError::Exchange(e.to_string()))?;
        let status = response.status();
        // A fleet or etcd that answers without end must not fill the daemon's memory.
        let body = Limited::new(response.into_body(), MAX_REPLY_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    TransportError::TooLarge(MAX_REPLY_BYTES)
                } else {
                    TransportError::Exchange(e.to_string())
                }
            })?
            .to_bytes();
        Ok(Reply { status, body })
    };
    let (reply, _connection) = tokio::join!(talk, connection);
    reply
}

/// A whole answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as text, shortened for messages.
    pub(crate) fn text_excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(200) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        }
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum TransportError {
    /// No connection: nothing was sent, so a retry is always safe.
    Connect(std::io::Error),
    /// The connection broke or HTTP went wrong; the request may have been seen.
    Exchange(String),
    /// No whole answer in time.
    Timeout(Duration),
    /// The answer's body is longer than this many bytes; the rest was not read.
    TooLarge(usize),
}

impl TransportError {
    /// Whether nothing reached the server.
    pub(crate) fn nothing_sent(&self) -> bool {
        matches!(self, TransportError::Connect(_))
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Connect(e) => write!(f, "cannot connect: {e}"),
            TransportError::Exchange(e) => write!(f, "{e}"),
            TransportError::Timeout(t) => write!(f, "no answer within {} s", t.as_secs_f64()),
            TransportError::TooLarge(limit) => {
                write!(
                    f,
                    "an answer longer than {} MiB; gave up reading it",
                    limit >> 20
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hyper::Method;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{Endpoint, MAX_REPLY_BYTES, TransportError};

    /// A server that answers with a body that never ends: the client stops
    /// at the bound and says so, instead of reading it all.
    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = stream.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            stream.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0usize;
            // Twice the bound at most, so that a client without one ends too.
            while sent <= 2 * MAX_REPLY_BYTES {
                let frame = format!("{:x}\r\n", chunk.len());
                if stream.write_all(frame.as_bytes()).await.is_err()
                    || stream.write_all(&chunk).await.is_err()
                    || stream.write_all(b"\r\n").await.is_err()
                {
                    return sent;
                }
                sent += chunk.len();
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
            sent
        });
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let reply = endpoint
            .request(
                Method::GET,
                "/fleet/v1/units",
                None,
                Duration::from_secs(30),
            )
            .await;
        assert!(
            matches!(reply, Err(TransportError::TooLarge(MAX_REPLY_BYTES))),
            "{:?}",
            reply.map(|reply| reply.body.len())
        );
        let sent = server.await.unwrap();
        assert!(sent < 2 * MAX_REPLY_BYTES, "the client read {sent} bytes");
    }

    fn check(text: &str, expected: Result<&str, &str>) {
        let got = Endpoint::parse(text).map(|e| e.to_string());
        match expected {
            Ok(display) => assert_eq!(got.as_deref(), Ok(display), "{text}"),
            Err(part) => assert!(
                got.as_ref().is_err_and(|e| e.contains(part)),
                "{text}: {got:?}"
            ),
        }
    }

    #[test]
    fn endpoints_as_fleetctl_takes_them() {
        check("http://127.0.0.1:49153", Ok("http://127.0.0.1:49153"));
        check("http://127.0.0.1:49153/", Ok("http://127.0.0.1:49153"));
        check("http://fleet.internal", Ok("http://fleet.internal:80"));
        check("http://[::1]:4001", Ok("http://[::1]:4001"));
        check(
            "unix:///var/run/fleet.sock",
            Ok("unix:///var/run/fleet.sock"),
        );
        check("unix://var/run/fleet.sock", Err("ABSOLUTE"));
        check("https://fleet:443", Err("https is not supported"));
        check("http://host:1/fleet", Err("no path"));
        check("fleet:49153", Err("expected"));
    }
}
