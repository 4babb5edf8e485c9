//! The profile's `healthcheck:` path: a new instance that is up (it accepts on its port) must
//! also answer `GET PATH` with a 2xx or 3xx status before it takes requests and before any
//! old instance stops. Until then its address is held out of the router's routes.
//!
//! The probe is plain HTTP/1.1 over a fresh connection each time, with a connect and an
//! answer timeout, every [`PROBE_INTERVAL`] until the deadline; only the status line is read.
//! An instance still warming up (connection refused, 503) gets more tries until its
//! `healthcheck_timeout` runs out; the verdict names the last thing it saw.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long each instance gets to pass the check when the profile does not say.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the path is asked for.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// How long one connect may take (a full accept backlog makes connect wait).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one answer's status line may take to arrive.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of an answer that is read for its status line.
const MAX_STATUS_LINE: usize = 1024;

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// An HTTP status.
    Status(u16),
    /// No status: why (`connection refused`, `no answer within 5s`, ...).
    Nothing(String),
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seen::Status(status) => write!(f, "status {status}"),
            Seen::Nothing(why) => f.write_str(why),
        }
    }
}

/// Why an instance did not pass its health check.
#[derive(Debug, thiserror::Error)]
#[error("GET {path} did not answer 2xx or 3xx within {}s (last seen: {last})", timeout.as_secs())]
pub(crate) struct Failed {
    /// The path asked for.
    pub(crate) path: String,
    /// How long it had.
    pub(crate) timeout: Duration,
    /// The last probe's result.
    pub(crate) last: Seen,
}

/// Asks `address` for `path` until it answers 2xx or 3xx (returns the status) or `timeout`
/// has passed. `host` goes into the `Host` header (what the router would send).
pub(crate) async fn check(
    address: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<u16, Failed> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let attempt = tokio::time::timeout_at(deadline, probe(address, host, path)).await;
        match attempt {
            Ok(Seen::Status(status)) if (200..400).contains(&status) => return Ok(status),
            Ok(seen) => last = Some(seen),
            // A probe the deadline cut short tells nothing: the one before it is the news.
            Err(_) => {}
        }
        let next = Instant::now() + PROBE_INTERVAL;
        if next >= deadline {
            return Err(Failed {
                path: path.to_owned(),
                timeout,
                last: last
                    .unwrap_or_else(|| Seen::Nothing("no answer before the deadline".to_owned())),
            });
        }
        tokio::time::sleep_until(next).await;
    }
}

/// One `GET path` on a new connection.
async fn probe(address: SocketAddr, host: &str, path: &str) -> Seen {
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Seen::Nothing(format!("cannot connect: {error}")),
        Err(_) => {
            return Seen::Nothing(format!(
                "no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            ));
        }
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: nap-healthcheck\r\nConnection: close\r\n\r\n"
    );
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        let mut buffer = [0u8; 256];
        while !answer.contains(&b'\n') && answer.len() < MAX_STATUS_LINE {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..read]);
        }
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
        Ok(Ok(answer)) => match status(&answer) {
            Some(status) => Seen::Status(status),
            None if answer.is_empty() => {
                Seen::Nothing("the connection closed without an answer".to_owned())
            }
            None => Seen::Nothing("an answer that is not HTTP".to_owned()),
        },
        Ok(Err(error)) => Seen::Nothing(format!("connection failed: {error}")),
        Err(_) => Seen::Nothing(format!("no answer within {}s", ANSWER_TIMEOUT.as_secs())),
    }
}

/// The status of `HTTP/1.x NNN ...`.
fn status(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let version = words.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = words.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|code| (100..600).contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_is_read_strictly() {
        assert_eq!(status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status(b"HTTP/1.0 302 Found\r\nLocation: /\r\n"), Some(302));
        assert_eq!(status(b"HTTP/1.1 500"), Some(500));
        for bad in [
            &b""[..],
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 abc\r\n",
            b"HTTP/1.1 099 x\r\n",
        ] {
            assert_eq!(status(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn a_path_that_answers_500_fails_with_the_status_and_one_that_answers_200_passes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let address = listener.local_addr().expect("address");
        // Answers 500 twice, then 200: the check keeps asking until it passes.
        let server = tokio::spawn(async move {
            for answer in ["500 Oops", "500 Oops", "200 OK"] {
                let (mut stream, _) = listener.accept().await.expect("accept");
                let mut request = [0u8; 512];
                let read = stream.read(&mut request).await.expect("read");
                assert!(
                    request[..read].starts_with(b"GET /healthz HTTP/1.1\r\nHost: app.test\r\n")
                );
                let reply = format!("HTTP/1.1 {answer}\r\nContent-Length: 0\r\n\r\n");
                stream.write_all(reply.as_bytes()).await.expect("write");
            }
            listener
        });
        let passed = check(address, "app.test", "/healthz", Duration::from_secs(20)).await;
        assert_eq!(passed.expect("passes on the third try"), 200);
        let listener = server.await.expect("server");
        let server = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.expect("accept");
                let mut request = [0u8; 512];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
                    .await;
            }
        });
        let failed = check(address, "app.test", "/healthz", Duration::from_millis(700))
            .await
            .expect_err("500 fails");
        assert_eq!(failed.last, Seen::Status(500));
        assert!(
            failed.to_string().contains("last seen: status 500"),
            "{failed}"
        );
        server.abort();
    }
}
