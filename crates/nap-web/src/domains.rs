//! An app's custom domains and certificates in the JSON API: the same
//! commands as over SSH (`domains`, `domains:add`, `domains:remove`,
//! `certs`), which check the host and the access rule themselves.
//!
//! ```text
//! GET    /api/apps/APP/domains          {"app", "hosts": [...], "https_redirect"}
//! POST   /api/apps/APP/domains          {"host": "www.example.com"}
//! DELETE /api/apps/APP/domains/HOST
//! GET    /api/apps/APP/certs            {"app", "auto", "hosts": [{"host", "source", ...}]}
//! ```
//!
//! The app's page lists the domains with a remove button each and a form to
//! add one; both run the commands as actions, like the page's other forms.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;

use crate::actions::Label;
use crate::api::{authorize, body, done};
use crate::html::{csrf_field, escape};
use crate::ops::{self, Failure};
use crate::pages::{Fields, start_action};
use crate::session::Session;
use crate::{User, Web};

/// The routes, merged into the API's.
pub(crate) fn api_routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/apps/{app}/domains", get(list).post(add))
        .route("/api/apps/{app}/domains/{host}", delete(remove))
        .route("/api/apps/{app}/certs", get(certs))
}

/// A host as the client typed it, checked only enough to be one word on a
/// command line; the command checks it against the DNS rule and answers
/// what is wrong.
pub(crate) fn host_arg(host: &str) -> Result<&str, Failure> {
    let host = host.trim();
    if host.is_empty()
        || host.len() > 253
        || host.starts_with('-')
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Failure::BadRequest(
            "host: expected a DNS name such as www.example.com".into(),
        ));
    }
    Ok(host)
}

async fn list(
    State(web): State<Arc<Web>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    command_json(&web, &headers, "domains", &app).await
}

async fn certs(
    State(web): State<Arc<Web>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    command_json(&web, &headers, "certs", &app).await
}

/// What `COMMAND APP --json` prints, passed on as it comes: the command
/// owns the shape, so the API cannot fall behind it.
async fn command_json(
    web: &Web,
    headers: &HeaderMap,
    command: &str,
    app: &str,
) -> Result<Response, Failure> {
    let user = authorize(web, headers, app, false)?;
    let value: serde_json::Value =
        ops::read_json(web, &user, ops::args(&[command, app, "--json"])).await?;
    Ok(axum::Json(value).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    host: String,
}

async fn add(
    State(web): State<Arc<Web>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Failure> {
    let user = authorize(&web, &headers, &app, true)?;
    let request: AddBody = body(&bytes)?;
    let host = host_arg(&request.host)?;
    let line = ops::args(&["domains:add", &app, host]);
    Ok(done(ops::run_action(&web, &user, line).await?))
}

async fn remove(
    State(web): State<Arc<Web>>,
    Path((app, host)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let user = authorize(&web, &headers, &app, true)?;
    let host = host_arg(&host)?;
    let line = ops::args(&["domains:remove", &app, host]);
    Ok(done(ops::run_action(&web, &user, line).await?))
}

/// What `domains APP --json` prints.
#[derive(Debug, Deserialize)]
pub(crate) struct AppDomains {
    hosts: Vec<String>,
    https_redirect: bool,
}

/// The app's domains, for its page.
pub(crate) async fn of_app(web: &Web, user: &User, app: &str) -> Result<AppDomains, Failure> {
    ops::read_json(web, user, ops::args(&["domains", app, "--json"])).await
}

/// The app page's list of domains, each with a remove button, and a form
/// to add one. A failure to read them is a note: the rest of the page stands.
pub(crate) fn section(
    session: &Session,
    app: &str,
    domains: Result<AppDomains, Failure>,
) -> String {
    let name = escape(app);
    let csrf = csrf_field(session);
    let mut html = String::from("<h2>Domains</h2>\n");
    match domains {
        Err(failure) => {
            html.push_str(&format!(
                "<p class=\"empty\">(domains unavailable: {})</p>\n",
                escape(failure.message())
            ));
            return html;
        }
        Ok(domains) if domains.hosts.is_empty() => {
            html.push_str("<p class=\"empty\" id=\"no-domains\">No custom domains.</p>\n");
        }
        Ok(domains) => {
            html.push_str(&format!(
                "<p class=\"muted\">HTTPS redirect {}.</p>\n<table id=\"domains\">\n<tbody>\n",
                if domains.https_redirect { "on" } else { "off" }
            ));
            for host in &domains.hosts {
                let host = escape(host);
                html.push_str(&format!(
                    "<tr><td>{host}</td><td><form class=\"inline\" method=\"post\" action=\"/apps/{name}/domains/remove\">{csrf}<input type=\"hidden\" name=\"host\" value=\"{host}\"><button class=\"remove-domain\">Remove</button></form></td></tr>\n"
                ));
            }
            html.push_str("</tbody>\n</table>\n");
        }
    }
    html.push_str(&format!(
        "<form class=\"inline\" method=\"post\" action=\"/apps/{name}/domains\">{csrf}<label for=\"domain-host\" class=\"muted\">Host</label><input id=\"domain-host\" name=\"host\" placeholder=\"www.example.com\" required><button id=\"add-domain\">Add domain</button></form>\n"
    ));
    html
}

fn field(fields: &Fields, name: &str) -> String {
    fields
        .get(name)
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// `POST /apps/APP/domains` (host): `domains:add APP HOST` as an action.
pub(crate) async fn add_form(
    State(web): State<Arc<Web>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let title = |host: &str| format!("Add domain {host} to {app}");
    host_form(web, headers, form, "domains:add", &app, title).await
}

/// `POST /apps/APP/domains/remove` (host): `domains:remove APP HOST`.
pub(crate) async fn remove_form(
    State(web): State<Arc<Web>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let title = |host: &str| format!("Remove domain {host} from {app}");
    host_form(web, headers, form, "domains:remove", &app, title).await
}

/// A form with one `host` field that runs `COMMAND APP HOST` as an action
/// on the app, titled by `title` of the host as typed. Both domain forms
/// go through here, so that they check the host the same way.
async fn host_form(
    web: Arc<Web>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
    command: &str,
    app: &str,
    title: impl FnOnce(&str) -> String,
) -> Response {
    start_action(
        web,
        headers,
        form,
        Some((app, true)),
        |fields| Label {
            title: title(&field(fields, "host")),
            back: format!("/apps/{app}"),
            back_text: format!("Back to {app}"),
        },
        |fields| {
            Ok(ops::args(&[
                command,
                app,
                host_arg(&field(fields, "host"))?,
            ]))
        },
    )
    .await
}
