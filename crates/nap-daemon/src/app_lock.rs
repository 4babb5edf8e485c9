//! One lock per app: the operations on an app (pushes, rollbacks, config changes, scale,
//! restart, destroy) wait for each other; operations on different apps run in parallel.
//!
//! The map has an entry for an app only while someone holds or waits for its lock, so
//! it stays as small as the operations under way, whatever names were ever asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

type Locks = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// Every app's lock. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct AppLocks(Arc<Locks>);

/// Somebody who wants an app's lock: keeps the map's entry while waiting.
pub(crate) struct Waiter {
    app: String,
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
    locks: Arc<Locks>,
}

/// An app's lock, held; released (and the entry gone if nobody else waits) on drop.
pub(crate) struct AppLock {
    // Fields drop in order: the lock is released before the entry is looked at.
    _guard: OwnedMutexGuard<()>,
    _waiter: Waiter,
}

impl AppLocks {
    /// Asks for `app`'s lock.
    pub(crate) fn waiter(&self, app: &str) -> Waiter {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(app.to_owned())
            .or_default()
            .clone();
        Waiter {
            app: app.to_owned(),
            lock: Some(lock),
            locks: self.0.clone(),
        }
    }

    /// How many apps have an entry (for the test of the bound).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Waiter {
    fn mutex(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.lock
            .clone()
            .expect("a waiter has its lock until it is dropped")
    }

    /// The lock if nobody holds it, or the waiter back.
    pub(crate) fn try_lock(self) -> Result<AppLock, Waiter> {
        match self.mutex().try_lock_owned() {
            Ok(guard) => Ok(AppLock {
                _guard: guard,
                _waiter: self,
            }),
            Err(_) => Err(self),
        }
    }

    /// Waits for the lock. Dropping the future gives up waiting, and the entry goes if
    /// nobody else wants it.
    pub(crate) async fn lock(self) -> AppLock {
        let guard = self.mutex().lock_owned().await;
        AppLock {
            _guard: guard,
            _waiter: self,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        drop(self.lock.take());
        // Only the map holds it now: nobody holds or waits, and nobody can start to
        // without the map's lock, which is held here.
        if locks
            .get(&self.app)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.app);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_go_when_nobody_holds_or_waits() {
        let locks = AppLocks::default();
        for n in 0..1000 {
            let held = locks.waiter(&format!("app{n}")).lock().await;
            drop(held);
        }
        assert_eq!(locks.len(), 0, "one entry per name ever seen");

        let held = locks.waiter("web").lock().await;
        let waiting = tokio::spawn({
            let locks = locks.clone();
            async move { locks.waiter("web").lock().await }
        });
        tokio::task::yield_now().await;
        let refused = locks.waiter("web").try_lock();
        assert!(refused.is_err(), "the lock is held");
        drop(refused);
        assert_eq!(locks.len(), 1);
        drop(held);
        let second = waiting.await.expect("the waiter gets the lock");
        assert_eq!(locks.len(), 1, "kept while held");
        drop(second);
        assert_eq!(locks.len(), 0);

        // A waiter that gives up leaves nothing either.
        let held = locks.waiter("web").lock().await;
        let gave_up = tokio::time::timeout(
            std::time::Duration::from_millis(10),
            locks.waiter("web").lock(),
        )
        .await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(locks.len(), 0);
    }
}
