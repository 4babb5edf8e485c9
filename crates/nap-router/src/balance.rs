//! Spreading client connections evenly over the workers.
//!
//! Every worker accepts on the same listening socket, and a new connection goes to
//! whichever worker's `accept` comes first. With keep-alive clients that is decided once
//! per connection and then holds for all its requests, so a burst of connections (a load
//! balancer or a benchmark opening 32 at once) could leave one worker with most of them:
//! measured here, one thread at 55 % of a core and the other at 20 %, and 15 % fewer
//! requests per second than with the connections spread evenly.
//!
//! So each worker counts its open client connections, and a worker that has more than
//! one above the least loaded worker stops accepting until that is no longer so; the
//! others, woken by the same new connection, take it. The counts are atomics that only
//! their worker writes, read by the others with relaxed ordering: a stale read at worst
//! lets one connection land unevenly. A worker that stopped accepting looks again when
//! one of its own connections ends, and every [`RECHECK`] in case another worker's did,
//! so the least loaded worker always accepts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

/// How much a worker may be above the least loaded one and still accept.
const SLACK: usize = 1;

/// How often a worker that has stopped accepting looks at the counts again.
pub(crate) const RECHECK: Duration = Duration::from_millis(2);

/// The open client connections of every worker.
pub(crate) struct Loads(Box<[AtomicUsize]>);

impl Loads {
    /// Counts for `workers` workers, all at zero.
    pub(crate) fn new(workers: usize) -> Arc<Loads> {
        Arc::new(Loads((0..workers).map(|_| AtomicUsize::new(0)).collect()))
    }
}

/// One worker's place in the [`Loads`].
#[derive(Clone)]
pub(crate) struct Load {
    loads: Arc<Loads>,
    index: usize,
}

impl Load {
    /// The count of worker `index` of `loads`.
    pub(crate) fn of(loads: &Arc<Loads>, index: usize) -> Load {
        Load {
            loads: loads.clone(),
            index,
        }
    }

    fn count(&self) -> &AtomicUsize {
        &self.loads.0[self.index]
    }

    /// Whether this worker should take the next connection: it is no more than
    /// [`SLACK`] above the least loaded worker.
    pub(crate) fn may_accept(&self) -> bool {
        let mine = self.count().load(Ordering::Relaxed);
        self.loads
            .0
            .iter()
            .all(|other| mine <= other.load(Ordering::Relaxed) + SLACK)
    }

    /// Counts a connection this worker accepted, with its `permit` of the router-wide
    /// cap, until the returned guard is dropped.
    pub(crate) fn open(&self, permit: OwnedSemaphorePermit) -> Open {
        self.count().fetch_add(1, Ordering::Relaxed);
        Open {
            load: self.clone(),
            _permit: permit,
        }
    }
}

/// A client connection that is open: counted for its worker and holding its place under
/// the router's cap until dropped, which its task does when the connection ends.
pub(crate) struct Open {
    load: Load,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.load.count().fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permit() -> OwnedSemaphorePermit {
        Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .expect("a fresh semaphore has a permit")
    }

    #[test]
    fn only_workers_near_the_least_loaded_accept() {
        let loads = Loads::new(3);
        let workers: Vec<Load> = (0..3).map(|index| Load::of(&loads, index)).collect();
        let accepting = || -> Vec<bool> { workers.iter().map(Load::may_accept).collect() };
        assert_eq!(accepting(), [true, true, true]);
        let first = workers[0].open(permit());
        let second = workers[0].open(permit());
        // Two above the others: the first worker waits, the others take the next ones.
        assert_eq!(accepting(), [false, true, true]);
        let third = workers[1].open(permit());
        // Still two above the third worker, which has none.
        assert_eq!(accepting(), [false, true, true]);
        let fourth = workers[2].open(permit());
        assert_eq!(accepting(), [true, true, true]);
        drop((first, second, third, fourth));
        assert_eq!(accepting(), [true, true, true]);
        let alone = Loads::new(1);
        let only = Load::of(&alone, 0);
        let _many: Vec<Open> = (0..10).map(|_| only.open(permit())).collect();
        assert!(only.may_accept(), "a single worker always accepts");
    }
}
