//! The web manager and JSON API of nap.
//!
//! nap's management commands (`apps`, `ps`, `scale`, `clone`, …) already
//! exist, with one implementation and one access check, behind SSH and the
//! control socket. This crate is a third door to the same commands: it
//! defines the [`Backend`] it needs (authenticate a login token, check
//! access, run a command as a user) and the daemon implements it. Nothing
//! here decides who may do what; every answer and every change comes from
//! [`Backend::access`] and [`Backend::run`].
//!
//! # Routes
//!
//! JSON API (`Authorization: Bearer TOKEN`, no cookies, no CSRF):
//!
//! - `GET /api/apps`: the rows of `apps --json`.
//! - `GET /api/apps/APP`: the app's row with `instances` (`ps APP --json`)
//!   and `releases` (`releases APP --json`).
//! - `GET /api/apps/APP/logs?n=N`: `{"lines": [...]}`, N from 1 to 10000,
//!   100 when not given.
//! - `POST /api/apps/APP/scale {"instances": N}`
//! - `POST /api/apps/APP/clone {"command": "...", "name": optional}`
//! - `POST /api/deploy {"name": "...", "url": "...", "ref": optional}`
//!
//! Actions answer `{"ok": true, "output": "..."}` once the command is done.
//! Errors are `{"error": "one line"}`: 401 (with `WWW-Authenticate: Bearer`)
//! without a valid token, 403 and 404 from [`Backend::access`], 404 for an
//! app name that breaks the naming rule, 400 for a bad body or a command's
//! usage error (exit status 2), 409 when a command refuses or fails (exit
//! status 1; `output` then holds everything it printed).
//!
//! Web manager (HTML, session cookie, CSRF token in every form). Its forms
//! and the JSON API share one layer (`ops`): the same field checks, the same
//! access calls and the same command lines, so the two cannot drift apart.
//!
//! - `GET /login`, `POST /login`, `POST /logout`
//! - `GET /`: the apps table and a "Deploy from URL" form.
//! - `GET /apps/APP`: instances, recent logs, releases, "Scale +1", a scale
//!   field, "Deploy similar app" and "Deploy from URL".
//! - `POST /apps/APP/scale`, `POST /apps/APP/clone`, `POST /deploy`: start
//!   an action and redirect to its page.
//! - `GET /actions/ID`: the action's output so far; `GET /actions/ID/events`
//!   streams it (server-sent events, replayed from the start, then live).
//!
//! # Sessions
//!
//! `POST /login` takes a token from `token`, asks [`Backend::authenticate`],
//! and makes a session: a random 256-bit id in the `nap_session` cookie
//! (`HttpOnly; SameSite=Strict; Path=/`; with [`Options::secure_cookies`]
//! also `Secure`, and named `__Host-nap_session` so that no other host can
//! set it), mapped in memory to the token and a per-session CSRF token.
//! Logging in always makes a new session id (and ends the old session). The token itself never reaches the browser after
//! login, nor a URL or a log line. Every request authenticates the stored
//! token again, so `token --revoke` (or removing the user) ends the session
//! at its next request. Sessions end after 12 hours, at `POST /logout`, and
//! when nap restarts.
//!
//! # CSRF
//!
//! Every form carries the session's CSRF token in a hidden `csrf` field,
//! compared in constant time; a POST without it or with another one is
//! refused with 403 before anything else happens. The login form, which has
//! no session yet, uses a double-submit token: a random `nap_login` cookie
//! that the form repeats. `SameSite=Strict` on both cookies is the second
//! line. Pages are served with a nonce-based Content-Security-Policy, so the
//! one inline style and script blocks are the only ones that run.
//!
//! # Actions
//!
//! Scale, clone and deploy from the web manager run in the background as
//! actions: the command's output is kept in memory (at most 1 MiB, 256
//! actions, finished ones for an hour) and streamed to the action's page,
//! which ends with the result and a link back. An action belongs to the user
//! who started it; for anybody else it does not exist (404).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

mod actions;
mod api;
mod command;
mod domains;
mod format;
pub use format::utc;
mod html;
mod names;
mod ops;
mod pages;
mod render;
mod serve;
mod session;

pub use serve::serve;

/// A boxed future that can be sent between threads, as [`Backend::run`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A user of nap, as a login token identifies them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user's name, as registered with their keys.
    pub name: String,
    /// Admins may act on every app.
    pub admin: bool,
}

/// A piece of a command's output: usually whole lines, each ending in `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Text the command wrote to standard output (what `--json` answers go to).
    Stdout(String),
    /// Text the command wrote to standard error (progress and errors).
    Stderr(String),
}

/// Why [`Backend::access`] refused; the text is shown to the user as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// There is no such app, or the user may not know that there is (404).
    #[error("{0}")]
    NotFound(String),
    /// The app exists and belongs to somebody else (403).
    #[error("{0}")]
    Forbidden(String),
}

/// What the web manager needs from nap; the daemon implements it.
pub trait Backend: Send + Sync + 'static {
    /// The user a login token belongs to (tokens come from `ssh ... token`;
    /// the backend stores them hashed), or `None` for an unknown or revoked token.
    fn authenticate(&self, token: &str) -> Option<User>;

    /// May `user` see (`write` = false) or change (`write` = true) `app`?
    /// The same rule as over SSH.
    fn access(&self, user: &User, app: &str, write: bool) -> Result<(), Denied>;

    /// Runs a management command as `user`, e.g. `["scale", "web", "3"]`,
    /// sending its output to `output` as it is written; returns the exit
    /// status (0 ok, 1 refused or failed, 2 bad usage).
    fn run(
        &self,
        user: User,
        args: Vec<String>,
        output: tokio::sync::mpsc::Sender<Chunk>,
    ) -> BoxFuture<'static, u32>;
}

/// How the web manager behaves.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Mark cookies `Secure`: true when browsers reach nap over https, false
    /// on plain http (where a `Secure` cookie would never come back).
    pub secure_cookies: bool,
}

/// Everything a request handler needs.
pub(crate) struct Web {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) sessions: session::Sessions,
    pub(crate) actions: actions::Actions,
}

/// The web manager and the JSON API, to hand to [`serve`].
pub fn router(backend: Arc<dyn Backend>, options: Options) -> axum::Router {
    let web = Arc::new(Web {
        backend,
        sessions: session::Sessions::new(options.secure_cookies),
        actions: actions::Actions::default(),
    });
    api::routes()
        .merge(pages::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(html::security_headers))
        .with_state(web)
}

/// The largest request body accepted, JSON or form.
const MAX_BODY_BYTES: usize = 64 * 1024;
