//! Web manager login tokens: printed once by `token`, stored only as SHA-256
//! hashes in `tokens.json`, revoked with `token --revoke`.

use std::path::PathBuf;
use std::sync::Mutex;

use nap_core::Caller;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `tokens.json`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Tokens {
    tokens: Vec<StoredToken>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredToken {
    /// SHA-256 of the token, hex.
    hash: String,
    user: String,
    created: u64,
}

fn hash(token: &str) -> String {
    nap_stdx::hex(&Sha256::digest(token.as_bytes()))
}

/// A token could not be made or revoked; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The kernel gave no random bytes.
    #[error("no randomness for a token: {0}")]
    Random(#[from] std::io::Error),
    /// `tokens.json` could not be written.
    #[error(transparent)]
    Store(#[from] nap_store::StoreError),
}

pub struct TokenBook {
    path: PathBuf,
    /// What requests read: held only to copy or swap, never across a write to disk.
    tokens: Mutex<Tokens>,
    /// One change at a time, held while the file is written, so that two changes never
    /// start from the same state.
    writer: Mutex<()>,
}

impl TokenBook {
    pub fn load(path: PathBuf) -> Result<TokenBook, nap_store::StoreError> {
        let tokens = nap_store::read_json(&path)?.unwrap_or_default();
        Ok(TokenBook {
            path,
            tokens: Mutex::new(tokens),
            writer: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` to a copy, writes the copy, and only then makes it current; requests
    /// that check tokens meanwhile see the old state and never wait for the disk.
    fn change<T>(&self, change: impl FnOnce(&mut Tokens) -> T) -> Result<T, TokenError> {
        let _one_writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = self.lock().clone();
        let result = change(&mut next);
        nap_store::write_json(&self.path, &next)?;
        *self.lock() = next;
        Ok(result)
    }

    /// Makes a new token for `user`; only its hash is kept.
    pub fn issue(&self, user: &str) -> Result<String, TokenError> {
        let token = format!("nap_{}", nap_stdx::random_hex(32)?);
        self.change(|next| {
            next.tokens.push(StoredToken {
                hash: hash(&token),
                user: user.to_owned(),
                created: crate::apps::now(),
            });
        })?;
        Ok(token)
    }

    /// Revokes every token of `user`; returns how many.
    pub fn revoke(&self, user: &str) -> Result<usize, TokenError> {
        self.change(|next| {
            let before = next.tokens.len();
            next.tokens.retain(|t| t.user != user);
            before - next.tokens.len()
        })
    }

    /// The user name a token belongs to.
    pub fn user_of(&self, token: &str) -> Option<String> {
        if !token.starts_with("nap_") || token.len() > 100 {
            return None;
        }
        let wanted = hash(token);
        self.lock()
            .tokens
            .iter()
            .find(|t| t.hash == wanted)
            .map(|t| t.user.clone())
    }
}

impl crate::Daemon {
    /// The caller a web token stands for: its user must still exist (a
    /// removed user's tokens die with them), with their current admin flag.
    pub(crate) fn authenticate_token(&self, token: &str) -> Option<Caller> {
        let user = self.tokens.user_of(token)?;
        if user == crate::control::OPERATOR {
            return Some(Caller { user, admin: true });
        }
        self.users.get(&user)
    }
}
