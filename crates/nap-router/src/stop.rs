//! How the accept loop tells every open connection that the router is
//! stopping.
//!
//! A `tokio::sync::watch` (or `Notify`) would do, but a waiting `Notified`
//! takes the channel's lock every time it is polled, and a connection's task
//! is polled several times per request: every connection would take one lock
//! shared by all of them on every request. Here a connection takes the lock
//! once when it starts to wait and once when it ends; in between a poll is an
//! atomic load.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Shared {
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// The tasks waiting, by the id of their [`Stopping`].
    waiting: Mutex<HashMap<u64, Waker, BuildHasherDefault<Ids>>>,
}

/// Hashes the ids of [`Stopping`]s with one multiplication (Fibonacci hashing, which
/// spreads consecutive ids over all the bits): they are distinct counters from one
/// `fetch_add` that no client can choose, so SipHash's protection buys nothing, and
/// it was a tenth of what a new connection cost.
#[derive(Default)]
struct Ids(u64);

impl Hasher for Ids {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The sending side, held by the accept loop.
#[derive(Default)]
pub(crate) struct Stop {
    shared: Arc<Shared>,
}

impl Stop {
    /// A future for one connection that completes once [`Stop::stop`] has
    /// been called.
    pub(crate) fn stopping(&self) -> Stopping {
        Stopping {
            shared: self.shared.clone(),
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            registered: None,
        }
    }

    /// Completes every [`Stopping`], those made before and after.
    pub(crate) fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let waiting = std::mem::take(
            &mut *self
                .shared
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for waker in waiting.into_values() {
            waker.wake();
        }
    }
}

/// See [`Stop::stopping`].
pub(crate) struct Stopping {
    shared: Arc<Shared>,
    id: u64,
    /// The waker last registered, to tell whether the next poll comes from
    /// the same task (it does, unless the future is moved to another one).
    registered: Option<Waker>,
}

impl Stopping {
    /// Whether the stop has been asked for, without waiting (an atomic load).
    pub(crate) fn asked(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }
}

impl Future for Stopping {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        if self
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let waker = cx.waker().clone();
        self.shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.id, waker.clone());
        self.registered = Some(waker);
        // `stop` may have run between the first check and the insert, and
        // then it did not see this waker.
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Stopping {
    fn drop(&mut self) {
        if self.registered.is_some() {
            self.shared
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_completes_before_and_after_stop() {
        let stop = Stop::default();
        let early = stop.stopping();
        let waiting = tokio::spawn(early);
        // Let the task register before stopping.
        tokio::task::yield_now().await;
        stop.stop();
        waiting.await.expect("the early future completes");
        stop.stopping().await;
        assert!(
            stop.shared.waiting.lock().expect("lock").is_empty(),
            "nothing stays registered"
        );
    }
}
