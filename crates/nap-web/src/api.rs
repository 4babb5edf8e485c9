//! The JSON API: `Authorization: Bearer TOKEN`, JSON in and out.
//!
//! Every handler does the same steps in the same order: the app name in the
//! path (404), the token (401), the access rule (403/404), the body (400),
//! then the command.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::names::is_app_name;
use crate::ops::{self, Failure};
use crate::{User, Web};

/// The API's routes.
pub(crate) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/apps", get(apps))
        .route("/api/apps/{app}", get(app))
        .route("/api/apps/{app}/logs", get(logs))
        .route("/api/apps/{app}/scale", post(scale))
        .route("/api/apps/{app}/clone", post(clone))
        .route("/api/deploy", post(deploy))
        .merge(crate::domains::api_routes())
        .route("/api/{*rest}", axum::routing::any(not_found))
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if let Failure::Internal(details) = &self {
            tracing::error!(%details, "api request failed");
        }
        let mut body = json!({ "error": self.message() });
        if let Failure::Refused { output, .. } = &self {
            body["output"] = json!(output);
        }
        let mut response = (self.status(), Json(body)).into_response();
        if let Failure::Unauthorized = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The user of the request's bearer token.
fn bearer(web: &Web, headers: &HeaderMap) -> Result<User, Failure> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(Failure::Unauthorized)?;
    // Tokens are short and printable; anything else is not worth a lookup.
    if token.is_empty() || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Failure::Unauthorized);
    }
    web.backend.authenticate(token).ok_or(Failure::Unauthorized)
}

/// The user, once the path's app name and the token passed and `access` allows.
pub(crate) fn authorize(
    web: &Web,
    headers: &HeaderMap,
    app: &str,
    write: bool,
) -> Result<User, Failure> {
    if !is_app_name(app) {
        return Err(ops::no_such_app(app));
    }
    let user = bearer(web, headers)?;
    ops::check_access(web, &user, app, write)?;
    Ok(user)
}

/// A JSON body, or a 400 that says what is wrong with it in one line.
pub(crate) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Failure> {
    serde_json::from_slice(bytes)
        .map_err(|e| Failure::BadRequest(format!("invalid request body: {e}")))
}

/// `{"ok": true, "output": ...}` for a finished action.
pub(crate) fn done(output: String) -> Response {
    Json(json!({ "ok": true, "output": output })).into_response()
}

async fn apps(State(web): State<Arc<Web>>, headers: HeaderMap) -> Result<Response, Failure> {
    let user = bearer(&web, &headers)?;
    Ok(Json(ops::apps(&web, &user).await?).into_response())
}

async fn app(
    State(web): State<Arc<Web>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let user = authorize(&web, &headers, &app, false)?;
    Ok(Json(ops::app(&web, &user, &app).await?).into_response())
}

async fn logs(
    State(web): State<Arc<Web>>,
    Path(app): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let user = authorize(&web, &headers, &app, false)?;
    let Query(query) = query.map_err(|e| Failure::BadRequest(e.body_text()))?;
    let lines = ops::log_lines(query.get("n").map(String::as_str))?;
    Ok(Json(json!({ "lines": ops::logs(&web, &user, &app, lines).await? })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    instances: u32,
}

async fn scale(
    State(web): State<Arc<Web>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Failure> {
    let user = authorize(&web, &headers, &app, true)?;
    let request: ScaleBody = body(&bytes)?;
    let line = ops::scale_args(&app, &request.instances.to_string())?;
    Ok(done(ops::run_action(&web, &user, line).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloneBody {
    command: String,
    #[serde(default)]
    name: Option<String>,
}

async fn clone(
    State(web): State<Arc<Web>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Failure> {
    // Copying an app needs only to see it; the copy belongs to the caller.
    let user = authorize(&web, &headers, &app, false)?;
    let request: CloneBody = body(&bytes)?;
    let line = ops::clone_args(
        &app,
        &request.command,
        ops::optional(request.name.as_deref()),
    )?;
    Ok(done(ops::run_action(&web, &user, line).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    name: String,
    url: String,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
}

async fn deploy(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Failure> {
    let user = bearer(&web, &headers)?;
    let request: DeployBody = body(&bytes)?;
    let line = ops::deploy_args(
        &request.name,
        &request.url,
        ops::optional(request.reference.as_deref()),
    )?;
    Ok(done(ops::run_action(&web, &user, line).await?))
}

async fn not_found() -> Failure {
    Failure::NotFound("no such API endpoint".into())
}
