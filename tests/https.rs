//! Custom domains and HTTPS end to end: the real daemon and router, real
//! pebble validating HTTP-01 against the router's plain-HTTP listener (its
//! resolver is a tiny DNS responder in this process that answers 127.0.0.1),
//! and curl as the browser.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::harness::{Nap, User, http, server_profile, text};
use crate::pebble::{DnsResponder, Pebble, free_port};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A certificate authority of the test's own, and what it signs.
struct TestCa {
    root_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "nap https test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = params.self_signed(&key).expect("self-sign the CA");
        TestCa {
            root_pem: root.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Chain (leaf, root) then key for `names`, valid `from`..`until`.
    fn bundle(&self, names: &[&str], from: SystemTime, until: SystemTime) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("names");
        params.not_before = from.into();
        params.not_after = until.into();
        let leaf = params.signed_by(&key, &self.issuer).expect("sign");
        (
            format!("{}{}", leaf.pem(), self.root_pem),
            key.serialize_pem(),
        )
    }

    /// A valid certificate for `names`: chain and key, as `certs:add` reads it.
    fn valid(&self, names: &[&str], days: u32) -> String {
        let now = SystemTime::now();
        let (chain, key) = self.bundle(names, now - DAY, now + DAY * days);
        format!("{chain}{key}")
    }
}

fn ok(output: &Output, what: &str) -> String {
    let (stdout, stderr) = text(output);
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

fn refused(output: &Output, what: &str) -> String {
    let (stdout, stderr) = text(output);
    assert!(
        !output.status.success(),
        "{what} was accepted:\n{stdout}\n{stderr}"
    );
    stderr
}

/// `curl https://HOST:PORT/` with HOST resolved to 127.0.0.1 and `root`
/// the one trusted CA: the body, or curl's error.
fn curl(host: &str, port: u16, root: &Path) -> Result<String, String> {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "20"])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(root)
        .arg(format!("https://{host}:{port}/"))
        .output()
        .expect("run curl");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Waits until `certs APP --json` says `done`, for the renewal task (a
/// status polled, with a deadline, not a sleep standing in for it).
fn wait_for_certs(
    user: &User,
    app: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report: serde_json::Value =
            serde_json::from_str(&ok(&user.ssh(&["certs", app, "--json"]), "certs --json"))
                .expect("certs --json is JSON");
        if done(&report) {
            return report;
        }
        assert!(Instant::now() < deadline, "certs of {app} stayed {report}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` for `host` through the router, asked again (for at most 10 s)
/// until the status is `expected`: the routes follow a change a moment after
/// the command that made it has answered.
fn routed(port: u16, path: &str, host: &str, expected: u16) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = http(port, "GET", path, &[("Host", host)], "").expect("the router answers");
        if answer.0 == expected || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn source_of(report: &serde_json::Value, host: &str) -> Option<String> {
    report["hosts"]
        .as_array()?
        .iter()
        .find(|entry| entry["host"] == host)?["source"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn an_acme_certificate_through_real_http01_serves_the_app_and_is_renewed_before_expiry() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime for the DNS responder");
    let dns = runtime.block_on(DnsResponder::start());
    // pebble validates HTTP-01 on the router's port, so it is chosen first.
    let router_port = free_port();
    let pebble = Pebble::start(router_port, dns.addr);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("nap.yaml");
    std::fs::write(
        &config,
        format!(
            "acme_directory: {}\nacme_contact: [ops@nap.test]\nacme_root: {}\n",
            pebble.directory_url(),
            pebble.api_root.display()
        ),
    )
    .expect("config");
    let nap = Nap::start_on_ports(
        0,
        router_port,
        &["--config", config.to_str().expect("utf-8")],
    );
    let alice = nap.user("alice", "ed25519", false);
    alice.deploy(&alice.app_repo("web", &server_profile("")), "web");

    ok(
        &alice.ssh(&["domains:add", "web", "WWW.Shop.Test"]),
        "domains:add",
    );
    assert!(ok(&alice.ssh(&["domains", "web"]), "domains").contains("www.shop.test"));
    let ordered = ok(&alice.ssh(&["certs:auto", "web"]), "certs:auto");
    assert!(ordered.contains("certificate stored"), "{ordered}");
    let report = wait_for_certs(&alice, "web", |r| source_of(r, "www.shop.test").is_some());
    assert_eq!(source_of(&report, "www.shop.test").as_deref(), Some("acme"));
    assert!(report.to_string().contains("Pebble"), "{report}");

    let (root, _) = pebble.issuing_root();
    let root_file = dir.path().join("pebble-root.pem");
    std::fs::write(&root_file, root).expect("root");
    let body = curl("www.shop.test", nap.https_port, &root_file)
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", nap.log_text()));
    assert!(body.starts_with("web@1 v1"), "{body}");

    // Renewal: a certificate 10 days from expiry (inside the 30-day window)
    // is replaced by the running daemon, which serves the new one.
    let ca = TestCa::new();
    let near = ca.valid(&["www.shop.test"], 10);
    ok(
        &alice.ssh_with_input(&["certs:add", "web"], &near),
        "certs:add",
    );
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.root_pem).expect("ca");
    let report = wait_for_certs(&alice, "web", |r| {
        source_of(r, "www.shop.test").as_deref() == Some("acme")
    });
    assert!(report.to_string().contains("Pebble"), "{report}");
    curl("www.shop.test", nap.https_port, &root_file).expect("the renewed certificate is served");
    assert!(
        curl("www.shop.test", nap.https_port, &ca_file).is_err(),
        "the old one is gone"
    );

    // Redirect on: plain HTTP for the host gets a 308 to HTTPS; off: the app.
    ok(
        &alice.ssh(&["domains:redirect", "web", "on"]),
        "redirect on",
    );
    let (status, body) = routed(nap.router_port, "/a?b", "www.shop.test", 308);
    assert_eq!(status, 308, "{body}");
    assert!(
        body.contains(&format!("https://www.shop.test:{}/a?b", nap.https_port)),
        "{body}"
    );
    ok(
        &alice.ssh(&["domains:redirect", "web", "off"]),
        "redirect off",
    );
    let (status, body) = routed(nap.router_port, "/", "www.shop.test", 200);
    assert_eq!((status, body.starts_with("web@1")), (200, true), "{body}");

    // Removed: 404 over HTTP, and no certificate for it over HTTPS.
    ok(
        &alice.ssh(&["domains:remove", "web", "www.shop.test"]),
        "domains:remove",
    );
    let (status, _) = routed(nap.router_port, "/", "www.shop.test", 404);
    assert_eq!(status, 404);
    assert!(curl("www.shop.test", nap.https_port, &root_file).is_err());

    // With the ACME server gone, an order fails: said at once, and kept in
    // `certs APP` for later.
    drop(pebble);
    ok(
        &alice.ssh(&["domains:add", "web", "late.shop.test"]),
        "domains:add",
    );
    let failed = refused(
        &alice.ssh(&["certs:auto", "web"]),
        "certs:auto without ACME",
    );
    assert!(failed.contains("late.shop.test"), "{failed}");
    let report = wait_for_certs(&alice, "web", |r| r["hosts"][0]["last_error"].is_string());
    assert!(report["hosts"][0]["source"].is_null(), "{report}");
    let shown = ok(&alice.ssh(&["certs", "web"]), "certs");
    assert!(
        shown.contains("late.shop.test  no certificate") && shown.contains("failed:"),
        "{shown}"
    );
}

#[test]
fn uploaded_certificates_are_served_by_sni_and_bad_ones_and_foreign_hosts_are_refused() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let bob = nap.user("bob", "ed25519", false);
    alice.deploy(&alice.app_repo("one", &server_profile("")), "one");
    bob.deploy(&bob.app_repo("two", &server_profile("")), "two");
    ok(&alice.ssh(&["domains:add", "one", "a.site.test"]), "add a");
    ok(&bob.ssh(&["domains:add", "two", "b.site.test"]), "add b");

    // A host belongs to one app; a user learns that, not whose it is.
    let taken = refused(&bob.ssh(&["domains:add", "two", "a.site.test"]), "taking a");
    assert!(
        taken.contains("another app") && !taken.contains("one"),
        "{taken}"
    );
    let told = refused(
        &nap.cli(&["domains:add", "two", "a.site.test"]),
        "admin taking a",
    );
    assert!(told.contains("app one"), "an admin is told whose: {told}");
    for bad in [
        "not a host",
        "-x.test",
        "two.localhost",
        "127.0.0.1",
        "a..test",
    ] {
        refused(&alice.ssh(&["domains:add", "one", bad]), bad);
    }
    refused(
        &alice.ssh(&["domains:add", "two", "c.site.test"]),
        "another user's app",
    );

    let ca = TestCa::new();
    let ca_file = nap.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.root_pem).expect("ca");
    let stored = ok(
        &alice.ssh_with_input(&["certs:add", "one"], &ca.valid(&["a.site.test"], 60)),
        "upload a",
    );
    assert!(stored.contains("a.site.test"), "{stored}");
    // A redirect waits for a certificate: without one it would lead nowhere.
    ok(&bob.ssh(&["domains:redirect", "two", "on"]), "redirect on");
    let (status, _) = routed(nap.router_port, "/", "b.site.test", 200);
    assert_eq!(status, 200, "no certificate yet: no redirect");
    ok(
        &bob.ssh_with_input(&["certs:add", "two"], &ca.valid(&["b.site.test"], 60)),
        "upload b",
    );
    let (status, _) = routed(nap.router_port, "/", "b.site.test", 308);
    assert_eq!(status, 308, "with a certificate: the redirect");
    let a = curl("a.site.test", nap.https_port, &ca_file).expect("a over HTTPS");
    let b = curl("b.site.test", nap.https_port, &ca_file).expect("b over HTTPS");
    assert!(a.starts_with("one@1") && b.starts_with("two@1"), "{a} {b}");
    let certs = ok(&alice.ssh(&["certs", "one"]), "certs");
    assert!(
        certs.contains("a.site.test  uploaded") && certs.contains("nap https test CA"),
        "{certs}"
    );

    // Refused, and nothing changes: a key that is not the certificate's, an
    // expired certificate, one for another user's host, and another's app.
    let now = SystemTime::now();
    let (chain, _) = ca.bundle(&["a.site.test"], now - DAY, now + DAY * 90);
    let (_, other_key) = ca.bundle(&["a.site.test"], now - DAY, now + DAY * 90);
    let mismatch = refused(
        &alice.ssh_with_input(&["certs:add", "one"], &format!("{chain}{other_key}")),
        "mismatch",
    );
    assert!(mismatch.contains("does not match"), "{mismatch}");
    let (chain, key) = ca.bundle(&["a.site.test"], now - DAY * 90, now - DAY);
    let expired = refused(
        &alice.ssh_with_input(&["certs:add", "one"], &format!("{chain}{key}")),
        "expired",
    );
    assert!(expired.contains("expired"), "{expired}");
    let foreign = refused(
        &alice.ssh_with_input(&["certs:add", "one"], &ca.valid(&["b.site.test"], 60)),
        "b's host",
    );
    assert!(foreign.contains("covers none"), "{foreign}");
    refused(
        &alice.ssh_with_input(&["certs:add", "two"], &ca.valid(&["b.site.test"], 60)),
        "bob's app",
    );
    refused(
        &alice.ssh(&["certs:remove", "two", "b.site.test"]),
        "removing bob's",
    );
    assert!(ok(&alice.ssh(&["certs", "one"]), "certs").contains("a.site.test  uploaded"));
    curl("b.site.test", nap.https_port, &ca_file).expect("b still served");

    // The JSON API: the same commands, the same rules.
    let token = ok(&bob.ssh(&["token"]), "token").trim().to_owned();
    let auth = format!("Bearer {token}");
    let auth = [("Authorization", auth.as_str())];
    let (status, body) =
        http(nap.http_port, "GET", "/api/apps/two/domains", &auth, "").expect("api");
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        listed["hosts"],
        serde_json::json!(["b.site.test"]),
        "{body}"
    );
    let (status, body) = http(
        nap.http_port,
        "POST",
        "/api/apps/two/domains",
        &auth,
        r#"{"host": "a.site.test"}"#,
    )
    .expect("api");
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("another app") && !body.contains("one"),
        "{body}"
    );
    let (status, body) = http(nap.http_port, "GET", "/api/apps/two/certs", &auth, "").expect("api");
    assert!(
        status == 200 && body.contains("\"source\":\"uploaded\""),
        "{body}"
    );

    // Destroy frees the host (and its certificate goes).
    ok(&alice.ssh(&["destroy", "one", "--force"]), "destroy");
    assert!(curl("a.site.test", nap.https_port, &ca_file).is_err());
    ok(
        &bob.ssh(&["domains:add", "two", "a.site.test"]),
        "a is free again",
    );
    let (status, body) = routed(nap.router_port, "/", "a.site.test", 200);
    assert_eq!((status, body.starts_with("two@1")), (200, true), "{body}");
}
