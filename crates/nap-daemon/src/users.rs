//! Users and their keys: kept in memory, written through to `users.json` on
//! every change, so a key added or removed counts for the next connection.

use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

use nap_core::{Caller, KeyError, NameError, ParsedKey, UserName};
use nap_store::{StoredKey, User, Users};

/// A change to the users was refused or could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// Bad user name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Bad key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key is registered to somebody else.
    #[error("key {fingerprint} already belongs to user {owner}; one key identifies one user")]
    KeyTaken {
        /// The key.
        fingerprint: String,
        /// Its user.
        owner: String,
    },
    /// No such user.
    #[error("no user named {0}")]
    NoSuchUser(String),
    /// Saving failed; nothing changed.
    #[error(transparent)]
    Store(#[from] nap_store::StoreError),
}

/// What `keys:add` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// The key is new.
    Added,
    /// The user already had this key; nothing changed (but an --admin flag may have).
    AlreadyThere,
}

/// One row of `keys`.
pub struct KeyRow {
    pub user: String,
    pub admin: bool,
    pub kind: String,
    pub fingerprint: String,
    pub comment: String,
}

pub struct UserBook {
    path: PathBuf,
    /// What every connection reads: held only to copy or swap, never across a write to disk.
    users: RwLock<Users>,
    /// One change at a time, held while `users.json` is written (and fsynced), so that two
    /// changes never start from the same state and readers never wait for the disk.
    writer: Mutex<()>,
}

impl UserBook {
    pub fn load(path: PathBuf) -> Result<UserBook, UsersError> {
        let users = nap_store::read_json(&path)?.unwrap_or_default();
        Ok(UserBook {
            path,
            users: RwLock::new(users),
            writer: Mutex::new(()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Users> {
        self.users
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` to a copy, saves the copy, and only then makes it current.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut Users) -> Result<T, UsersError>,
    ) -> Result<T, UsersError> {
        let _one_writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.read().clone();
        let mut next = current.clone();
        let result = change(&mut next)?;
        if next != current {
            nap_store::write_json(&self.path, &next)?;
            *self
                .users
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
        }
        Ok(result)
    }

    /// The user a key belongs to. Keys of refused types never match.
    pub fn identify(&self, key: &nap_ssh::PublicKey) -> Option<Caller> {
        let parsed = nap_core::from_public_key(key).ok()?;
        let users = self.read();
        users.owner_of(&parsed.openssh).map(|(name, user)| Caller {
            user: name.to_owned(),
            admin: user.admin,
        })
    }

    /// A registered user, with their admin flag.
    pub fn get(&self, name: &str) -> Option<Caller> {
        self.read().users.get(name).map(|user| Caller {
            user: name.to_owned(),
            admin: user.admin,
        })
    }

    pub fn add(
        &self,
        name: &str,
        admin: bool,
        key_text: &str,
    ) -> Result<(Added, ParsedKey), UsersError> {
        let name = UserName::parse(name)?;
        let key = nap_core::parse_public_key(key_text)?;
        self.change(|users| {
            if let Some((owner, _)) = users.owner_of(&key.openssh)
                && owner != name.as_str()
            {
                return Err(UsersError::KeyTaken {
                    fingerprint: key.fingerprint.clone(),
                    owner: owner.to_owned(),
                });
            }
            let user = users
                .users
                .entry(name.to_string())
                .or_insert_with(User::default);
            user.admin |= admin;
            if user.keys.iter().any(|stored| stored.openssh == key.openssh) {
                return Ok((Added::AlreadyThere, key));
            }
            user.keys.push(StoredKey {
                openssh: key.openssh.clone(),
                kind: key.kind.clone(),
                fingerprint: key.fingerprint.clone(),
                comment: key.comment.clone(),
            });
            Ok((Added::Added, key))
        })
    }

    /// Removes a user and all their keys. Returns how many keys went.
    pub fn remove(&self, name: &str) -> Result<usize, UsersError> {
        self.change(|users| match users.users.remove(name) {
            Some(user) => Ok(user.keys.len()),
            None => Err(UsersError::NoSuchUser(name.escape_default().to_string())),
        })
    }

    pub fn list(&self) -> Vec<KeyRow> {
        let users = self.read();
        let mut rows = Vec::new();
        for (name, user) in &users.users {
            for key in &user.keys {
                rows.push(KeyRow {
                    user: name.clone(),
                    admin: user.admin,
                    kind: key.kind.clone(),
                    fingerprint: key.fingerprint.clone(),
                    comment: key.comment.clone(),
                });
            }
        }
        rows
    }
}
