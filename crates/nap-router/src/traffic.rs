//! Requests in flight per instance address, and addresses taken out of rotation: what
//! the daemon needs to drain an instance before it stops it.
//!
//! A drain goes: the daemon publishes routes without the instance, [`Traffic::retire`]s
//! its address (from then on no request starts on it, even one that read its routes
//! before they changed), waits in [`Traffic::until_idle`] until the requests already on
//! their way to it have their answers, stops the instance, and [`Traffic::forget`]s the
//! address, which a later instance may be given.
//!
//! Each worker keeps its own [`Presence`] per address (inside its `Upstream`), so a
//! request only writes atomics of its own worker; the daemon adds them up. A request
//! claims its instance before it uses a connection to it and gives the claim back when
//! the answer has been passed on in full (or broke): that interval is "in flight".
//!
//! Why no request slips through: a request counts itself in (`in_flight += 1`) and then
//! looks at `retired`; the daemon sets `retired` and then reads `in_flight`. With both
//! sides sequentially consistent, either the daemon sees the request, or the request
//! sees `retired` and goes elsewhere without having sent anything.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::Notify;

/// The router's requests in flight per instance address, and the addresses taken out of
/// rotation. Cheap to clone; every clone is the same book. Give it to the router in
/// [`crate::Options::traffic`] and keep a clone to drain instances with.
#[derive(Clone, Default)]
pub struct Traffic {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    book: Mutex<Book>,
    /// How many [`Traffic::until_idle`] calls are waiting: a request that ends wakes
    /// them only if there are any, so the usual request never touches `idle`.
    waiting: AtomicUsize,
    idle: Notify,
}

#[derive(Default)]
struct Book {
    /// Every worker's state of each address (one per `Upstream`), while it lives.
    presences: HashMap<SocketAddr, Vec<Weak<Presence>>>,
    /// Addresses out of rotation, with how many drains asked for that.
    retired: HashMap<SocketAddr, usize>,
}

impl Book {
    fn live(&self, addr: SocketAddr) -> impl Iterator<Item = Arc<Presence>> + '_ {
        self.presences
            .get(&addr)
            .into_iter()
            .flatten()
            .filter_map(Weak::upgrade)
    }
}

/// One worker's view of one instance address: its requests in flight there, and whether
/// the address is out of rotation.
pub(crate) struct Presence {
    in_flight: AtomicUsize,
    retired: AtomicBool,
    shared: Arc<Shared>,
}

/// A request on its way to an instance; dropping it ends that.
pub(crate) struct Claim(Arc<Presence>);

impl Drop for Claim {
    fn drop(&mut self) {
        let presence = &self.0;
        if presence.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && presence.shared.waiting.load(Ordering::SeqCst) > 0
        {
            presence.shared.idle.notify_waiters();
        }
    }
}

impl Presence {
    /// Counts a request in, unless the address is out of rotation.
    pub(crate) fn claim(self: &Arc<Self>) -> Option<Claim> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        // Made first so that a refusal counts the request out again.
        let claim = Claim(self.clone());
        if self.retired.load(Ordering::SeqCst) {
            return None;
        }
        Some(claim)
    }

    /// Whether the address is out of rotation: its connections are not kept.
    pub(crate) fn retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }
}

impl Traffic {
    /// A book with nothing in it.
    pub fn new() -> Traffic {
        Traffic::default()
    }

    /// A worker's state for `addr`, out of rotation from the start if `addr` is.
    pub(crate) fn presence(&self, addr: SocketAddr) -> Arc<Presence> {
        let mut book = self.lock();
        let presence = Arc::new(Presence {
            in_flight: AtomicUsize::new(0),
            retired: AtomicBool::new(book.retired.contains_key(&addr)),
            shared: self.shared.clone(),
        });
        let presences = book.presences.entry(addr).or_default();
        presences.retain(|weak| weak.strong_count() > 0);
        presences.push(Arc::downgrade(&presence));
        presence
    }

    /// Takes `addrs` out of rotation: no request starts on them from now on, whatever
    /// routes it read; requests already under way go on. Until [`Traffic::forget`].
    pub fn retire(&self, addrs: &[SocketAddr]) {
        let mut book = self.lock();
        for &addr in addrs {
            *book.retired.entry(addr).or_default() += 1;
            for presence in book.live(addr) {
                presence.retired.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Requests in flight to `addr` now, over all workers.
    pub fn in_flight(&self, addr: SocketAddr) -> usize {
        self.lock()
            .live(addr)
            .map(|presence| presence.in_flight.load(Ordering::SeqCst))
            .sum()
    }

    /// Waits until no request is in flight to any of `addrs`. Meant for retired
    /// addresses: on others new requests may keep coming.
    pub async fn until_idle(&self, addrs: &[SocketAddr]) {
        self.shared.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.shared);
        loop {
            // Registered before looking, so that a request ending in between wakes it.
            let mut notified = pin!(self.shared.idle.notified());
            notified.as_mut().enable();
            if addrs.iter().all(|&addr| self.in_flight(addr) == 0) {
                return;
            }
            notified.await;
        }
    }

    /// The instances at `addrs` are gone: the addresses may serve new instances, which
    /// start in rotation. What the workers knew of the old ones stays retired until the
    /// routes drop them.
    pub fn forget(&self, addrs: &[SocketAddr]) {
        let mut book = self.lock();
        for addr in addrs {
            if let Some(count) = book.retired.get_mut(addr) {
                *count -= 1;
                if *count == 0 {
                    book.retired.remove(addr);
                }
            }
        }
        book.presences.retain(|_, presences| {
            presences.retain(|weak| weak.strong_count() > 0);
            !presences.is_empty()
        });
    }

    /// How many addresses are out of rotation (for tests of the bound).
    pub fn retired_count(&self) -> usize {
        self.lock().retired.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.shared
            .book
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Traffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let book = self.lock();
        f.debug_struct("Traffic")
            .field("addresses", &book.presences.len())
            .field("retired", &book.retired.len())
            .finish()
    }
}

/// Counts a waiter out when its wait ends or is dropped.
struct Waiting<'a>(&'a Shared);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn a_retired_address_takes_no_new_request_and_idles_when_its_last_one_ends() {
        let traffic = Traffic::new();
        let (one, other_worker) = (traffic.presence(addr(1)), traffic.presence(addr(1)));
        let first = one.claim().expect("in rotation");
        let second = other_worker.claim().expect("in rotation");
        assert_eq!(traffic.in_flight(addr(1)), 2);

        traffic.retire(&[addr(1)]);
        assert!(one.claim().is_none(), "no new request on a retired address");
        assert!(
            traffic.presence(addr(1)).claim().is_none(),
            "nor on one a worker learns of later"
        );
        assert_eq!(
            traffic.in_flight(addr(1)),
            2,
            "refusals count themselves out"
        );

        let idle = tokio::spawn({
            let traffic = traffic.clone();
            async move { traffic.until_idle(&[addr(1)]).await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!idle.is_finished(), "one request is still in flight");
        drop(second);
        idle.await.expect("until_idle ends");

        traffic.forget(&[addr(1)]);
        assert_eq!(traffic.retired_count(), 0);
        assert!(
            traffic.presence(addr(1)).claim().is_some(),
            "a new instance on the address is in rotation"
        );
        assert!(one.retired(), "the old instance's state stays retired");
    }
}
