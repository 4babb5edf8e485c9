//! The HTTP-01 challenges being answered: ACME's server fetches
//! `http://HOST/.well-known/acme-challenge/TOKEN` and expects the key
//! authorization back. The router's plain-HTTP listener asks this registry
//! before it routes a request, without knowing anything of ACME.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The path prefix of HTTP-01 challenge requests (RFC 8555 §8.3).
pub const CHALLENGE_PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// What to answer a request for `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeLookup {
    /// Not a challenge path: route the request as usual.
    NotAChallenge,
    /// A challenge path with a token nap is not answering now: answer 404
    /// (the path belongs to nap, not to the app).
    Unknown,
    /// Answer 200 with this body, `Content-Type: text/plain`.
    Answer(String),
}

/// Token → key authorization of the challenges in flight. Cheap to clone;
/// all clones share one registry.
#[derive(Debug, Clone, Default)]
pub struct Challenges {
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl Challenges {
    /// An empty registry.
    pub fn new() -> Challenges {
        Challenges::default()
    }

    /// What to answer a request for `path` (the path of the request target,
    /// without the query string), on any host.
    pub fn lookup(&self, path: &str) -> ChallengeLookup {
        let Some(token) = path.strip_prefix(CHALLENGE_PATH_PREFIX) else {
            return ChallengeLookup::NotAChallenge;
        };
        match self.lock().get(token) {
            Some(key_authorization) => ChallengeLookup::Answer(key_authorization.clone()),
            None => ChallengeLookup::Unknown,
        }
    }

    /// How many challenges are being answered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no challenge is being answered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Answers `token` until the returned guard is dropped: when the order
    /// is done, has failed, or its task was cancelled.
    pub(crate) fn publish(&self, token: String, key_authorization: String) -> Published {
        self.lock().insert(token.clone(), key_authorization);
        Published {
            challenges: self.clone(),
            token,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, String>> {
        // Each change is one insert or remove, so a poisoned map is whole.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A published challenge; dropping it stops answering the token.
#[derive(Debug)]
pub(crate) struct Published {
    challenges: Challenges,
    token: String,
}

impl Drop for Published {
    fn drop(&mut self) {
        self.challenges.lock().remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_a_published_token_until_the_guard_drops() {
        let challenges = Challenges::new();
        let path = "/.well-known/acme-challenge/tok-EN_1";
        assert_eq!(challenges.lookup(path), ChallengeLookup::Unknown);
        let published = challenges.publish("tok-EN_1".into(), "tok-EN_1.thumb".into());
        assert_eq!(
            challenges.clone().lookup(path),
            ChallengeLookup::Answer("tok-EN_1.thumb".into())
        );
        assert_eq!(challenges.len(), 1);
        drop(published);
        assert_eq!(challenges.lookup(path), ChallengeLookup::Unknown);
        assert!(challenges.is_empty());
    }

    #[test]
    fn other_paths_are_not_challenges() {
        let challenges = Challenges::new();
        let _published = challenges.publish("abc".into(), "abc.thumb".into());
        assert_eq!(challenges.lookup("/"), ChallengeLookup::NotAChallenge);
        assert_eq!(
            challenges.lookup("/.well-known/acme-challenge"),
            ChallengeLookup::NotAChallenge
        );
        assert_eq!(
            challenges.lookup("/x/.well-known/acme-challenge/abc"),
            ChallengeLookup::NotAChallenge
        );
        assert_eq!(
            challenges.lookup("/.well-known/acme-challenge/abc/"),
            ChallengeLookup::Unknown
        );
        assert_eq!(
            challenges.lookup("/.well-known/acme-challenge/"),
            ChallengeLookup::Unknown
        );
    }
}
