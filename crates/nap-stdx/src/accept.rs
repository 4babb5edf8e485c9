//! One step of an accept loop, shared by every listener (SSH, the control socket, the router).
//!
//! `accept(2)` fails for three kinds of reasons, and each wants its own answer:
//!
//! - a client's connection failed between its SYN and our accept (reset, aborted, a network
//!   error Linux passes on from the new socket): nothing is wrong with us; take the next one;
//! - the process or the machine is out of something (file descriptors, memory, buffers):
//!   trying again at once fails again at once, a busy loop that makes things worse; wait a
//!   little, longer each time, for connections to close;
//! - the listener itself is broken (not listening, not a socket): nothing will ever come; end.
//!
//! Errors nobody expects are treated as the second kind: waiting is never wrong, spinning or
//! stopping a daemon's door may be.

use std::future::Future;
use std::io;
use std::time::Duration;

/// What an accept loop does after a failed `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptFailure {
    /// One client's connection failed; accept the next at once.
    Skip,
    /// Out of descriptors, memory or buffers; wait, then try again.
    Pause,
    /// The listener cannot accept anything any more; end the loop.
    Stop,
}

/// Linux errno values that `std::io::ErrorKind` does not name (yet, on stable).
mod errno {
    pub(super) const EBADF: i32 = 9;
    pub(super) const EFAULT: i32 = 14;
    pub(super) const ENONET: i32 = 64;
    pub(super) const EPROTO: i32 = 71;
    pub(super) const ENOTSOCK: i32 = 88;
    pub(super) const ENOPROTOOPT: i32 = 92;
    pub(super) const ENETDOWN: i32 = 100;
    pub(super) const ENETUNREACH: i32 = 101;
    pub(super) const EHOSTDOWN: i32 = 112;
    pub(super) const EHOSTUNREACH: i32 = 113;
}

/// Which kind of failure `error` is.
pub fn classify(error: &io::Error) -> AcceptFailure {
    use io::ErrorKind::*;
    match error.kind() {
        // A client that gave up between SYN and accept, a signal, a spurious wakeup, or a
        // firewall rule against this one client.
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | TimedOut
        | PermissionDenied => return AcceptFailure::Skip,
        // EINVAL: the socket is not listening.
        InvalidInput => return AcceptFailure::Stop,
        _ => {}
    }
    match error.raw_os_error() {
        // Network errors of the new connection, which Linux reports from accept(2) itself.
        Some(
            errno::EPROTO
            | errno::ENOPROTOOPT
            | errno::ENETDOWN
            | errno::ENONET
            | errno::EHOSTDOWN
            | errno::EHOSTUNREACH
            | errno::ENETUNREACH,
        ) => AcceptFailure::Skip,
        Some(errno::EBADF | errno::ENOTSOCK | errno::EFAULT) => AcceptFailure::Stop,
        // EMFILE, ENFILE, ENOBUFS, ENOMEM, and whatever else.
        _ => AcceptFailure::Pause,
    }
}

/// The first pause after a failure that wants one; each further one in a row doubles.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Calls `accept_once` until it succeeds, skipping failed client connections and pausing
/// (50 ms, doubling to 1 s) while the process is out of descriptors or memory. Returns the
/// error that means the listener is broken. `what` names the listener in the log.
///
/// Dropping the future is fine at any point (the listener's accept is cancel-safe), so a
/// caller can race it against its shutdown signal in a `select!` and keep serving its other
/// branches while this waits.
pub async fn accept<T, F>(what: &str, mut accept_once: impl FnMut() -> F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>>,
{
    let mut pause = FIRST_PAUSE;
    loop {
        let error = match accept_once().await {
            Ok(accepted) => return Ok(accepted),
            Err(error) => error,
        };
        match classify(&error) {
            AcceptFailure::Skip => tracing::debug!(listener = what, %error, "accept"),
            AcceptFailure::Pause => {
                tracing::warn!(listener = what, %error, pause = ?pause, "accept failed; pausing");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            AcceptFailure::Stop => {
                tracing::error!(listener = what, %error, "the listener is broken; no more connections");
                return Err(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn failures_are_classified_by_what_they_mean_for_the_loop() {
        // EMFILE, ENFILE, ENOBUFS, ENOMEM: out of something; wait.
        for errno in [24, 23, 105, 12] {
            assert_eq!(classify(&os(errno)), AcceptFailure::Pause, "errno {errno}");
        }
        // ECONNABORTED, ECONNRESET, EINTR, EAGAIN, EPERM, EPROTO, ENETUNREACH: one client.
        for errno in [103, 104, 4, 11, 1, 71, 101, 113] {
            assert_eq!(classify(&os(errno)), AcceptFailure::Skip, "errno {errno}");
        }
        // EINVAL, EBADF, ENOTSOCK: the listener is broken.
        for errno in [22, 9, 88] {
            assert_eq!(classify(&os(errno)), AcceptFailure::Stop, "errno {errno}");
        }
        assert_eq!(
            classify(&io::Error::other("something new")),
            AcceptFailure::Pause
        );
    }

    /// Plays `answers` to the helper, one per call of `accept_once`.
    async fn play(answers: Vec<io::Result<u32>>) -> (io::Result<u32>, usize) {
        let mut answers: VecDeque<_> = answers.into();
        let mut calls = 0;
        let result = accept("test", || {
            calls += 1;
            let answer = answers.pop_front().expect("asked more often than answered");
            async move { answer }
        })
        .await;
        (result, calls)
    }

    #[tokio::test]
    async fn skips_and_pauses_keep_the_loop_going_and_a_broken_listener_ends_it() {
        let (result, calls) = play(vec![
            Err(os(104)),
            Err(os(24)),
            Err(os(24)),
            Err(os(103)),
            Ok(7),
        ])
        .await;
        assert_eq!(result.expect("accepted"), 7);
        assert_eq!(calls, 5);

        let (result, calls) = play(vec![Err(os(24)), Err(os(22)), Ok(1)]).await;
        assert_eq!(
            result.expect_err("ended").kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(calls, 2, "nothing is accepted after the listener broke");
    }
}
