//! The router over the instances, the JSON API and the web manager, against
//! the real daemon.

use std::collections::HashMap;

use crate::harness::{Nap, http, server_profile, text};
use crate::webdriver::{Driver, find_program};

fn through_router(nap: &Nap, host: &str) -> Option<(u16, String)> {
    http(nap.router_port, "GET", "/", &[("Host", host)], "")
}

/// Asks the router for `host` until `done` accepts the answers so far. The
/// router learns of instances from a snapshot the daemon publishes a moment
/// after they are up (for now it looks every 100 ms), not from the deploy
/// itself.
fn until_routed(nap: &Nap, host: &str, done: impl Fn(&[(u16, String)]) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut answers = Vec::new();
    while !done(&answers) {
        assert!(
            std::time::Instant::now() < deadline,
            "the router never routed {host} as expected: {answers:?}"
        );
        answers.extend(through_router(nap, host));
    }
}

#[test]
fn the_router_balances_and_loses_no_request_when_an_instance_dies() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile("scale: 3\n"));
    alice.deploy(&repo, "web");
    // Until all three instances are in the router's snapshot.
    until_routed(&nap, "web.localhost", |answers| {
        let names: std::collections::HashSet<&str> = answers
            .iter()
            .filter(|(status, _)| *status == 200)
            .filter_map(|(_, body)| body.split_whitespace().next())
            .collect();
        names.len() == 3
    });

    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let (status, body) = through_router(&nap, "web.localhost:8000").expect("router answers");
        assert_eq!(status, 200, "{body}");
        *served
            .entry(body.split_whitespace().next().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(served.len(), 3, "{served:?}");
    assert!(served.values().all(|n| *n == 10), "round robin: {served:?}");

    // Kill one instance mid-loop: the router tries the next at once.
    let victim = nap.ps("web")[1].pid.unwrap();
    let mut failed = 0;
    for n in 0..200 {
        if n == 50 {
            std::process::Command::new("kill")
                .args(["-9", &victim.to_string()])
                .status()
                .unwrap();
        }
        match through_router(&nap, "web.localhost") {
            Some((200, _)) => {}
            other => {
                failed += 1;
                eprintln!("request {n}: {other:?}");
            }
        }
    }
    assert_eq!(failed, 0, "requests failed after an instance was killed");
}

#[test]
fn unknown_apps_are_404_and_apps_with_nothing_up_are_502() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    until_routed(&nap, "web.localhost", |answers| {
        answers.last().is_some_and(|(status, _)| *status == 200)
    });
    assert_eq!(through_router(&nap, "nosuch.localhost").unwrap().0, 404);
    assert_eq!(through_router(&nap, "localhost").unwrap().0, 404);
    assert!(alice.ssh(&["scale", "web", "0"]).status.success());
    let (status, body) = through_router(&nap, "web.localhost").unwrap();
    assert_eq!(status, 502, "{body}");
}

fn token(user: &crate::harness::User) -> String {
    let output = user.ssh(&["token"]);
    assert!(output.status.success(), "{:?}", text(&output));
    text(&output).0.trim().to_owned()
}

#[test]
fn the_api_follows_the_same_access_rules_as_ssh() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let bob = nap.user("bob", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    let (alice_token, bob_token) = (token(&alice), token(&bob));
    let api = |method: &str, path: &str, token: Option<&str>, body: &str| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        http(nap.http_port, method, path, &headers, body).expect("api answers")
    };

    assert_eq!(api("GET", "/api/apps", None, "").0, 401);
    assert_eq!(api("GET", "/api/apps", Some("nap_wrong"), "").0, 401);
    let (status, body) = api("GET", "/api/apps", Some(&alice_token), "");
    assert_eq!(status, 200);
    assert!(body.contains("\"web\""), "{body}");
    let (status, body) = api("GET", "/api/apps/web", Some(&bob_token), "");
    assert_eq!(status, 403, "{body}");
    assert!(
        !body.contains("python3") && !body.contains("\"port\""),
        "{body}"
    );
    assert_eq!(
        api(
            "POST",
            "/api/apps/web/scale",
            Some(&bob_token),
            r#"{"instances": 3}"#
        )
        .0,
        403
    );
    assert_eq!(nap.ps("web").len(), 1);

    let (status, body) = api(
        "POST",
        "/api/apps/web/scale",
        Some(&alice_token),
        r#"{"instances": 2}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(nap.ps("web").len(), 2);
    let (status, body) = api(
        "POST",
        "/api/apps/web/clone",
        Some(&alice_token),
        r#"{"command": "python3 server.py", "name": "twin"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        nap.ps("twin").len(),
        1,
        "a similar app starts at its profile's scale"
    );
    let (status, body) = api("GET", "/api/apps/web/logs?n=5", Some(&alice_token), "");
    assert_eq!(status, 200, "{body}");

    // Revoked tokens stop working at once.
    assert!(alice.ssh(&["token", "--revoke"]).status.success());
    assert_eq!(api("GET", "/api/apps", Some(&alice_token), "").0, 401);
}

#[test]
fn scale_plus_one_in_a_real_browser() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    let token = token(&alice);
    let (Some(chromium), Some(chromedriver)) = (
        find_program(&["chromium", "chromium-browser"]),
        find_program(&["chromedriver"]),
    ) else {
        panic!(
            "this test needs chromium and chromedriver (Debian: apt-get install -y chromium chromium-driver)"
        );
    };
    let base = format!("http://127.0.0.1:{}", nap.http_port);
    let driver = Driver::start(&chromedriver, &chromium);
    driver.go(&format!("{base}/login"));
    driver.send_keys(&driver.find("#token"), &token);
    driver.click(&driver.find("#login"));
    driver.click(&driver.find("a[href='/apps/web']"));
    assert_eq!(driver.text(&driver.find("#up")), "1");
    driver.click(&driver.find("#scale-up"));
    assert_eq!(driver.text(&driver.find("#result.ok")), "Done.");
    driver.click(&driver.find("#back"));
    driver.find("#instances tbody tr:nth-child(2)");
    assert_eq!(driver.text(&driver.find("#desired")), "2");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("nap-e2e-output");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = driver.screenshot(&dir.join("scale-plus-one.png"));
    println!("screenshot: {}", shot.display());
    assert_eq!(nap.ps("web").len(), 2, "the daemon really scaled");
}
