//! Login sessions of the web manager, their cookies and CSRF tokens.
//!
//! The cookie holds only a random session id. The session, in memory, holds
//! the login token, so each request can ask the backend again whether the
//! token is still good: a revoked token ends its sessions at once.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};

use crate::{Backend, User};
use nap_stdx::{random_hex, same_secret};

/// The session cookie. Over https it gets the `__Host-` prefix, so that no
/// other host (an app on a sibling domain, say) can set or shadow it.
const SESSION_COOKIE: &str = "nap_session";
/// The login form's double-submit CSRF cookie.
const LOGIN_COOKIE: &str = "nap_login";
/// How long a session lasts, however busy.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept; the oldest go first.
const MAX_SESSIONS: usize = 10_000;
/// Random bytes in a session id or CSRF token.
const SECRET_BYTES: usize = 32;

/// A one-time message for the next page the user sees.
#[derive(Clone, Debug)]
pub(crate) struct Flash {
    /// An error (red) or a notice (green).
    pub(crate) error: bool,
    /// The message.
    pub(crate) text: String,
}

/// A logged-in user, as a request finds them.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// The session id (the cookie's value).
    pub(crate) id: String,
    /// Who is logged in, as the backend says now.
    pub(crate) user: User,
    /// The token every form of this session must carry.
    pub(crate) csrf: String,
}

impl Session {
    /// Whether a form's `csrf` field is this session's token.
    pub(crate) fn csrf_matches(&self, field: Option<&str>) -> bool {
        field.is_some_and(|field| same_secret(field, &self.csrf))
    }
}

struct Entry {
    token: String,
    user: String,
    csrf: String,
    created: Instant,
    flash: Option<Flash>,
}

/// All sessions, in memory: a restart logs everybody out.
pub(crate) struct Sessions {
    entries: Mutex<HashMap<String, Entry>>,
    /// Cookies are `Secure` (and `__Host-` named).
    secure: bool,
}

impl Sessions {
    /// No sessions yet; `secure` as in [`crate::Options::secure_cookies`].
    pub(crate) fn new(secure: bool) -> Sessions {
        Sessions {
            entries: Mutex::default(),
            secure,
        }
    }

    /// A cookie's name, with the `__Host-` prefix over https.
    fn name(&self, name: &str) -> String {
        if self.secure {
            format!("__Host-{name}")
        } else {
            name.to_owned()
        }
    }

    /// The session id in a request's cookies, if any.
    pub(crate) fn session_id<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        cookie(headers, &self.name(SESSION_COOKIE))
    }

    /// `Set-Cookie` for a new session.
    pub(crate) fn session_cookie(&self, id: &str) -> HeaderValue {
        set_cookie(
            &self.name(SESSION_COOKIE),
            id,
            Some(LIFETIME.as_secs()),
            self.secure,
        )
    }

    /// `Set-Cookie` that deletes the session cookie.
    pub(crate) fn clear_session_cookie(&self) -> HeaderValue {
        set_cookie(&self.name(SESSION_COOKIE), "", Some(0), self.secure)
    }

    /// The login form's CSRF token from its cookie, if it has a good one.
    pub(crate) fn login_token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        cookie(headers, &self.name(LOGIN_COOKIE)).filter(|token| {
            token.len() == 2 * SECRET_BYTES && token.bytes().all(|b| b.is_ascii_hexdigit())
        })
    }

    /// `Set-Cookie` for the login form's CSRF token; it lasts until the
    /// browser closes or the login succeeds.
    pub(crate) fn login_cookie(&self, token: &str) -> HeaderValue {
        set_cookie(&self.name(LOGIN_COOKIE), token, None, self.secure)
    }

    /// `Set-Cookie` that deletes the login cookie.
    pub(crate) fn clear_login_cookie(&self) -> HeaderValue {
        set_cookie(&self.name(LOGIN_COOKIE), "", Some(0), self.secure)
    }

    /// Whether the login form's `csrf` field repeats its cookie.
    pub(crate) fn login_token_matches(&self, headers: &HeaderMap, field: Option<&str>) -> bool {
        match (self.login_token(headers), field) {
            (Some(cookie), Some(field)) => same_secret(cookie, field),
            _ => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a session for `user`, who logged in with `token`; returns its id.
    pub(crate) fn create(&self, token: &str, user: &User) -> std::io::Result<String> {
        let id = random_hex(SECRET_BYTES)?;
        let csrf = random_hex(SECRET_BYTES)?;
        let mut entries = self.lock();
        let now = Instant::now();
        entries.retain(|_, entry| now.duration_since(entry.created) < LIFETIME);
        while entries.len() >= MAX_SESSIONS {
            let oldest = entries
                .iter()
                .min_by_key(|(_, entry)| entry.created)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(oldest) => entries.remove(&oldest),
                None => break,
            };
        }
        entries.insert(
            id.clone(),
            Entry {
                token: token.to_owned(),
                user: user.name.clone(),
                csrf,
                created: now,
                flash: None,
            },
        );
        Ok(id)
    }

    /// The session of a request's cookie, if it is still good: not expired,
    /// and its token still authenticates the same user. A session that is
    /// not good any more is forgotten.
    pub(crate) fn find(&self, backend: &dyn Backend, headers: &HeaderMap) -> Option<Session> {
        let id = self.session_id(headers)?;
        if id.len() != 2 * SECRET_BYTES || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let (token, name, csrf) = {
            let mut entries = self.lock();
            let entry = entries.get(id)?;
            if entry.created.elapsed() >= LIFETIME {
                entries.remove(id);
                return None;
            }
            (entry.token.clone(), entry.user.clone(), entry.csrf.clone())
        };
        // Outside our lock: the backend may take its own.
        match backend.authenticate(&token) {
            Some(user) if user.name == name => Some(Session {
                id: id.to_owned(),
                user,
                csrf,
            }),
            _ => {
                tracing::info!(user = %name, "session ended: its token is no longer valid");
                self.remove(id);
                None
            }
        }
    }

    /// Ends a session.
    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Leaves a message for the session's next page.
    pub(crate) fn set_flash(&self, id: &str, error: bool, text: impl Into<String>) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.flash = Some(Flash {
                error,
                text: text.into(),
            });
        }
    }

    /// Takes the message left for this page, if any.
    pub(crate) fn take_flash(&self, id: &str) -> Option<Flash> {
        self.lock().get_mut(id).and_then(|entry| entry.flash.take())
    }
}

/// The value of the cookie `name` in a request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// A `Set-Cookie` value; `max_age` `Some(0)` deletes the cookie, `None`
/// makes it last until the browser closes.
fn set_cookie(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> HeaderValue {
    let mut cookie = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/");
    if let Some(max_age) = max_age {
        cookie.push_str(&format!("; Max-Age={max_age}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    // Our names and values are ASCII letters, digits, `_` and `-`.
    HeaderValue::from_str(&cookie)
        .unwrap_or_else(|_| HeaderValue::from_static("nap_invalid=; Max-Age=0"))
}

/// A new login CSRF token (for the login cookie and the login form).
pub(crate) fn new_login_token() -> std::io::Result<String> {
    random_hex(SECRET_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; nap_session=abc"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("nap_login=def"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, LOGIN_COOKIE), Some("def"));
        assert_eq!(Sessions::new(false).session_id(&headers), Some("abc"));
        assert_eq!(
            Sessions::new(true).session_id(&headers),
            None,
            "over https only __Host-nap_session counts"
        );
        assert_eq!(cookie(&headers, "nap"), None);
        assert_eq!(
            set_cookie("nap_session", "x", Some(5), true),
            "nap_session=x; HttpOnly; SameSite=Strict; Path=/; Max-Age=5; Secure"
        );
        assert_eq!(
            set_cookie("nap_login", "y", None, false),
            "nap_login=y; HttpOnly; SameSite=Strict; Path=/"
        );
    }
}
