//! The one rule for a new instance's health, which every runtime's
//! [`wait_healthy`](crate::Runtime::wait_healthy) applies:
//!
//! - An instance that accepts a TCP connection on its `$PORT` while it is still the process
//!   that was started is healthy at once (the port is tried from the start), as Heroku takes a
//!   web process for up once it binds `$PORT`.
//! - One that does not accept yet must stay alive for [`HealthPolicy::grace`]; an exit before
//!   it is healthy makes it unhealthy at once.
//! - One that listens on another TCP port (and not on `$PORT`) is rejected: the router would
//!   never reach it.
//! - One that listens nowhere gets until [`HealthPolicy::boot_timeout`] to open its port (a
//!   slow starter); still alive then but listening nowhere, it is a worker, and healthy, but
//!   [`Healthy::listening`] says it does not listen.
//!
//! A runtime that cannot see an instance's sockets (a cluster machine) cannot tell the third
//! case from the fourth and takes it for a worker.
//!
//! Every connection attempt has a timeout ([`accepts`]): a filtered port must not hold a deploy
//! for the minutes a TCP connect may take.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

/// How long a new instance gets, as the deployer asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// How long an instance that does not accept on its port must stay alive.
    pub grace: Duration,
    /// How long an instance may take to open its port before it counts as a worker (or is
    /// rejected for listening elsewhere). Never shorter than `grace` in effect.
    pub boot_timeout: Duration,
}

impl HealthPolicy {
    /// A policy whose verdict comes at the end of `grace` (no extra boot time).
    pub fn grace(grace: Duration) -> HealthPolicy {
        HealthPolicy {
            grace,
            boot_timeout: grace,
        }
    }

    /// The boot timeout, but at least the grace period.
    pub fn boot_deadline(&self) -> Duration {
        self.boot_timeout.max(self.grace)
    }
}

impl From<Duration> for HealthPolicy {
    /// [`HealthPolicy::grace`].
    fn from(grace: Duration) -> HealthPolicy {
        HealthPolicy::grace(grace)
    }
}

/// A healthy instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Healthy {
    /// Whether it accepted a connection on its port; `false` for a worker.
    pub listening: bool,
}

/// Why an instance is not healthy, with the last lines it wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Unhealthy {
    /// What went wrong, e.g. `exited with status 1` or
    /// `listening on 5000, not on $PORT (20001)`.
    pub reason: String,
    /// The instance's last lines of output (stdout and stderr, without timestamps), oldest
    /// first; empty where the runtime does not keep them.
    pub last_lines: Vec<String>,
}

impl Unhealthy {
    /// An answer without output lines.
    pub fn new(reason: impl Into<String>) -> Unhealthy {
        Unhealthy {
            reason: reason.into(),
            last_lines: Vec::new(),
        }
    }
}

/// How long one probe of a port may take before it counts as "not accepting".
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a port is tried while an instance boots. A refused connection costs a few
/// microseconds and never reaches the app.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// How long after its try number `attempt - 1` a booting instance's port is tried again
/// (try 0 is at once): 1 ms, 2 ms, 3 ms … up to [`PROBE_INTERVAL`]. An app that listens a
/// few milliseconds after its start (most compiled servers do) is seen up within a
/// millisecond or two of it rather than at the next 10 ms tick, for nine tries more in the
/// first 45 ms; one that takes longer is tried every [`PROBE_INTERVAL`] as before.
pub fn probe_delay(attempt: u32) -> Duration {
    Duration::from_millis(u64::from(attempt)).min(PROBE_INTERVAL)
}

/// Whether `address` accepts a TCP connection within `timeout`. The connection is closed at
/// once.
pub async fn accepts(address: SocketAddr, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect(address)).await,
        Ok(Ok(_))
    )
}

/// Why [`accepts`] said no, for messages: the connect error, or that it timed out.
pub async fn connect_error(address: SocketAddr, timeout: Duration) -> Option<String> {
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(_)) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_elapsed) => Some("connection timed out".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_booting_port_is_tried_at_once_then_ever_less_often_up_to_the_interval() {
        let delays: Vec<u64> = (0..13)
            .map(|attempt| probe_delay(attempt).as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10]);
        assert_eq!(probe_delay(u32::MAX), PROBE_INTERVAL);
    }

    #[tokio::test]
    async fn a_listening_port_accepts_and_a_closed_one_does_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = listener.local_addr().expect("address");
        assert!(accepts(open, CONNECT_TIMEOUT).await);
        drop(listener);
        assert!(!accepts(open, CONNECT_TIMEOUT).await);
        let reason = connect_error(open, CONNECT_TIMEOUT).await.expect("refused");
        assert!(reason.contains("refused"), "{reason}");
    }

    /// A port whose accept queue is full drops new SYNs, as a filtered port does: without its
    /// own timeout a connect would wait for the kernel's SYN retries (about two minutes).
    #[tokio::test]
    async fn a_port_that_never_answers_does_not_hold_the_probe() {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let address = socket.local_addr().expect("address");
        // Backlog 0: one connection fits in the queue, nobody accepts it, the next SYN is dropped.
        let listener = socket.listen(0).expect("listen");
        let mut queued = Vec::new();
        for _ in 0..4 {
            let connect = TcpStream::connect(address);
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(300), connect).await
            {
                queued.push(stream);
            }
        }
        // The outer timeout turns a probe without its own timeout into a failure, not a hang.
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            accepts(address, Duration::from_millis(200)),
        )
        .await
        .expect("the probe gave up on its own");
        assert!(!answer);
        let reason = connect_error(address, Duration::from_millis(200)).await;
        assert_eq!(reason.as_deref(), Some("connection timed out"));
        drop((listener, queued));
    }

    #[test]
    fn the_boot_deadline_is_never_before_the_grace() {
        let policy = HealthPolicy {
            grace: Duration::from_secs(3),
            boot_timeout: Duration::from_secs(1),
        };
        assert_eq!(policy.boot_deadline(), Duration::from_secs(3));
        assert_eq!(
            HealthPolicy::from(Duration::from_secs(2)).boot_deadline(),
            Duration::from_secs(2)
        );
    }
}
