//! The bodies of the web manager's pages. Everything that came from the
//! backend or a user goes through [`escape`] on its way in.

use crate::Chunk;
use crate::actions::{Action, Progress};
use crate::command::{AppRow, InstanceRow, ReleaseRow};
use crate::format;
use crate::html::{csrf_field, escape};
use crate::names::is_app_name;
use crate::ops::AppDetail;
use crate::session::Session;

/// The login form.
pub(crate) fn login(login_token: &str) -> String {
    format!(
        r#"<section class="card login">
<h2>Log in to nap</h2>
<p class="muted">Get a token by running <code>token</code> over SSH (<code>ssh git-user@host token</code>).</p>
<form method="post" action="/login">
<input type="hidden" name="csrf" value="{}">
<div class="fields"><label for="token">Token</label>
<input id="token" type="password" name="token" autocomplete="off" required autofocus></div>
<div class="buttons"><button class="primary" id="login">Log in</button></div>
</form>
</section>
"#,
        escape(login_token)
    )
}

/// A page that only says what went wrong, with a way back.
pub(crate) fn error(message: &str) -> String {
    format!(
        "<p class=\"flash error\">{}</p>\n<p><a href=\"/\">Back to the apps</a></p>\n",
        escape(message)
    )
}

/// A link to an app's page, or just its name when the name could not be an
/// app's (then it is no path of ours either).
fn app_link(name: &str) -> String {
    if is_app_name(name) {
        format!("<a href=\"/apps/{name}\">{name}</a>")
    } else {
        escape(name)
    }
}

/// An app's state from its instance counts.
fn app_badge(app: &AppRow) -> &'static str {
    match (app.up, app.desired) {
        (0, 0) => "<span class=\"badge\">stopped</span>",
        (0, _) => "<span class=\"badge down\">down</span>",
        (up, desired) if up >= desired => "<span class=\"badge up\">running</span>",
        _ => "<span class=\"badge partial\">partly up</span>",
    }
}

/// What the pages say when instances run without a sandbox (`isolation: none`).
const NOT_ISOLATED: &str = "<p class=\"flash error\" id=\"not-isolated\">Not isolated: \
     instances run without a sandbox (<code>isolation: none</code>), as nap's own user; \
     every app can read nap's data and reach every other app.</p>\n";

/// The apps table and the "Deploy from URL" form.
pub(crate) fn apps(session: &Session, apps: &[AppRow]) -> String {
    let mut html = String::from("<h1>Apps</h1>\n");
    if apps.iter().any(|app| !app.isolated) {
        html.push_str(NOT_ISOLATED);
    }
    if apps.is_empty() {
        html.push_str("<p class=\"empty\">No apps yet. Push one with <code>git push</code>, or deploy one from a URL below.</p>\n");
    } else {
        html.push_str(
            "<table id=\"apps\">\n<thead><tr><th>Name</th><th>Owner</th><th>Release</th>\
             <th class=\"num\">Up / desired</th><th>State</th></tr></thead>\n<tbody>\n",
        );
        for app in apps {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{} / {}</td><td>{}</td></tr>\n",
                app_link(&app.name),
                escape(&app.owner),
                escape(app.release.as_deref().unwrap_or("—")),
                app.up,
                app.desired,
                app_badge(app),
            ));
        }
        html.push_str("</tbody>\n</table>\n");
    }
    html.push_str("<h2>Deploy from URL</h2>\n");
    html.push_str(&deploy_form(session, false));
    html
}

/// The form that deploys a new app from a git URL: a card on the apps
/// page, or the body of a dialog (with a Cancel button) on an app's page.
fn deploy_form(session: &Session, in_dialog: bool) -> String {
    let (class, prefix, cancel) = if in_dialog {
        (
            "fields",
            "dialog-",
            "<button type=\"button\" data-close>Cancel</button>",
        )
    } else {
        ("card fields", "", "")
    };
    format!(
        r#"<form class="{class}" method="post" action="/deploy">
{csrf}
<label for="{p}deploy-url">Git URL</label>
<input id="{p}deploy-url" name="url" placeholder="https://github.com/you/app.git" required>
<label for="{p}deploy-name">App name</label>
<input id="{p}deploy-name" name="name" pattern="[a-z][a-z0-9\-]{{0,62}}" placeholder="my-app" required>
<label for="{p}deploy-ref">Branch or tag <span class="muted">(optional)</span></label>
<input id="{p}deploy-ref" name="ref" placeholder="HEAD">
<div class="buttons"><button class="primary">Deploy</button>{cancel}</div>
</form>
"#,
        csrf = csrf_field(session),
        p = prefix,
    )
}

/// An instance's state as a badge.
fn instance_badge(state: &str) -> String {
    let class = match state {
        "up" | "running" => "up",
        "starting" | "restarting" | "stopping" => "partial",
        _ => "down",
    };
    format!("<span class=\"badge {class}\">{}</span>", escape(state))
}

/// Memory in use, against the limit if there is one.
fn memory(instance: &InstanceRow) -> String {
    let used = instance
        .memory_used
        .map_or_else(|| "—".to_owned(), format::bytes);
    match instance.memory_limit {
        Some(limit) if instance.limit_enforced => format!("{used} / {}", format::bytes(limit)),
        Some(limit) => format!(
            "{used} / {} <span class=\"muted\">(not enforced)</span>",
            format::bytes(limit)
        ),
        None => used,
    }
}

/// An app's page.
pub(crate) fn app(session: &Session, detail: &AppDetail, logs: &[String]) -> String {
    let app = &detail.app;
    // The name is from the request's path and passed the naming rule, so it
    // is safe in URLs and text; escaping it anyway costs nothing.
    let name = escape(&app.name);
    let csrf = csrf_field(session);
    let mut html = format!(
        r#"<h1>{name} <span class="muted">owned by {owner}</span></h1>
<div class="summary">
<div>Release<strong id="release">{release}</strong></div>
<div>Up<strong id="up">{up}</strong></div>
<div>Desired<strong id="desired">{desired}</strong></div>
<div>State<strong>{badge}</strong></div>
</div>
<div class="toolbar">
<form class="inline" method="post" action="/apps/{name}/scale">{csrf}<input type="hidden" name="instances" value="+1"><button class="primary" id="scale-up">Scale +1</button></form>
<form class="inline" method="post" action="/apps/{name}/scale">{csrf}<label for="instances" class="muted">Instances</label><input id="instances" type="number" name="instances" min="0" value="{desired}" required><button id="scale">Scale</button></form>
<button type="button" data-open="clone-dialog" id="clone-open">Deploy similar app</button>
<button type="button" data-open="deploy-dialog">Deploy from URL</button>
</div>
<dialog id="clone-dialog">
<form class="fields" method="post" action="/apps/{name}/clone">
{csrf}
<h2>Deploy similar app</h2>
<p class="muted">A new app with the code of {name}'s current release and another start command.</p>
<label for="clone-command">Start command</label>
<input id="clone-command" name="command" placeholder="python3 worker.py" required>
<label for="clone-name">Name <span class="muted">(optional; default {name}-N)</span></label>
<input id="clone-name" name="name" pattern="[a-z][a-z0-9\-]{{0,62}}">
<div class="buttons"><button class="primary">Deploy</button><button type="button" data-close>Cancel</button></div>
</form>
</dialog>
<dialog id="deploy-dialog">
<h2>Deploy from URL</h2>
<p class="muted">A new app from a git repository, deployed like a push.</p>
{deploy}</dialog>
"#,
        owner = escape(&app.owner),
        release = escape(app.release.as_deref().unwrap_or("—")),
        up = app.up,
        desired = app.desired,
        badge = app_badge(app),
        deploy = deploy_form(session, true),
    );
    if !app.isolated {
        html.push_str(NOT_ISOLATED);
    }
    html.push_str(&instances(&detail.instances));
    html.push_str("<h2>Recent logs</h2>\n");
    if logs.is_empty() {
        html.push_str("<p class=\"empty\">No log lines yet.</p>\n");
    } else {
        html.push_str("<pre id=\"logs\">");
        for line in logs {
            html.push_str(&escape(line));
            html.push('\n');
        }
        html.push_str("</pre>\n");
    }
    html.push_str(&releases(&detail.releases));
    html
}

/// The instances table.
fn instances(instances: &[InstanceRow]) -> String {
    let mut html = String::from("<h2>Instances</h2>\n");
    if instances.is_empty() {
        html.push_str("<p class=\"empty\">No instances.</p>\n");
        return html;
    }
    html.push_str(
        "<table id=\"instances\">\n<thead><tr><th>Instance</th><th>State</th><th>Release</th>\
         <th class=\"num\">Port</th><th class=\"num\">PID</th><th class=\"num\">Uptime</th>\
         <th class=\"num\">Restarts</th><th>Memory</th></tr></thead>\n<tbody>\n",
    );
    for instance in instances {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
            escape(&instance.instance),
            instance_badge(&instance.state),
            escape(&instance.release),
            instance.port,
            instance.pid.map_or_else(|| "—".to_owned(), |pid| pid.to_string()),
            format::duration(instance.uptime_secs),
            instance.restarts,
            memory(instance),
        ));
    }
    html.push_str("</tbody>\n</table>\n");
    html
}

/// The releases table, newest first.
fn releases(releases: &[ReleaseRow]) -> String {
    let mut html = String::from("<h2>Releases</h2>\n");
    if releases.is_empty() {
        html.push_str("<p class=\"empty\">No releases yet.</p>\n");
        return html;
    }
    html.push_str(
        "<table id=\"releases\">\n<thead><tr><th>Release</th><th>Commit</th><th>By</th><th>When</th>\
         <th>Note</th></tr></thead>\n<tbody>\n",
    );
    let mut sorted: Vec<&ReleaseRow> = releases.iter().collect();
    sorted.sort_by_key(|release| std::cmp::Reverse(release.number));
    for release in sorted {
        let current = if release.current {
            " <span class=\"badge up\">current</span>"
        } else {
            ""
        };
        let short: String = release.commit.chars().take(7).collect();
        html.push_str(&format!(
            "<tr><td>v{}{current}</td><td><code title=\"{}\">{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            release.number,
            escape(&release.commit),
            escape(&short),
            escape(&release.pusher),
            format::utc(release.time),
            escape(&release.note),
        ));
    }
    html.push_str("</tbody>\n</table>\n");
    html
}

/// An action's page: its output so far, and its result once it has one.
/// The script replaces the output with the live stream while it runs.
pub(crate) fn action(action: &Action, progress: &Progress) -> String {
    let running = progress.status.is_none();
    let (state, state_class) = match progress.result() {
        None => ("running", "partial"),
        Some((true, _)) => ("finished", "up"),
        Some((false, _)) => ("failed", "down"),
    };
    let mut html = format!(
        "<h1>{} <span id=\"state\" class=\"badge {state_class}\">{state}</span></h1>\n\
         <div id=\"action\" data-running=\"{running}\" data-events=\"/actions/{}/events\"></div>\n<pre id=\"output\">",
        escape(&action.label.title),
        escape(&action.id),
    );
    for chunk in &progress.chunks {
        let (Chunk::Stdout(text) | Chunk::Stderr(text)) = chunk;
        if text.starts_with(" !") {
            html.push_str(&format!("<span class=\"bad\">{}</span>", escape(text)));
        } else {
            html.push_str(&escape(text));
        }
    }
    html.push_str("</pre>\n");
    match progress.result() {
        Some((ok, message)) => {
            let kind = if ok { "ok" } else { "error" };
            html.push_str(&format!("<p id=\"result\" class=\"flash {kind}\">{}</p>\n", escape(&message)));
        }
        None => html.push_str("<p id=\"result\" class=\"flash\" hidden></p>\n<noscript><p>Reload this page to see more.</p></noscript>\n"),
    }
    html.push_str(&format!(
        "<p><a id=\"back\" href=\"{}\">{}</a></p>\n",
        escape(&action.label.back),
        escape(&action.label.back_text)
    ));
    html
}
