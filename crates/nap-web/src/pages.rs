//! The web manager: HTML pages, their forms, and the pages of actions.
//!
//! Forms run through the same checks and command lines as the JSON API
//! (`ops`); what they add is the session, the CSRF token, and showing
//! errors in the page instead of as JSON.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::Extensions;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::actions::{self, Actions, Label};
use crate::html::{Page, render};
use crate::names::is_app_name;
use crate::ops::{self, Failure};
use crate::serve::Closing;
use crate::session::{self, Session};
use crate::{Web, render as body};

/// The web manager's routes.
pub(crate) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/", get(apps))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/apps/{app}", get(app))
        .route("/apps/{app}/scale", post(scale))
        .route("/apps/{app}/clone", post(clone))
        .route("/apps/{app}/domains", post(crate::domains::add_form))
        .route(
            "/apps/{app}/domains/remove",
            post(crate::domains::remove_form),
        )
        .route("/deploy", post(deploy))
        .route("/actions/{id}", get(action))
        .route("/actions/{id}/events", get(action_events))
        .fallback(not_found)
}

/// A form's fields.
pub(crate) type Fields = HashMap<String, String>;

/// An error page.
fn error_page(status: StatusCode, session: Option<&Session>, message: &str) -> Response {
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%message, "page failed");
    }
    render(
        status,
        Page {
            title: "Error",
            session,
            flash: None,
            body: body::error(message),
        },
    )
}

/// The page for a failure.
fn failure_page(failure: &Failure, session: Option<&Session>) -> Response {
    if let Failure::Internal(details) = failure {
        tracing::error!(%details, "page failed");
    }
    error_page(failure.status(), session, failure.message())
}

/// 303 to `to`: after a form, the browser GETs the next page.
fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn to_login() -> Response {
    see_other("/login")
}

/// The session of a page request, or the redirect to the login form.
fn logged_in(web: &Web, headers: &HeaderMap) -> Result<Session, Box<Response>> {
    web.sessions
        .find(web.backend.as_ref(), headers)
        .ok_or_else(|| Box::new(to_login()))
}

/// The session of a form POST whose CSRF token matches, or the response.
/// Without a session the browser goes to the login form; a missing or
/// wrong token gets 403 and nothing happens.
fn form_session(
    web: &Web,
    headers: &HeaderMap,
    form: &Result<Form<Fields>, FormRejection>,
) -> Result<Session, Box<Response>> {
    let session = logged_in(web, headers)?;
    let field = form
        .as_ref()
        .ok()
        .and_then(|Form(fields)| fields.get("csrf"))
        .map(String::as_str);
    if !session.csrf_matches(field) {
        tracing::warn!(user = %session.user.name, "form refused: CSRF token missing or wrong");
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            Some(&session),
            "This form did not come from this page (CSRF token missing or wrong). Reload the page and try again.",
        )));
    }
    Ok(session)
}

/// Goes back to `to` with `message` shown there.
fn back_with_error(web: &Web, session: &Session, to: &str, message: &str) -> Response {
    web.sessions.set_flash(&session.id, true, message);
    see_other(to)
}

async fn not_found(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let session = web.sessions.find(web.backend.as_ref(), &headers);
    error_page(
        StatusCode::NOT_FOUND,
        session.as_ref(),
        "There is no such page.",
    )
}

async fn login_form(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if web.sessions.find(web.backend.as_ref(), &headers).is_some() {
        return see_other("/");
    }
    login_page(&web, &headers, StatusCode::OK, None)
}

/// The login form, with a fresh login CSRF cookie unless it has one already.
fn login_page(web: &Web, headers: &HeaderMap, status: StatusCode, error: Option<&str>) -> Response {
    let (token, new_cookie) = match web.sessions.login_token(headers) {
        Some(token) => (token.to_owned(), false),
        None => match session::new_login_token() {
            Ok(token) => (token, true),
            Err(e) => {
                return error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    &format!("no randomness: {e}"),
                );
            }
        },
    };
    let flash = error.map(|text| session::Flash {
        error: true,
        text: text.to_owned(),
    });
    let mut response = render(
        status,
        Page {
            title: "Log in",
            session: None,
            flash,
            body: body::login(&token),
        },
    );
    if new_cookie {
        response
            .headers_mut()
            .append(header::SET_COOKIE, web.sessions.login_cookie(&token));
    }
    response
}

async fn login(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let Ok(Form(fields)) = form else {
        return login_page(
            &web,
            &headers,
            StatusCode::BAD_REQUEST,
            Some("The form could not be read."),
        );
    };
    if !web
        .sessions
        .login_token_matches(&headers, fields.get("csrf").map(String::as_str))
    {
        return error_page(
            StatusCode::FORBIDDEN,
            None,
            "This login form did not come from this page (CSRF token missing or wrong). Reload it and try again.",
        );
    }
    let token = fields
        .get("token")
        .map(|token| token.trim())
        .unwrap_or_default();
    let user = if token.is_empty() || token.len() > 256 {
        None
    } else {
        web.backend.authenticate(token)
    };
    let Some(user) = user else {
        tracing::info!("web login refused: unknown token");
        return login_page(
            &web,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("That token is not valid (or was revoked)."),
        );
    };
    let id = match web.sessions.create(token, &user) {
        Ok(id) => id,
        Err(e) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                &format!("no randomness: {e}"),
            );
        }
    };
    tracing::info!(user = %user.name, "web login");
    // A new id at every login: an id somebody planted before is worth nothing.
    if let Some(old) = web.sessions.session_id(&headers) {
        web.sessions.remove(old);
    }
    let mut response = see_other("/");
    response
        .headers_mut()
        .append(header::SET_COOKIE, web.sessions.session_cookie(&id));
    response
        .headers_mut()
        .append(header::SET_COOKIE, web.sessions.clear_login_cookie());
    response
}

async fn logout(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let session = match form_session(&web, &headers, &form) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    web.sessions.remove(&session.id);
    tracing::info!(user = %session.user.name, "web logout");
    let mut response = to_login();
    response
        .headers_mut()
        .append(header::SET_COOKIE, web.sessions.clear_session_cookie());
    response
}

async fn apps(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let session = match logged_in(&web, &headers) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let flash = web.sessions.take_flash(&session.id);
    match ops::apps(&web, &session.user).await {
        Ok(rows) => {
            let html = body::apps(&session, &rows);
            render(
                StatusCode::OK,
                Page {
                    title: "Apps",
                    session: Some(&session),
                    flash,
                    body: html,
                },
            )
        }
        Err(failure) => failure_page(&failure, Some(&session)),
    }
}

async fn app(State(web): State<Arc<Web>>, Path(app): Path<String>, headers: HeaderMap) -> Response {
    if !is_app_name(&app) {
        return failure_page(
            &ops::no_such_app(&app),
            web.sessions.find(web.backend.as_ref(), &headers).as_ref(),
        );
    }
    let session = match logged_in(&web, &headers) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    if let Err(failure) = ops::check_access(&web, &session.user, &app, false) {
        return failure_page(&failure, Some(&session));
    }
    let (detail, logs, domains) = tokio::join!(
        ops::app(&web, &session.user, &app),
        ops::logs(&web, &session.user, &app, ops::DEFAULT_LOG_LINES),
        crate::domains::of_app(&web, &session.user, &app),
    );
    let detail = match detail {
        Ok(detail) => detail,
        Err(failure) => return failure_page(&failure, Some(&session)),
    };
    // Logs are a nice-to-have on this page; their failure is a note, not an error page.
    let logs =
        logs.unwrap_or_else(|failure| vec![format!("(logs unavailable: {})", failure.message())]);
    let flash = web.sessions.take_flash(&session.id);
    let mut html = body::app(&session, &detail, &logs);
    html.push_str(&crate::domains::section(&session, &app, domains));
    render(
        StatusCode::OK,
        Page {
            title: &app,
            session: Some(&session),
            flash,
            body: html,
        },
    )
}

/// The common part of the three action forms: app name, session, CSRF,
/// access; then the command line from `line`, and the action.
pub(crate) async fn start_action(
    web: Arc<Web>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
    app: Option<(&str, bool)>,
    label: impl FnOnce(&Fields) -> Label,
    line: impl FnOnce(&Fields) -> Result<Vec<String>, Failure>,
) -> Response {
    if let Some((app, _)) = app
        && !is_app_name(app)
    {
        return failure_page(&ops::no_such_app(app), None);
    }
    let session = match form_session(&web, &headers, &form) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let Ok(Form(fields)) = form else {
        return error_page(
            StatusCode::BAD_REQUEST,
            Some(&session),
            "The form could not be read.",
        );
    };
    let from = match app {
        Some((app, write)) => {
            if let Err(failure) = ops::check_access(&web, &session.user, app, write) {
                return failure_page(&failure, Some(&session));
            }
            format!("/apps/{app}")
        }
        None => "/".to_owned(),
    };
    let line = match line(&fields) {
        Ok(line) => line,
        Err(failure) => return back_with_error(&web, &session, &from, failure.message()),
    };
    match Actions::start(&web, &session.user, label(&fields), line) {
        Ok(action) => see_other(&format!("/actions/{}", action.id)),
        Err(failure) => back_with_error(&web, &session, &from, failure.message()),
    }
}

async fn scale(
    State(web): State<Arc<Web>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let spec = |fields: &Fields| {
        fields
            .get("instances")
            .map(|spec| spec.trim().to_owned())
            .unwrap_or_default()
    };
    start_action(
        web,
        headers,
        form,
        Some((&app, true)),
        |fields| Label {
            title: match spec(fields) {
                spec if spec.starts_with(['+', '-']) => format!("Scale {app} by {spec}"),
                spec => format!("Scale {app} to {spec}"),
            },
            back: format!("/apps/{app}"),
            back_text: format!("Back to {app}"),
        },
        |fields| ops::scale_args(&app, &spec(fields)),
    )
    .await
}

async fn clone(
    State(web): State<Arc<Web>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let field = |fields: &Fields, name: &str| fields.get(name).cloned().unwrap_or_default();
    start_action(
        web,
        headers,
        form,
        // Copying an app needs only to see it; the copy belongs to the caller.
        Some((&app, false)),
        |fields| Label {
            title: match ops::optional(Some(&field(fields, "name"))) {
                Some(name) => format!("Deploy {name}, similar to {app}"),
                None => format!("Deploy an app similar to {app}"),
            },
            back: format!("/apps/{app}"),
            back_text: format!("Back to {app}"),
        },
        |fields| {
            ops::clone_args(
                &app,
                &field(fields, "command"),
                ops::optional(fields.get("name").map(String::as_str)),
            )
        },
    )
    .await
}

async fn deploy(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let field = |fields: &Fields, name: &str| fields.get(name).cloned().unwrap_or_default();
    start_action(
        web,
        headers,
        form,
        None,
        |fields| Label {
            title: format!(
                "Deploy {} from {}",
                field(fields, "name").trim(),
                field(fields, "url").trim()
            ),
            back: "/".to_owned(),
            back_text: "Back to the apps".to_owned(),
        },
        |fields| {
            ops::deploy_args(
                &field(fields, "name"),
                &field(fields, "url"),
                ops::optional(fields.get("ref").map(String::as_str)),
            )
        },
    )
    .await
}

async fn action(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match logged_in(&web, &headers) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let Some(action) = web.actions.find(&id, &session.user) else {
        return error_page(
            StatusCode::NOT_FOUND,
            Some(&session),
            "There is no such action (finished ones are kept for an hour).",
        );
    };
    let html = body::action(&action, &action.progress());
    render(
        StatusCode::OK,
        Page {
            title: &action.label.title,
            session: Some(&session),
            flash: None,
            body: html,
        },
    )
}

async fn action_events(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    let Some(session) = web.sessions.find(web.backend.as_ref(), &headers) else {
        return (StatusCode::UNAUTHORIZED, "log in first").into_response();
    };
    let Some(action) = web.actions.find(&id, &session.user) else {
        return (StatusCode::NOT_FOUND, "no such action").into_response();
    };
    let last = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok());
    let from = actions::resume_from(last, &action);
    let closing = extensions.get::<Closing>().map(|closing| closing.0.clone());
    let mut response = Sse::new(actions::events(action, from, closing))
        .keep_alive(KeepAlive::default())
        .into_response();
    // Proxies must not hold the stream back.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
