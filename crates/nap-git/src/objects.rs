//! An object database made of several object directories, searched in order.
//!
//! gitoxide's object store learns about alternate object directories only from an
//! `objects/info/alternates` file. During a push, git's quarantine passes them in the
//! environment instead, and writing such a file would outlive the push (or, inside the
//! quarantine, be migrated into the repository). So nap opens one gitoxide store per
//! directory and asks them in turn; this type is that list.

use std::path::{Path, PathBuf};

use gix::objs::{Data, Find, FindHeader, Header};
use gix::odb::HandleArc;

/// The object stores of one repository, the push quarantine (if any) first.
///
/// Cloning is cheap (the stores are shared); each clone gets its own pack caches,
/// which is what the multi-threaded checkout wants per thread.
#[derive(Clone)]
pub(crate) struct Objects {
    stores: Vec<HandleArc>,
}

impl Objects {
    /// Search `stores` in this order.
    pub(crate) fn new(stores: Vec<HandleArc>) -> Self {
        Objects { stores }
    }

    /// Open the object directory at `dir` as an additional store.
    ///
    /// The directory's own `info/alternates`, if it has one, is honoured as git would.
    /// Its contents are not expected to change while nap reads it (a quarantine is frozen
    /// while the hook runs), so a missing object does not make the store rescan the disk:
    /// that keeps lookups that miss here and hit in a later store cheap.
    pub(crate) fn open_store(
        dir: &Path,
        object_hash: gix::hash::Kind,
    ) -> std::io::Result<HandleArc> {
        let mut handle = gix::odb::at_opts(
            dir,
            object_hash,
            None,
            gix::odb::store::init::Options::default(),
        )?
        .into_arc()?;
        handle.refresh_never();
        // The same delta-base cache gix gives a repository's own store by default.
        handle
            .set_pack_cache(|| Box::<gix::odb::pack::cache::lru::StaticLinkedList<64>>::default());
        Ok(handle)
    }

    /// The paths of the object directories, in search order, for messages.
    pub(crate) fn directories(&self) -> Vec<PathBuf> {
        self.stores
            .iter()
            .map(|store| store.store_ref().path().to_owned())
            .collect()
    }
}

impl Find for Objects {
    fn try_find<'a>(
        &self,
        id: &gix::oid,
        buffer: &'a mut Vec<u8>,
    ) -> gix::error::Result<Option<Data<'a>>> {
        let Some((last, first)) = self.stores.split_last() else {
            return Ok(None);
        };
        // Ask the earlier stores whether they have the object before borrowing `buffer`
        // for the result: a borrow returned from one loop iteration cannot be retried in
        // the next. Without a quarantine there is only `last`, so no extra lookup at all.
        for store in first {
            if gix::objs::Exists::exists(store, id) {
                return store.try_find(id, buffer);
            }
        }
        last.try_find(id, buffer)
    }
}

impl FindHeader for Objects {
    fn try_header(&self, id: &gix::oid) -> gix::error::Result<Option<Header>> {
        for store in &self.stores {
            if let Some(header) = store.try_header(id)? {
                return Ok(Some(header));
            }
        }
        Ok(None)
    }
}
