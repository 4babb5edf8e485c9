//! Operating apps: scale, ps, logs, config, releases and rollback, restart,
//! destroy — as the owner over ssh, as `nap` on the host, and refused for
//! everyone else.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::harness::{Nap, http, http_get, server_profile, text};

#[test]
fn scale_up_and_down_persists_and_survives_a_restart() {
    let mut nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");

    let output = alice.ssh(&["scale", "web", "3"]);
    assert!(output.status.success(), "{:?}", text(&output));
    assert_eq!(nap.ps("web").len(), 3);
    let output = nap.cli(&["scale", "web+1"]);
    assert!(output.status.success(), "{:?}", text(&output));
    assert_eq!(nap.ps("web").len(), 4);
    let output = alice.ssh(&["scale", "web", "-2"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let left: Vec<String> = nap.ps("web").into_iter().map(|i| i.instance).collect();
    assert_eq!(left, vec!["web@1", "web@2"], "highest numbers stop first");

    nap.restart();
    let instances = nap.ps("web");
    assert_eq!(instances.len(), 2, "scale survived the restart");
    for i in &instances {
        assert!(http_get(i.port, "/").is_some());
    }
    // Restoring an app waits until the router has its instances, as a deploy does; the
    // routes must be fed by then (they were not, and every restore waited out the
    // 30 s drain timeout before the daemon served).
    let log = nap.log_text();
    assert!(!log.contains("not in the routes"), "{log}");
    let routed = http(
        nap.router_port,
        "GET",
        "/",
        &[("Host", "web.localhost")],
        "",
    );
    assert_eq!(routed.map(|(status, _)| status), Some(200));
    // A push that does not change the profile's scale keeps the set scale...
    alice.commit(&repo, &[("README", "more\n")], "docs");
    alice.deploy(&repo, "web");
    assert_eq!(nap.ps("web").len(), 2);
    // ...one that changes it wins.
    alice.commit(
        &repo,
        &[("profile", &server_profile("scale: 1\n"))],
        "scale 1",
    );
    alice.deploy(&repo, "web");
    assert_eq!(nap.ps("web").len(), 1);

    let output = alice.ssh(&["scale", "web", "0"]);
    assert!(output.status.success());
    assert!(nap.ps("web").is_empty());
    assert!(
        text(&alice.ssh(&["releases", "web"])).0.contains("v3"),
        "scale 0 keeps the app"
    );
    for bad in ["lots", "-5", "65", "+99"] {
        let output = alice.ssh(&["scale", "web", bad]);
        assert!(!output.status.success(), "{bad}");
        assert!(
            text(&output).1.contains("expected a number of instances"),
            "{:?}",
            text(&output)
        );
    }
}

#[test]
fn a_killed_instance_is_restarted_and_answers_again() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    let before = &nap.ps("web")[0];
    let pid = before.pid.unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    // The supervisor notices the exit and restarts it after its backoff; wait
    // for that through `ps`, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = &nap.ps("web")[0];
        if now.restarts == 1 && now.state == "up" && http_get(now.port, "/").is_some() {
            assert_ne!(now.pid, Some(pid));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not restarted: {now:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn logs_show_lines_and_follow_sees_new_ones() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile("scale: 2\n"));
    alice.deploy(&repo, "web");
    let ports: Vec<u16> = nap.ps("web").iter().map(|i| i.port).collect();
    http_get(ports[0], "/first").unwrap();

    let logs = text(&alice.ssh(&["logs", "web", "-n", "50"])).0;
    assert!(
        logs.contains("web@1 | GET /first") || logs.contains("web@2 | GET /first"),
        "{logs}"
    );
    assert!(logs.contains("listening on"), "{logs}");
    let only_two = text(&nap.cli(&["logs", "web", "-i", "2"])).0;
    assert!(
        only_two.lines().all(|l| l.starts_with("web@2 | ")),
        "{only_two}"
    );

    // Follow over real ssh: a request made after it started shows up.
    let mut follower = Command::new("ssh")
        .args(alice.ssh_options("accept-new"))
        .args(["iwanna@127.0.0.1", "logs", "web", "-f", "-n", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    // Keep requesting until the follower reports one of them: it may not
    // have started watching when the first request is logged.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.by_ref() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut seen = None;
    for attempt in 0..100 {
        http_get(ports[1], &format!("/followed-{attempt}")).unwrap();
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
            seen = Some(line);
            break;
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let line = seen.expect("logs -f printed nothing");
    assert!(line.contains("| GET /followed-"), "{line}");
}

#[test]
fn config_is_applied_as_a_new_release_and_never_logged() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    let output = alice.ssh(&["config:set", "web", "GREETING=bonjour", "CODE=s3cr3t-value"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let instance = &nap.ps("web")[0];
    assert_eq!(instance.release, "v2");
    assert_eq!(
        http_get(instance.port, "/").unwrap().trim(),
        "web@1 v2 bonjour s3cr3t-value"
    );
    assert!(
        text(&alice.ssh(&["config", "web"]))
            .0
            .contains("GREETING=bonjour")
    );
    assert!(
        !nap.log_text().contains("s3cr3t-value"),
        "a config value reached the daemon log"
    );

    let output = alice.ssh(&["config:unset", "web", "GREETING"]);
    assert!(output.status.success());
    let instance = &nap.ps("web")[0];
    assert!(http_get(instance.port, "/").unwrap().contains(" hello "));
    for bad in ["1X=y", "PORT=1", "NAP_APP=x", "novalue"] {
        let output = alice.ssh(&["config:set", "web", bad]);
        assert!(!output.status.success(), "{bad}");
    }
    assert_eq!(
        nap.ps("web")[0].release,
        "v3",
        "refused changes made no release"
    );
}

#[test]
fn rollback_serves_the_old_code_and_releases_list_it() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    let v2 = crate::harness::SERVER_PY.replace("{NAME} {os", "{NAME} NEW {os");
    alice.commit(&repo, &[("server.py", &v2)], "new code");
    alice.deploy(&repo, "web");
    assert!(
        http_get(nap.ps("web")[0].port, "/")
            .unwrap()
            .contains(" NEW ")
    );

    let output = alice.ssh(&["rollback", "web"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let instance = &nap.ps("web")[0];
    assert_eq!(instance.release, "v3");
    assert!(
        !http_get(instance.port, "/").unwrap().contains(" NEW "),
        "old code serves"
    );
    let releases = text(&alice.ssh(&["releases", "web"])).0;
    assert!(releases.contains("rollback to v1"), "{releases}");
    assert!(
        releases.lines().nth(1).unwrap().starts_with("* v3"),
        "{releases}"
    );
    let output = alice.ssh(&["rollback", "web", "v9"]);
    assert!(!output.status.success());
    assert!(text(&output).1.contains("has no release v9"));
}

#[test]
fn restart_replaces_every_instance_one_by_one() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile("scale: 2\n"));
    alice.deploy(&repo, "web");
    let before: Vec<Option<u32>> = nap.ps("web").iter().map(|i| i.pid).collect();
    let output = nap.cli(&["restart", "web"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let after = nap.ps("web");
    assert_eq!(after.len(), 2);
    for i in &after {
        assert!(!before.contains(&i.pid), "{i:?} was not restarted");
        assert!(http_get(i.port, "/").is_some());
    }
}

#[test]
fn destroy_needs_force_then_frees_the_name() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let bob = nap.user("bob", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    let port = nap.ps("web")[0].port;

    let output = alice.ssh(&["destroy", "web"]);
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("destroy web --force"),
        "{:?}",
        text(&output)
    );
    assert!(
        http_get(port, "/").is_some(),
        "nothing happened without --force"
    );

    let output = alice.ssh(&["destroy", "web", "--force"]);
    assert!(output.status.success(), "{:?}", text(&output));
    assert!(http_get(port, "/").is_none());
    for gone in ["repos/web.git", "apps/web", "logs/web"] {
        assert!(!nap.data.join(gone).exists(), "{gone} remains");
    }
    // The name is free again, for anyone.
    let theirs = bob.app_repo("bobs", &server_profile(""));
    bob.deploy(&theirs, "web");
    assert!(text(&bob.ssh(&["apps"])).0.contains("web"));
}

#[test]
fn every_command_is_refused_on_someone_elses_app_without_leaking_it() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let bob = nap.user("bob", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    alice.ssh(&["config:set", "web", "CODE=topsecret"]);
    let port = nap.ps("web")[0].port;
    http_get(port, "/private-path").unwrap();
    for command in [
        vec!["ps", "web"],
        vec!["scale", "web", "3"],
        vec!["logs", "web"],
        vec!["restart", "web"],
        vec!["releases", "web"],
        vec!["rollback", "web"],
        vec!["config", "web"],
        vec!["config:set", "web", "A=b"],
        vec!["config:unset", "web", "CODE"],
        vec!["destroy", "web", "--force"],
    ] {
        let output = bob.ssh(&command);
        let (stdout, stderr) = text(&output);
        assert!(!output.status.success(), "{command:?} was allowed");
        assert!(
            stderr.contains("app web belongs to another user"),
            "{command:?}: {stderr}"
        );
        for secret in ["topsecret", "private-path", &port.to_string()] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{command:?} leaked {secret}"
            );
        }
    }
    assert_eq!(nap.ps("web").len(), 1, "still running, untouched");
    assert_eq!(nap.ps("web")[0].release, "v2");
}

#[test]
fn wrong_usage_prints_usage() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    for (command, usage) in [
        (vec!["ps"], "usage: ps APP"),
        (vec!["scale", "web"], "usage: scale APP"),
        (vec!["logs", "web", "-n"], "usage: logs APP"),
        (vec!["rollback"], "usage: rollback APP"),
        (vec!["config:set", "web"], "usage: config:set APP"),
        (vec!["destroy"], "usage: destroy APP"),
    ] {
        let output = alice.ssh(&command);
        assert_eq!(output.status.code(), Some(2), "{command:?}");
        assert!(
            text(&output).1.contains(usage),
            "{command:?}: {:?}",
            text(&output)
        );
    }
}
