//! The JSON API: tokens, the access rule, bodies, and the command lines
//! that reach the backend.

use crate::support::{ALICE, BOB, Fake, Server, line};

#[tokio::test]
async fn no_token_or_a_wrong_one_is_401() {
    let server = Server::start(Fake::new()).await;
    for token in [None, Some("wrong"), Some(""), Some("nap_alice_token x")] {
        let reply = server.api_get("/api/apps", token).await;
        assert_eq!(reply.status, 401, "{token:?}: {reply:?}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert_eq!(reply.json()["error"], "missing or invalid token");
    }
    let basic = crate::http::request(
        server.addr,
        "GET",
        "/api/apps",
        &[("Authorization", "Basic YWxpY2U6eA==")],
        None,
    )
    .await;
    assert_eq!(basic.status, 401);
    let scale = server
        .api_post("/api/apps/web/scale", Some("wrong"), r#"{"instances": 3}"#)
        .await;
    assert_eq!(scale.status, 401);
    let deploy = server
        .api_post(
            "/api/deploy",
            None,
            r#"{"name": "x", "url": "https://e/x"}"#,
        )
        .await;
    assert_eq!(deploy.status, 401);
    assert!(server.fake.runs().is_empty(), "{:?}", server.fake.runs());
    assert!(server.fake.accesses().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn apps_and_app_come_from_the_commands() {
    let server = Server::start(Fake::new()).await;
    let apps = server.api_get("/api/apps", Some(ALICE)).await;
    assert_eq!(apps.status, 200, "{apps:?}");
    assert_eq!(apps.header("content-type"), Some("application/json"));
    assert_eq!(
        apps.json(),
        serde_json::json!([{"name": "web", "owner": "alice", "release": "v2", "up": 1, "desired": 1, "isolated": true}])
    );
    assert_eq!(
        server.fake.runs(),
        [("alice".to_owned(), line(&["apps", "--json"]))]
    );

    let app = server.api_get("/api/apps/web", Some(ALICE)).await;
    assert_eq!(app.status, 200, "{app:?}");
    let app = app.json();
    assert_eq!(app["name"], "web");
    assert_eq!(app["owner"], "alice");
    assert_eq!(app["instances"].as_array().map(Vec::len), Some(1));
    assert_eq!(app["instances"][0]["instance"], "web@1");
    assert_eq!(app["instances"][0]["limit_enforced"], true);
    assert_eq!(app["releases"].as_array().map(Vec::len), Some(2));
    assert_eq!(app["releases"][1]["current"], true);
    assert_eq!(
        server.fake.accesses(),
        [("alice".to_owned(), "web".to_owned(), false)]
    );
    server.stop().await;
}

#[tokio::test]
async fn someone_elses_app_is_403_and_shows_nothing() {
    let server = Server::start(Fake::new()).await;
    let gets = [
        "/api/apps/secret",
        "/api/apps/secret/logs",
        "/api/apps/secret/logs?n=5",
    ];
    for path in gets {
        let reply = server.api_get(path, Some(ALICE)).await;
        assert_eq!(reply.status, 403, "{path}: {reply:?}");
        assert_eq!(
            reply.json(),
            serde_json::json!({"error": "app secret belongs to another user"})
        );
    }
    let posts = [
        ("/api/apps/secret/scale", r#"{"instances": 5}"#),
        (
            "/api/apps/secret/clone",
            r#"{"command": "cat /etc/passwd"}"#,
        ),
    ];
    for (path, body) in posts {
        let reply = server.api_post(path, Some(ALICE), body).await;
        assert_eq!(reply.status, 403, "{path}: {reply:?}");
        assert!(!reply.body.contains("bob"), "{reply:?}");
    }
    // Not a single command ran for alice: no data could leak.
    assert!(server.fake.runs().is_empty(), "{:?}", server.fake.runs());
    // Scale asks for write access, reading and cloning for read access.
    assert!(
        server
            .fake
            .accesses()
            .contains(&("alice".to_owned(), "secret".to_owned(), true))
    );
    // bob, the owner, gets it.
    let owner = server.api_get("/api/apps/secret/logs", Some(BOB)).await;
    assert_eq!(owner.status, 200);
    assert_eq!(owner.json()["lines"][0], "secret@1 | bob's secret log line");
    server.stop().await;
}

#[tokio::test]
async fn unknown_app_is_404() {
    let server = Server::start(Fake::new()).await;
    let reply = server.api_get("/api/apps/nope", Some(ALICE)).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "app nope does not exist");
    let scale = server
        .api_post("/api/apps/nope/scale", Some(ALICE), r#"{"instances": 1}"#)
        .await;
    assert_eq!(scale.status, 404);
    assert!(server.fake.runs().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn bad_app_names_are_404_before_anything() {
    let server = Server::start(Fake::new()).await;
    let names = [
        "Web",
        "web_1",
        "%3Cscript%3E",
        "-web",
        "9web",
        &"a".repeat(64),
    ];
    for name in names {
        for token in [None, Some(ALICE)] {
            let get = server.api_get(&format!("/api/apps/{name}"), token).await;
            assert_eq!(get.status, 404, "{name} {token:?}: {get:?}");
            let post = server
                .api_post(
                    &format!("/api/apps/{name}/scale"),
                    token,
                    r#"{"instances": 1}"#,
                )
                .await;
            assert_eq!(post.status, 404, "{name} {token:?}: {post:?}");
        }
    }
    assert!(
        server.fake.accesses().is_empty(),
        "{:?}",
        server.fake.accesses()
    );
    assert!(server.fake.runs().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn scale_clone_and_deploy_run_exactly_their_command() {
    let server = Server::start(Fake::new()).await;
    let scale = server
        .api_post("/api/apps/web/scale", Some(ALICE), r#"{"instances": 3}"#)
        .await;
    assert_eq!(scale.status, 200, "{scale:?}");
    assert_eq!(
        scale.json(),
        serde_json::json!({"ok": true, "output": "-----> Scaling web to 3\n       web@3 up on port 20003\n"})
    );
    let clone = server
        .api_post(
            "/api/apps/web/clone",
            Some(ALICE),
            r#"{"command": "python3 worker.py --queue a", "name": "web-worker"}"#,
        )
        .await;
    assert_eq!(clone.status, 200, "{clone:?}");
    assert_eq!(clone.json()["ok"], true);
    let unnamed = server
        .api_post(
            "/api/apps/web/clone",
            Some(ALICE),
            r#"{"command": "sleep 1"}"#,
        )
        .await;
    assert_eq!(unnamed.status, 200, "{unnamed:?}");
    let deploy = server
        .api_post(
            "/api/deploy",
            Some(BOB),
            r#"{"name": "site", "url": "https://example.com/site.git", "ref": "main"}"#,
        )
        .await;
    assert_eq!(deploy.status, 200, "{deploy:?}");
    assert!(
        deploy.json()["output"]
            .as_str()
            .is_some_and(|o| o.contains("site v1 deployed"))
    );
    let no_ref = server
        .api_post(
            "/api/deploy",
            Some(BOB),
            r#"{"name": "site2", "url": "https://example.com/s.git"}"#,
        )
        .await;
    assert_eq!(no_ref.status, 200, "{no_ref:?}");
    assert_eq!(
        server.fake.runs(),
        [
            ("alice".to_owned(), line(&["scale", "web", "3"])),
            (
                "alice".to_owned(),
                line(&[
                    "clone",
                    "web",
                    "web-worker",
                    "--command",
                    "python3 worker.py --queue a"
                ])
            ),
            (
                "alice".to_owned(),
                line(&["clone", "web", "--command", "sleep 1"])
            ),
            (
                "bob".to_owned(),
                line(&[
                    "deploy",
                    "site",
                    "--from",
                    "https://example.com/site.git",
                    "--ref",
                    "main"
                ])
            ),
            (
                "bob".to_owned(),
                line(&["deploy", "site2", "--from", "https://example.com/s.git"])
            ),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_400_with_one_line() {
    let server = Server::start(Fake::new()).await;
    let cases = [
        ("/api/apps/web/scale", "{not json"),
        ("/api/apps/web/scale", ""),
        ("/api/apps/web/scale", r#"{"instances": "three"}"#),
        ("/api/apps/web/scale", r#"{"instances": -1}"#),
        ("/api/apps/web/scale", r#"{"instances": 1.5}"#),
        ("/api/apps/web/scale", r#"{}"#),
        ("/api/apps/web/scale", r#"{"instances": 2, "force": true}"#),
        ("/api/apps/web/clone", r#"{"name": "x"}"#),
        ("/api/apps/web/clone", r#"{"command": "  "}"#),
        ("/api/apps/web/clone", r#"{"command": "a\nb"}"#),
        (
            "/api/apps/web/clone",
            r#"{"command": "x", "name": "Not_A_Name"}"#,
        ),
        ("/api/deploy", r#"{"name": "site"}"#),
        (
            "/api/deploy",
            r#"{"name": "site", "url": "--upload-pack=touch /tmp/x"}"#,
        ),
        (
            "/api/deploy",
            r#"{"name": "site", "url": "https://e/x", "ref": "-x"}"#,
        ),
        ("/api/deploy", r#"{"name": "../etc", "url": "https://e/x"}"#),
    ];
    for (path, body) in cases {
        let reply = server.api_post(path, Some(ALICE), body).await;
        assert_eq!(reply.status, 400, "{path} {body}: {reply:?}");
        let error = reply.json()["error"]
            .as_str()
            .map(str::to_owned)
            .expect("an error string");
        assert!(!error.is_empty() && !error.contains('\n'), "{error:?}");
    }
    assert!(server.fake.runs().is_empty(), "{:?}", server.fake.runs());
    server.stop().await;
}

#[tokio::test]
async fn command_failures_carry_their_message() {
    let server = Server::start(Fake::new()).await;
    let refused = server
        .api_post("/api/apps/web/scale", Some(ALICE), r#"{"instances": 99}"#)
        .await;
    assert_eq!(refused.status, 409, "{refused:?}");
    assert_eq!(
        refused.json()["error"],
        "scale 99 is more than the maximum (10)"
    );
    let failed = server
        .api_post(
            "/api/apps/web/clone",
            Some(ALICE),
            r#"{"command": "false", "name": "w2"}"#,
        )
        .await;
    assert_eq!(failed.status, 409, "{failed:?}");
    assert_eq!(
        failed.json()["error"],
        "w2@1 exited at once; w2 was not created"
    );
    assert!(
        failed.json()["output"]
            .as_str()
            .is_some_and(|o| o.starts_with("-----> Creating w2"))
    );
    let usage = server
        .api_post(
            "/api/apps/web/clone",
            Some(ALICE),
            r#"{"command": "exit 2"}"#,
        )
        .await;
    assert_eq!(usage.status, 400, "{usage:?}");
    assert_eq!(
        usage.json()["error"],
        "usage: clone APP [NEW] --command CMD"
    );
    server.stop().await;
}

#[tokio::test]
async fn logs_take_n_within_bounds() {
    let server = Server::start(Fake::new()).await;
    let default = server.api_get("/api/apps/web/logs", Some(ALICE)).await;
    assert_eq!(default.status, 200, "{default:?}");
    assert_eq!(
        default.json(),
        serde_json::json!({"lines": ["web@1 | Serving HTTP on 0.0.0.0 port 20001", "web@1 | GET / 200"]})
    );
    let one = server.api_get("/api/apps/web/logs?n=1", Some(ALICE)).await;
    assert_eq!(
        one.json(),
        serde_json::json!({"lines": ["web@1 | GET / 200"]})
    );
    let most = server
        .api_get("/api/apps/web/logs?n=10000", Some(ALICE))
        .await;
    assert_eq!(most.status, 200);
    for bad in ["0", "10001", "abc", "-1", ""] {
        let reply = server
            .api_get(&format!("/api/apps/web/logs?n={bad}"), Some(ALICE))
            .await;
        assert_eq!(reply.status, 400, "n={bad}: {reply:?}");
    }
    assert_eq!(
        server.fake.runs(),
        [
            ("alice".to_owned(), line(&["logs", "web", "-n", "100"])),
            ("alice".to_owned(), line(&["logs", "web", "-n", "1"])),
            ("alice".to_owned(), line(&["logs", "web", "-n", "10000"])),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn large_bodies_and_unknown_endpoints() {
    let server = Server::start(Fake::new()).await;
    let huge = format!(r#"{{"command": "{}"}}"#, "x".repeat(100 * 1024));
    let reply = server
        .api_post("/api/apps/web/clone", Some(ALICE), &huge)
        .await;
    assert_eq!(reply.status, 413, "{:?}", reply.status);
    let unknown = server.api_get("/api/nothing", Some(ALICE)).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"].is_string());
    assert!(server.fake.runs().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn domains_are_listed_added_and_removed_through_the_commands() {
    let server = Server::start(Fake::new()).await;
    let added = server
        .api_post(
            "/api/apps/web/domains",
            Some(ALICE),
            r#"{"host": "www.example.com"}"#,
        )
        .await;
    assert_eq!(added.status, 200, "{added:?}");
    let listed = server.api_get("/api/apps/web/domains", Some(ALICE)).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.json()["hosts"][0], "www.example.com");
    let removed = crate::http::request(
        server.addr,
        "DELETE",
        "/api/apps/web/domains/www.example.com",
        &[("Authorization", &format!("Bearer {ALICE}"))],
        None,
    )
    .await;
    assert_eq!(removed.status, 200, "{removed:?}");
    // What cannot be one word of a command line never reaches one.
    for body in [
        r#"{"host": "-x.example.com"}"#,
        r#"{"host": "a b"}"#,
        r#"{"host": ""}"#,
    ] {
        let bad = server
            .api_post("/api/apps/web/domains", Some(ALICE), body)
            .await;
        assert_eq!(bad.status, 400, "{body}: {bad:?}");
    }
    // Someone else's app: refused before any command.
    let foreign = server
        .api_post(
            "/api/apps/secret/domains",
            Some(ALICE),
            r#"{"host": "evil.example.com"}"#,
        )
        .await;
    assert_eq!(foreign.status, 403, "{foreign:?}");
    assert_eq!(
        server.fake.actions(),
        [
            (
                "alice".to_owned(),
                line(&["domains:add", "web", "www.example.com"])
            ),
            (
                "alice".to_owned(),
                line(&["domains:remove", "web", "www.example.com"])
            ),
        ]
    );
    server.stop().await;
}
