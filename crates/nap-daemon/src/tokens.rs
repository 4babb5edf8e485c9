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
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct TokenBook {
    path: PathBuf,
    tokens: Mutex<Tokens>,
}

impl TokenBook {
    pub fn load(path: PathBuf) -> Result<TokenBook, nap_store::StoreError> {
        let tokens = nap_store::read_json(&path)?.unwrap_or_default();
        Ok(TokenBook {
            path,
            tokens: Mutex::new(tokens),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a new token for `user`; only its hash is kept.
    pub fn issue(&self, user: &str) -> Result<String, String> {
        let token = format!(
            "nap_{}",
            crate::hook::random_hex(32).map_err(|e| e.to_string())?
        );
        let mut tokens = self.lock();
        let mut next = tokens.clone();
        next.tokens.push(StoredToken {
            hash: hash(&token),
            user: user.to_owned(),
            created: crate::apps::now(),
        });
        nap_store::write_json(&self.path, &next).map_err(|e| e.to_string())?;
        *tokens = next;
        Ok(token)
    }

    /// Revokes every token of `user`; returns how many.
    pub fn revoke(&self, user: &str) -> Result<usize, String> {
        let mut tokens = self.lock();
        let mut next = tokens.clone();
        next.tokens.retain(|t| t.user != user);
        let revoked = tokens.tokens.len() - next.tokens.len();
        nap_store::write_json(&self.path, &next).map_err(|e| e.to_string())?;
        *tokens = next;
        Ok(revoked)
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
