//! HTML basics: escaping, the page frame with its one style and one script
//! block, and the security headers every response gets.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::session::{Flash, Session};
use nap_stdx::random_hex;

/// `text` safe to put between tags or inside a double-quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Headers for every response; a page's own Content-Security-Policy (with
/// its nonce) stays, everything else gets one that allows nothing.
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    response
}

/// A page to render in the frame.
pub(crate) struct Page<'a> {
    /// The `<title>` (and nothing else; the body has its own heading).
    pub(crate) title: &'a str,
    /// The logged-in user, for the header's name and log-out button.
    pub(crate) session: Option<&'a Session>,
    /// A message above the body.
    pub(crate) flash: Option<Flash>,
    /// The body's HTML, escaped already.
    pub(crate) body: String,
}

/// `page` in the frame, as a response with its Content-Security-Policy.
pub(crate) fn render(status: StatusCode, page: Page<'_>) -> Response {
    let Ok(nonce) = random_hex(16) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "no randomness for this page",
        )
            .into_response();
    };
    let mut html = String::with_capacity(page.body.len() + STYLE.len() + SCRIPT.len() + 1024);
    html.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    html.push_str(&format!("<title>{} · nap</title>\n", escape(page.title)));
    html.push_str(&format!(
        "<style nonce=\"{nonce}\">{STYLE}</style>\n</head>\n<body>\n<header>\n"
    ));
    html.push_str("<a class=\"brand\" href=\"/\">nap</a>\n");
    if let Some(session) = page.session {
        html.push_str("<nav><a href=\"/\">Apps</a></nav>\n");
        let role = if session.user.admin { " (admin)" } else { "" };
        html.push_str(&format!(
            "<span class=\"user\">{}{role}</span>\n",
            escape(&session.user.name)
        ));
        html.push_str(&format!(
            "<form class=\"inline\" method=\"post\" action=\"/logout\">{}<button class=\"link\">Log out</button></form>\n",
            csrf_field(session)
        ));
    }
    html.push_str("</header>\n<main>\n");
    if let Some(flash) = page.flash {
        let kind = if flash.error { "error" } else { "ok" };
        html.push_str(&format!(
            "<p class=\"flash {kind}\" role=\"alert\">{}</p>\n",
            escape(&flash.text)
        ));
    }
    html.push_str(&page.body);
    html.push_str(&format!(
        "</main>\n<script nonce=\"{nonce}\">{SCRIPT}</script>\n</body>\n</html>\n"
    ));
    let policy = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; \
         img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    let mut response = (status, Html(html)).into_response();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// The hidden field that carries the session's CSRF token in a form.
pub(crate) fn csrf_field(session: &Session) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&session.csrf)
    )
}

/// The one style block.
const STYLE: &str = r#"
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:#fff}
header{display:flex;align-items:center;gap:1.5rem;padding:.65rem 1.5rem;background:#1f2328;color:#fff}
header a{color:#fff;text-decoration:none}
header .brand{font-weight:700;font-size:1.15rem;letter-spacing:.02em}
header .user{margin-left:auto;color:#d1d9e0}
main{max-width:1100px;margin:0 auto;padding:1.5rem}
h1{font-size:1.6rem;margin:.2rem 0 .4rem}
h2{font-size:1.1rem;margin:2rem 0 .6rem;padding-bottom:.3rem;border-bottom:1px solid var(--line)}
a{color:#0969da}
.muted{color:var(--muted);font-weight:normal}
table{border-collapse:collapse;width:100%;font-size:.93rem}
th,td{text-align:left;padding:.45rem .7rem;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--soft);font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#0d1117;color:#e6edf3;padding:.8rem 1rem;border-radius:6px;overflow:auto;max-height:26rem;white-space:pre-wrap;word-break:break-all;margin:0}
pre .bad{color:#ff7b72}
.badge{display:inline-block;padding:0 .55rem;border-radius:1rem;font-size:.8rem;font-weight:600;border:1px solid var(--line);background:var(--soft);color:var(--muted)}
.badge.up{color:var(--ok);border-color:#4ac26b;background:#dafbe1}
.badge.partial{color:var(--warn);border-color:#d4a72c;background:#fff8c5}
.badge.down{color:var(--bad);border-color:#ff8182;background:#ffebe9}
.summary{display:flex;gap:2.5rem;color:var(--muted);margin:.8rem 0}
.summary strong{display:block;color:var(--fg);font-size:1.35rem;line-height:1.2}
.toolbar{display:flex;flex-wrap:wrap;gap:.8rem;align-items:center;margin:1.2rem 0}
form.inline{display:inline-flex;gap:.4rem;align-items:center;margin:0}
form.inline label{margin:0;font-weight:normal}
button{font:inherit;padding:.35rem .9rem;border-radius:6px;border:1px solid var(--line);background:var(--soft);color:var(--fg);cursor:pointer}
button:hover{background:#eaeef2}
button.primary{background:#1f883d;border-color:#1a7f37;color:#fff}
button.primary:hover{background:#1a7f37}
button.link{background:none;border:none;padding:0;color:#d1d9e0}
button.link:hover{color:#fff;background:none}
input{font:inherit;padding:.3rem .55rem;border:1px solid var(--line);border-radius:6px}
input[type=number]{width:5.5rem}
label{display:block;margin:.7rem 0 .2rem;font-weight:600;font-size:.9rem}
label .muted{font-weight:normal}
.fields input{width:100%}
.buttons{display:flex;gap:.6rem;margin-top:1rem}
.flash{padding:.6rem 1rem;border-radius:6px;margin:0 0 1rem;border:1px solid}
pre + .flash{margin-top:1rem}
.flash.error{background:#ffebe9;border-color:#ff8182;color:#82071e}
.flash.ok{background:#dafbe1;border-color:#4ac26b;color:#116329}
.card{border:1px solid var(--line);border-radius:8px;padding:1rem 1.25rem;max-width:34rem}
.card h2{margin-top:0;border:none}
.login{margin:4rem auto}
dialog{border:1px solid var(--line);border-radius:10px;padding:1.25rem 1.5rem;width:min(34rem,92vw);box-shadow:0 8px 24px rgba(31,35,40,.2)}
dialog::backdrop{background:rgba(31,35,40,.4)}
dialog h2{margin-top:0;border:none}
details summary{cursor:pointer;font-weight:600}
.empty{color:var(--muted);font-style:italic}
"#;

/// The one script: dialogs, and an action page's live output.
const SCRIPT: &str = r#"
for (const button of document.querySelectorAll('[data-open]')) {
  button.addEventListener('click', () => document.getElementById(button.dataset.open).showModal());
}
for (const button of document.querySelectorAll('[data-close]')) {
  button.addEventListener('click', () => button.closest('dialog').close());
}
const action = document.getElementById('action');
if (action && action.dataset.running === 'true') {
  const output = document.getElementById('output');
  const state = document.getElementById('state');
  output.textContent = '';
  const source = new EventSource(action.dataset.events);
  source.addEventListener('output', (event) => {
    const chunk = JSON.parse(event.data);
    const span = document.createElement('span');
    if (chunk.text.startsWith(' !')) span.className = 'bad';
    span.textContent = chunk.text;
    output.appendChild(span);
    output.scrollTop = output.scrollHeight;
  });
  source.addEventListener('done', (event) => {
    source.close();
    const done = JSON.parse(event.data);
    const result = document.getElementById('result');
    result.textContent = done.message;
    result.className = 'flash ' + (done.ok ? 'ok' : 'error');
    result.hidden = false;
    state.textContent = done.ok ? 'finished' : 'failed';
    state.className = 'badge ' + (done.ok ? 'up' : 'down');
  });
}
"#;

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes() {
        assert_eq!(
            escape(r#"<script>alert("x&'y")</script>"#),
            "&lt;script&gt;alert(&quot;x&amp;&#39;y&quot;)&lt;/script&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }
}
