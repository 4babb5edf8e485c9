//! The web manager: login and sessions, CSRF, pages, escaping, actions.

use std::sync::Arc;

use nap_web::Options;
use tokio::sync::Notify;

use crate::http::{Client, csrf_of};
use crate::support::{ALICE, BOB, Fake, ROOT, Server, line};

/// Logs `client` in with `token` and checks it worked.
async fn log_in(client: &mut Client, token: &str) {
    let reply = client.log_in(token).await;
    assert_eq!(reply.status, 303, "{reply:?}");
    assert_eq!(reply.location(), "/");
}

/// The page at `path` with its CSRF token.
async fn page_and_csrf(client: &mut Client, path: &str) -> (String, String) {
    let page = client.get(path).await;
    assert_eq!(page.status, 200, "{page:?}");
    let csrf = csrf_of(&page.body);
    (page.body, csrf)
}

/// The id from an action's redirect (`/actions/ID`).
fn action_path(reply: &crate::http::Reply) -> String {
    assert_eq!(reply.status, 303, "{reply:?}");
    let location = reply.location();
    assert!(location.starts_with("/actions/"), "{location}");
    location.to_owned()
}

/// Follows the action that `started` redirects to until it ends; its page path and every
/// event it sent.
async fn follow_action(
    client: &mut Client,
    started: &crate::http::Reply,
) -> (String, Vec<(String, String)>) {
    let action = action_path(started);
    let events = client
        .events(&format!("{action}/events"))
        .await
        .rest()
        .await;
    (action, events)
}

#[tokio::test]
async fn login_flow_with_cookies() {
    let server = Server::start(Fake::new()).await;
    let mut client = server.client();
    let anonymous = client.get("/").await;
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.location(), "/login");

    let form = client.get("/login").await;
    assert_eq!(form.status, 200);
    let [login_cookie] = form.set_cookies()[..] else {
        panic!("one cookie: {form:?}")
    };
    assert!(login_cookie.starts_with("nap_login="), "{login_cookie}");
    assert!(
        login_cookie.contains("HttpOnly; SameSite=Strict; Path=/"),
        "{login_cookie}"
    );
    assert!(
        !login_cookie.contains("Secure"),
        "plain http: {login_cookie}"
    );
    assert!(
        form.header("content-security-policy")
            .is_some_and(|csp| csp.contains("script-src 'nonce-"))
    );

    let csrf = csrf_of(&form.body);
    let wrong = client
        .post_form("/login", &[("token", "nap_wrong"), ("csrf", &csrf)])
        .await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.body.contains("That token is not valid"),
        "{}",
        wrong.body
    );
    assert!(!client.cookies.contains_key("nap_session"));

    let ok = client
        .post_form("/login", &[("token", ALICE), ("csrf", &csrf)])
        .await;
    assert_eq!(ok.status, 303, "{ok:?}");
    assert_eq!(ok.location(), "/");
    let session_cookie = ok
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("nap_session="))
        .expect("session cookie");
    assert!(
        session_cookie.contains("HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"),
        "{session_cookie}"
    );
    assert!(
        !session_cookie.contains(ALICE),
        "the token stays on the server: {session_cookie}"
    );
    assert!(
        !client.cookies.contains_key("nap_login"),
        "the login cookie is spent"
    );

    let apps = client.get("/").await;
    assert_eq!(apps.status, 200, "{apps:?}");
    assert!(
        apps.body.contains("<a href=\"/apps/web\">web</a>"),
        "{}",
        apps.body
    );
    assert!(apps.body.contains("alice"));
    assert!(!apps.body.contains(ALICE), "the token is not in the page");
    assert!(
        !apps.body.contains("secret"),
        "bob's app is not listed for alice"
    );
    assert_eq!(apps.header("cache-control"), Some("no-store"));
    assert_eq!(
        client.get("/login").await.location(),
        "/",
        "logged in: no login form"
    );

    // Logging out needs the CSRF token too.
    let csrf = csrf_of(&apps.body);
    let refused = client.post_form("/logout", &[]).await;
    assert_eq!(refused.status, 403);
    let out = client.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), "/login");
    assert!(!client.cookies.contains_key("nap_session"));
    assert_eq!(client.get("/").await.location(), "/login");
    server.stop().await;
}

#[tokio::test]
async fn an_old_session_cookie_is_dead_after_logout() {
    let server = Server::start(Fake::new()).await;
    let mut client = server.client();
    log_in(&mut client, ALICE).await;
    let stolen = client.cookies.clone();
    let (_, csrf) = page_and_csrf(&mut client, "/").await;
    client.post_form("/logout", &[("csrf", &csrf)]).await;
    let mut thief = server.client();
    thief.cookies = stolen;
    assert_eq!(thief.get("/").await.location(), "/login");
    server.stop().await;
}

#[tokio::test]
async fn login_needs_its_csrf_token() {
    let server = Server::start(Fake::new()).await;
    let mut client = server.client();
    // No form, no cookie: a cross-site login attempt.
    let blind = client.post_form("/login", &[("token", ALICE)]).await;
    assert_eq!(blind.status, 403);
    let form = client.get("/login").await;
    assert_eq!(form.status, 200);
    let wrong = client
        .post_form("/login", &[("token", ALICE), ("csrf", &"0".repeat(64))])
        .await;
    assert_eq!(wrong.status, 403);
    assert!(!client.cookies.contains_key("nap_session"));
    server.stop().await;
}

#[tokio::test]
async fn secure_cookies_when_asked() {
    let server = Server::start_with(
        Fake::new(),
        Options {
            secure_cookies: true,
        },
    )
    .await;
    let mut client = server.client();
    let form = client.get("/login").await;
    let [login_cookie] = form.set_cookies()[..] else {
        panic!("one cookie: {form:?}")
    };
    assert!(
        login_cookie.starts_with("__Host-nap_login="),
        "{login_cookie}"
    );
    assert!(login_cookie.ends_with("; Secure"), "{login_cookie}");
    let ok = client
        .post_form(
            "/login",
            &[("token", ALICE), ("csrf", &csrf_of(&form.body))],
        )
        .await;
    assert_eq!(ok.status, 303, "{ok:?}");
    assert!(
        ok.set_cookies()
            .iter()
            .all(|cookie| cookie.starts_with("__Host-") && cookie.ends_with("; Secure")),
        "{ok:?}"
    );
    // A plain `nap_session` cookie (set by another host, say) is no session here.
    let id = client.cookies["__Host-nap_session"].clone();
    let mut tossed = server.client();
    tossed.cookies.insert("nap_session".into(), id);
    assert_eq!(tossed.get("/").await.location(), "/login");
    assert_eq!(client.get("/").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn form_posts_need_the_sessions_csrf_token() {
    let server = Server::start(Fake::new()).await;
    let mut client = server.client();
    log_in(&mut client, ALICE).await;
    let (page, csrf) = page_and_csrf(&mut client, "/apps/web").await;
    assert!(page.contains("Scale +1"));

    let posts: [(&str, Vec<(&str, &str)>); 3] = [
        ("/apps/web/scale", vec![("instances", "+1")]),
        ("/apps/web/clone", vec![("command", "python3 worker.py")]),
        (
            "/deploy",
            vec![("name", "site"), ("url", "https://example.com/site.git")],
        ),
    ];
    for (path, fields) in &posts {
        let missing = client.post_form(path, fields).await;
        assert_eq!(missing.status, 403, "{path}: {missing:?}");
        assert!(missing.body.contains("CSRF"), "{}", missing.body);
        let mut wrong = fields.clone();
        wrong.push(("csrf", "0000"));
        assert_eq!(client.post_form(path, &wrong).await.status, 403, "{path}");
        // Another session's token is just as wrong.
        let mut bob = server.client();
        log_in(&mut bob, BOB).await;
        let (_, bobs) = page_and_csrf(&mut bob, "/").await;
        let mut other = fields.clone();
        other.push(("csrf", &bobs));
        assert_eq!(client.post_form(path, &other).await.status, 403, "{path}");
    }
    assert!(
        server.fake.actions().is_empty(),
        "{:?}",
        server.fake.actions()
    );

    // With the right token, the command runs.
    let started = client
        .post_form("/apps/web/scale", &[("instances", "+1"), ("csrf", &csrf)])
        .await;
    let (_, events) = follow_action(&mut client, &started).await;
    let (name, data) = events.last().expect("events");
    assert_eq!(name, "done");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(data).expect("json")["ok"],
        true
    );
    assert_eq!(
        server.fake.actions(),
        [("alice".to_owned(), line(&["scale", "web", "+1"]))]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_token_ends_the_session() {
    let server = Server::start(Fake::new()).await;
    let mut client = server.client();
    log_in(&mut client, ALICE).await;
    let (_, csrf) = page_and_csrf(&mut client, "/apps/web").await;
    server.fake.revoke(ALICE);
    let page = client.get("/apps/web").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), "/login");
    let post = client
        .post_form("/apps/web/scale", &[("instances", "+1"), ("csrf", &csrf)])
        .await;
    assert_eq!(post.status, 303);
    assert_eq!(post.location(), "/login");
    assert!(server.fake.actions().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn hostile_names_and_log_lines_are_escaped() {
    let fake = Fake::new();
    fake.add_app("<script>alert('app')</script>", "alice", 1, &[]);
    fake.add_app("evil", "<img src=x onerror=alert(1)>", 1, &[]);
    fake.add_app(
        "loud",
        "alice",
        1,
        &["<script>alert(\"log\")</script> & </pre>"],
    );
    let server = Server::start(fake).await;
    let mut client = server.client();
    log_in(&mut client, ROOT).await;

    let apps = client.get("/").await;
    assert_eq!(apps.status, 200);
    assert!(
        apps.body
            .contains("<td>&lt;script&gt;alert(&#39;app&#39;)&lt;/script&gt;</td>"),
        "{}",
        apps.body
    );
    assert!(
        apps.body
            .contains("<td>&lt;img src=x onerror=alert(1)&gt;</td>"),
        "{}",
        apps.body
    );
    assert!(!apps.body.contains("<script>alert"), "{}", apps.body);
    assert!(!apps.body.contains("<img"), "{}", apps.body);

    let loud = client.get("/apps/loud").await;
    assert_eq!(loud.status, 200);
    assert!(
        loud.body.contains(
            "loud@1 | &lt;script&gt;alert(&quot;log&quot;)&lt;/script&gt; &amp; &lt;/pre&gt;"
        ),
        "{}",
        loud.body
    );
    assert!(!loud.body.contains("<script>alert"));
    let evil = client.get("/apps/evil").await;
    assert!(
        evil.body
            .contains("owned by &lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        evil.body
    );
    assert!(!evil.body.contains("<img"));

    // A command's output on an action page, too.
    let csrf = csrf_of(&loud.body);
    let started = client
        .post_form(
            "/apps/loud/clone",
            &[("command", "<b>bold</b>"), ("csrf", &csrf)],
        )
        .await;
    let (action, _) = follow_action(&mut client, &started).await;
    let page = client.get(&action).await;
    assert!(
        page.body.contains("with command &lt;b&gt;bold&lt;/b&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<b>bold"));
    server.stop().await;
}

#[tokio::test]
async fn someone_elses_app_page_shows_nothing() {
    let server = Server::start(Fake::new()).await;
    let mut client = server.client();
    log_in(&mut client, ALICE).await;
    let forbidden = client.get("/apps/secret").await;
    assert_eq!(forbidden.status, 403);
    assert!(
        forbidden
            .body
            .contains("app secret belongs to another user")
    );
    assert!(!forbidden.body.contains("bob"), "{}", forbidden.body);
    let missing = client.get("/apps/nope").await;
    assert_eq!(missing.status, 404);
    let bad = client.get("/apps/Nope_").await;
    assert_eq!(bad.status, 404);
    let (_, csrf) = page_and_csrf(&mut client, "/").await;
    let post = client
        .post_form("/apps/secret/scale", &[("instances", "9"), ("csrf", &csrf)])
        .await;
    assert_eq!(post.status, 403);
    let clone = client
        .post_form("/apps/secret/clone", &[("command", "x"), ("csrf", &csrf)])
        .await;
    assert_eq!(clone.status, 403);
    assert!(
        server
            .fake
            .runs()
            .iter()
            .all(|(_, line)| !line.contains(&"secret".to_owned())),
        "{:?}",
        server.fake.runs()
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_form_fields_come_back_as_a_message() {
    let server = Server::start(Fake::new()).await;
    let mut client = server.client();
    log_in(&mut client, ALICE).await;
    let (_, csrf) = page_and_csrf(&mut client, "/apps/web").await;
    let reply = client
        .post_form("/apps/web/scale", &[("instances", "lots"), ("csrf", &csrf)])
        .await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.location(), "/apps/web");
    let page = client.get("/apps/web").await;
    assert!(page.body.contains("<p class=\"flash error\" role=\"alert\">instances: expected a number of instances, got &#39;lots&#39;</p>"), "{}", page.body);
    // Shown once.
    assert!(!client.get("/apps/web").await.body.contains("flash error"));

    let deploy = client
        .post_form(
            "/deploy",
            &[
                ("name", "Bad Name"),
                ("url", "https://e/x"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(deploy.location(), "/");
    assert!(
        client
            .get("/")
            .await
            .body
            .contains("name &#39;Bad Name&#39;: app names are")
    );
    assert!(server.fake.actions().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn an_action_streams_while_it_runs() {
    let gate = Arc::new(Notify::new());
    let fake = Fake {
        gate: Some(gate.clone()),
        ..Fake::new()
    };
    let server = Server::start(fake).await;
    let mut client = server.client();
    log_in(&mut client, ALICE).await;
    let (_, csrf) = page_and_csrf(&mut client, "/apps/web").await;
    let started = client
        .post_form(
            "/apps/web/clone",
            &[
                ("command", "python3 worker.py"),
                ("name", "web-worker"),
                ("csrf", &csrf),
            ],
        )
        .await;
    let action = action_path(&started);
    let mut events = client.events(&format!("{action}/events")).await;
    // The first line arrives while the command still waits at the gate.
    let (name, data) = events.next().await.expect("a first event");
    assert_eq!(name, "output");
    let chunk: serde_json::Value = serde_json::from_str(&data).expect("json");
    assert_eq!(chunk["stream"], "stderr");
    assert_eq!(
        chunk["text"],
        "-----> Creating web-worker: web v2 with command python3 worker.py\n"
    );
    let running = client.get(&action).await;
    assert!(
        running.body.contains("data-running=\"true\""),
        "{}",
        running.body
    );
    assert!(running.body.contains("Deploy web-worker, similar to web"));

    gate.notify_one();
    let rest = events.rest().await;
    let names: Vec<&str> = rest.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["output", "done"]);
    let done: serde_json::Value = serde_json::from_str(&rest[1].1).expect("json");
    assert_eq!(
        done,
        serde_json::json!({"status": 0, "ok": true, "message": "Done."})
    );

    // A late page (or a reconnect) gets everything again.
    let replay = client
        .events(&format!("{action}/events"))
        .await
        .rest()
        .await;
    assert_eq!(replay.len(), 3);
    let finished = client.get(&action).await;
    assert!(finished.body.contains("data-running=\"false\""));
    assert!(finished.body.contains("-----&gt; web-worker v1 deployed"));
    assert!(
        finished
            .body
            .contains("<p id=\"result\" class=\"flash ok\">Done.</p>")
    );
    assert!(
        finished
            .body
            .contains("<a id=\"back\" href=\"/apps/web\">Back to web</a>")
    );
    assert_eq!(
        server.fake.actions(),
        [(
            "alice".to_owned(),
            line(&[
                "clone",
                "web",
                "web-worker",
                "--command",
                "python3 worker.py"
            ])
        )]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failed_action_says_why() {
    let server = Server::start(Fake::new()).await;
    let mut client = server.client();
    log_in(&mut client, ALICE).await;
    let (_, csrf) = page_and_csrf(&mut client, "/apps/web").await;
    let started = client
        .post_form("/apps/web/scale", &[("instances", "99"), ("csrf", &csrf)])
        .await;
    let (action, events) = follow_action(&mut client, &started).await;
    let done: serde_json::Value =
        serde_json::from_str(&events.last().expect("done").1).expect("json");
    assert_eq!(done["ok"], false);
    assert_eq!(done["message"], "scale 99 is more than the maximum (10)");
    let page = client.get(&action).await;
    assert!(
        page.body.contains(
            "<p id=\"result\" class=\"flash error\">scale 99 is more than the maximum (10)</p>"
        ),
        "{}",
        page.body
    );
    server.stop().await;
}

#[tokio::test]
async fn an_action_ends_even_when_the_backend_panics() {
    let server = Server::start(Fake::new()).await;
    let mut client = server.client();
    log_in(&mut client, ALICE).await;
    let (_, csrf) = page_and_csrf(&mut client, "/apps/web").await;
    let started = client
        .post_form("/apps/web/clone", &[("command", "panic"), ("csrf", &csrf)])
        .await;
    let (_, events) = follow_action(&mut client, &started).await;
    let done: serde_json::Value =
        serde_json::from_str(&events.last().expect("done").1).expect("json");
    assert_eq!(done["ok"], false);
    assert_eq!(
        done["message"],
        "internal error: the command stopped unexpectedly"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_action_belongs_to_its_user() {
    let server = Server::start(Fake::new()).await;
    let mut alice = server.client();
    log_in(&mut alice, ALICE).await;
    let (_, csrf) = page_and_csrf(&mut alice, "/apps/web").await;
    let action = action_path(
        &alice
            .post_form("/apps/web/scale", &[("instances", "2"), ("csrf", &csrf)])
            .await,
    );
    alice.events(&format!("{action}/events")).await.rest().await;

    let mut bob = server.client();
    log_in(&mut bob, BOB).await;
    assert_eq!(bob.get(&action).await.status, 404);
    assert_eq!(bob.get(&format!("{action}/events")).await.status, 404);
    let mut root = server.client();
    log_in(&mut root, ROOT).await;
    assert_eq!(root.get(&action).await.status, 404, "not even an admin's");
    let mut anonymous = server.client();
    assert_eq!(anonymous.get(&format!("{action}/events")).await.status, 401);
    assert_eq!(anonymous.get(&action).await.location(), "/login");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_event_streams() {
    let gate = Arc::new(Notify::new());
    let fake = Fake {
        gate: Some(gate.clone()),
        ..Fake::new()
    };
    let server = Server::start(fake).await;
    let mut client = server.client();
    log_in(&mut client, ALICE).await;
    let (_, csrf) = page_and_csrf(&mut client, "/apps/web").await;
    let action = action_path(
        &client
            .post_form("/apps/web/clone", &[("command", "x"), ("csrf", &csrf)])
            .await,
    );
    let mut events = client.events(&format!("{action}/events")).await;
    assert!(events.next().await.is_some());
    // The action never finishes (the gate stays shut), yet serve returns.
    server.stop().await;
    assert_eq!(events.next().await, None);
}

#[tokio::test]
async fn the_app_page_lists_domains_and_adds_one() {
    let server = Server::start(Fake::new()).await;
    let mut client = server.client();
    log_in(&mut client, ALICE).await;
    let (page, csrf) = page_and_csrf(&mut client, "/apps/web").await;
    assert!(page.contains("No custom domains."), "{page}");
    let started = client
        .post_form(
            "/apps/web/domains",
            &[("host", " www.example.com "), ("csrf", &csrf)],
        )
        .await;
    let (_, events) = follow_action(&mut client, &started).await;
    assert_eq!(events.last().map(|(name, _)| name.as_str()), Some("done"));
    assert_eq!(
        server.fake.actions(),
        [(
            "alice".to_owned(),
            line(&["domains:add", "web", "www.example.com"])
        )]
    );
    let (page, _) = page_and_csrf(&mut client, "/apps/web").await;
    assert!(
        page.contains("<td>www.example.com</td>") && page.contains("/apps/web/domains/remove"),
        "{page}"
    );
    server.stop().await;
}
