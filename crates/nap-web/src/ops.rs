//! What the JSON API and the pages both do: read an app through the
//! backend's commands, and turn requests into command lines. Every field from
//! a user is checked here, once, for both doors.

use std::sync::Arc;

use serde::Serialize;

use crate::command::{AppRow, InstanceRow, Outcome, ReleaseRow, run_collect};
use crate::names::is_app_name;
use crate::{Denied, User, Web};

/// Lines of logs when nobody says how many.
pub(crate) const DEFAULT_LOG_LINES: u32 = 100;
/// Most lines of logs one request may ask for.
pub(crate) const MAX_LOG_LINES: u32 = 10_000;

/// Why a request got no answer, in the words its user should read.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No valid token or session (401).
    Unauthorized,
    /// No such app, or not one this user may know of (404).
    NotFound(String),
    /// Somebody else's app (403).
    Forbidden(String),
    /// A malformed request or a command's usage error (400).
    BadRequest(String),
    /// The command refused or failed (409); `output` is all it printed.
    Refused {
        /// The command's error line.
        message: String,
        /// Everything the command printed.
        output: String,
    },
    /// Too many actions are running (503).
    Busy(String),
    /// Our fault or the daemon's; details are in the log (500).
    Internal(String),
}

impl From<Denied> for Failure {
    fn from(denied: Denied) -> Failure {
        match denied {
            Denied::NotFound(message) => Failure::NotFound(message),
            Denied::Forbidden(message) => Failure::Forbidden(message),
        }
    }
}

impl Failure {
    /// The HTTP status for this failure.
    pub(crate) fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Failure::Unauthorized => StatusCode::UNAUTHORIZED,
            Failure::NotFound(_) => StatusCode::NOT_FOUND,
            Failure::Forbidden(_) => StatusCode::FORBIDDEN,
            Failure::BadRequest(_) => StatusCode::BAD_REQUEST,
            Failure::Refused { .. } => StatusCode::CONFLICT,
            Failure::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The one line to show.
    pub(crate) fn message(&self) -> &str {
        match self {
            Failure::Unauthorized => "missing or invalid token",
            Failure::NotFound(message)
            | Failure::Forbidden(message)
            | Failure::BadRequest(message)
            | Failure::Busy(message)
            | Failure::Refused { message, .. } => message,
            Failure::Internal(_) => "internal error; the server log has the details",
        }
    }

    /// A finished command's status as a result: 0 is fine, 2 is a usage
    /// error, anything else a refusal.
    pub(crate) fn from_outcome(outcome: &Outcome) -> Result<(), Failure> {
        match outcome.status {
            0 => Ok(()),
            2 => Err(Failure::BadRequest(outcome.error_message())),
            _ => Err(Failure::Refused {
                message: outcome.error_message(),
                output: outcome.output.clone(),
            }),
        }
    }
}

/// The 404 for a path whose app name breaks the naming rule.
pub(crate) fn no_such_app(name: &str) -> Failure {
    Failure::NotFound(format!("app {name} does not exist"))
}

/// Asks the backend whether `user` may see or change `app`.
pub(crate) fn check_access(web: &Web, user: &User, app: &str, write: bool) -> Result<(), Failure> {
    if !is_app_name(app) {
        return Err(no_such_app(app));
    }
    web.backend.access(user, app, write).map_err(Failure::from)
}

/// Runs a read-only command and parses the JSON it prints.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    web: &Web,
    user: &User,
    args: Vec<String>,
) -> Result<T, Failure> {
    let what = args.join(" ");
    let outcome = run_collect(&web.backend, user, args).await;
    Failure::from_outcome(&outcome)?;
    serde_json::from_str(&outcome.stdout).map_err(|e| {
        tracing::error!(command = %what, error = %e, "cannot read the command's JSON");
        Failure::Internal(format!("`{what}` printed unreadable JSON: {e}"))
    })
}

/// The apps `user` may see.
pub(crate) async fn apps(web: &Web, user: &User) -> Result<Vec<AppRow>, Failure> {
    read_json(web, user, args(&["apps", "--json"])).await
}

/// An app with its instances and releases.
#[derive(Debug, Serialize)]
pub(crate) struct AppDetail {
    /// The app's row of `apps --json`.
    #[serde(flatten)]
    pub(crate) app: AppRow,
    /// `ps APP --json`.
    pub(crate) instances: Vec<InstanceRow>,
    /// `releases APP --json`.
    pub(crate) releases: Vec<ReleaseRow>,
}

/// Everything about `app` that `user` may see; access must be checked already.
pub(crate) async fn app(web: &Web, user: &User, app: &str) -> Result<AppDetail, Failure> {
    let (rows, instances, releases) = tokio::join!(
        apps(web, user),
        read_json::<Vec<InstanceRow>>(web, user, args(&["ps", app, "--json"])),
        read_json::<Vec<ReleaseRow>>(web, user, args(&["releases", app, "--json"])),
    );
    let Some(row) = rows?.into_iter().find(|row| row.name == app) else {
        return Err(no_such_app(app));
    };
    Ok(AppDetail {
        app: row,
        instances: instances?,
        releases: releases?,
    })
}

/// The last `lines` lines of `app`'s logs; access must be checked already.
pub(crate) async fn logs(
    web: &Web,
    user: &User,
    app: &str,
    lines: u32,
) -> Result<Vec<String>, Failure> {
    let outcome = run_collect(
        &web.backend,
        user,
        args(&["logs", app, "-n", &lines.to_string()]),
    )
    .await;
    Failure::from_outcome(&outcome)?;
    Ok(outcome.stdout.lines().map(str::to_owned).collect())
}

/// `n` of `logs?n=`: 1 to [`MAX_LOG_LINES`].
pub(crate) fn log_lines(n: Option<&str>) -> Result<u32, Failure> {
    let Some(n) = n else {
        return Ok(DEFAULT_LOG_LINES);
    };
    match n.parse::<u32>() {
        Ok(n) if (1..=MAX_LOG_LINES).contains(&n) => Ok(n),
        _ => Err(Failure::BadRequest(format!(
            "n must be a number from 1 to {MAX_LOG_LINES}"
        ))),
    }
}

/// A command line from string slices.
pub(crate) fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| (*part).to_owned()).collect()
}

/// `scale APP SPEC` where SPEC is `N`, `+K` or `-K` (as the command takes it).
pub(crate) fn scale_args(app: &str, spec: &str) -> Result<Vec<String>, Failure> {
    let digits = spec.strip_prefix(['+', '-']).unwrap_or(spec);
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::BadRequest(format!(
            "instances: expected a number of instances, got '{}'",
            shorten(spec)
        )));
    }
    Ok(args(&["scale", app, spec]))
}

/// `clone APP [NEW] --command CMD`.
pub(crate) fn clone_args(
    app: &str,
    command: &str,
    name: Option<&str>,
) -> Result<Vec<String>, Failure> {
    let command = command.trim();
    if command.is_empty() {
        return Err(Failure::BadRequest(
            "command: the start command may not be empty".into(),
        ));
    }
    if command.len() > 4096 || command.chars().any(char::is_control) {
        return Err(Failure::BadRequest(
            "command: expected one line of at most 4096 characters".into(),
        ));
    }
    let mut line = args(&["clone", app]);
    if let Some(name) = name {
        line.push(new_app_name(name)?.to_owned());
    }
    line.extend(args(&["--command", command]));
    Ok(line)
}

/// `deploy NEW --from URL [--ref REF]`.
pub(crate) fn deploy_args(
    name: &str,
    url: &str,
    reference: Option<&str>,
) -> Result<Vec<String>, Failure> {
    let name = new_app_name(name)?;
    let url = url.trim();
    if url.is_empty()
        || url.len() > 2048
        || url.starts_with('-')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Failure::BadRequest(
            "url: expected a git URL such as https://host/repo.git".into(),
        ));
    }
    let mut line = args(&["deploy", name, "--from", url]);
    if let Some(reference) = reference {
        let reference = reference.trim();
        if reference.is_empty()
            || reference.len() > 200
            || reference.starts_with('-')
            || reference
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Failure::BadRequest(
                "ref: expected a branch, tag or commit".into(),
            ));
        }
        line.extend(args(&["--ref", reference]));
    }
    Ok(line)
}

/// A name for a new app, checked against the rule with the rule in the message.
fn new_app_name(name: &str) -> Result<&str, Failure> {
    let name = name.trim();
    if is_app_name(name) {
        Ok(name)
    } else {
        Err(Failure::BadRequest(format!(
            "name '{}': app names are 1 to 63 lowercase letters, digits and '-', starting with a letter",
            shorten(name)
        )))
    }
}

/// At most 64 characters of user input, for an error message.
fn shorten(text: &str) -> String {
    let mut short: String = text.chars().filter(|c| !c.is_control()).take(64).collect();
    if text.chars().count() > 64 {
        short.push('…');
    }
    short
}

/// An optional form or JSON field: absent and blank are the same.
pub(crate) fn optional(field: Option<&str>) -> Option<&str> {
    field.map(str::trim).filter(|value| !value.is_empty())
}

/// The result of an action run to its end, for the JSON API.
pub(crate) async fn run_action(
    web: &Arc<Web>,
    user: &User,
    line: Vec<String>,
) -> Result<String, Failure> {
    tracing::info!(
        user = %user.name,
        command = %line.first().map_or("", String::as_str),
        app = %line.get(1).map_or("", String::as_str),
        "api action"
    );
    let outcome = run_collect(&web.backend, user, line).await;
    Failure::from_outcome(&outcome)?;
    Ok(outcome.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        assert_eq!(scale_args("web", "3").unwrap(), ["scale", "web", "3"]);
        assert_eq!(scale_args("web", "+1").unwrap(), ["scale", "web", "+1"]);
        assert!(scale_args("web", "three").is_err());
        assert!(scale_args("web", "+").is_err());
        assert!(scale_args("web", "--force").is_err());
        assert_eq!(
            clone_args("web", " python3 -m http.server $PORT ", None).unwrap(),
            ["clone", "web", "--command", "python3 -m http.server $PORT"]
        );
        assert_eq!(
            clone_args("web", "x", Some("web-2")).unwrap(),
            ["clone", "web", "web-2", "--command", "x"]
        );
        assert!(clone_args("web", "  ", None).is_err());
        assert!(clone_args("web", "a\nb", None).is_err());
        assert!(clone_args("web", "x", Some("--command")).is_err());
        assert_eq!(
            deploy_args("site", "https://example.com/r.git", Some("main")).unwrap(),
            [
                "deploy",
                "site",
                "--from",
                "https://example.com/r.git",
                "--ref",
                "main"
            ]
        );
        assert_eq!(
            deploy_args("site", "https://e/r", None).unwrap(),
            ["deploy", "site", "--from", "https://e/r"]
        );
        assert!(deploy_args("Site", "https://e/r", None).is_err());
        assert!(deploy_args("site", "--upload-pack=x", None).is_err());
        assert!(deploy_args("site", "https://e/r", Some("-x")).is_err());
    }

    #[test]
    fn log_line_counts() {
        assert_eq!(log_lines(None).unwrap(), 100);
        assert_eq!(log_lines(Some("10000")).unwrap(), 10_000);
        assert!(log_lines(Some("0")).is_err());
        assert!(log_lines(Some("10001")).is_err());
        assert!(log_lines(Some("x")).is_err());
    }
}
