//! Every push is a deploy: checkout, profile, supervised instances, health,
//! rejection that leaves the running release alone, restarts.

use crate::harness::{Nap, announced_ports, http_get, nap_bin, server_profile, text};

#[test]
fn scale_three_gives_three_ports_answering_with_their_instance() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile("scale: 3\n"));
    let output = alice.deploy(&repo, "web");
    assert!(
        output.contains("-----> Starting 3 instances of web (v1)"),
        "{output}"
    );
    assert!(output.contains("-----> web v1 deployed"), "{output}");
    let ports = announced_ports(&output);
    assert_eq!(
        ports.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "{output}"
    );
    let mut distinct: Vec<u16> = ports.iter().map(|p| p.1).collect();
    distinct.dedup();
    assert_eq!(distinct.len(), 3);
    for (index, port) in ports {
        let body = http_get(port, "/").unwrap_or_else(|| {
            let log = std::fs::read_to_string(nap.data.join(format!("logs/web/web@{index}.log")));
            panic!(
                "web@{index} on {port} does not answer; its log: {log:?}\nps: {:?}",
                nap.ps("web")
            )
        });
        assert!(body.starts_with(&format!("web@{index} v1 ")), "{body}");
    }
    let release = std::fs::read_to_string(nap.data.join("apps/web/releases/v1.json")).unwrap();
    assert!(release.contains("\"pusher\": \"alice\""), "{release}");
    assert!(nap.data.join("apps/web/releases/v1/server.py").exists());
}

/// The commit a bare repository's master points at.
fn master_of(bare: &std::path::Path) -> String {
    let output = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(["rev-parse", "refs/heads/master"])
        .output()
        .expect("git rev-parse");
    text(&output).0
}

/// The hook git runs is the nap binary itself (a link), and it refuses a push that did not
/// come through nap's door: one straight into the repository on the host, with nothing of
/// nap's in its environment, and one that names the daemon's socket with a made-up token.
#[test]
fn the_hook_is_the_nap_binary_and_pushes_around_nap_are_refused() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    let port = announced_ports(&alice.deploy(&repo, "web"))[0].1;
    let bare = nap.data.join("repos/web.git");
    assert_eq!(
        std::fs::read_link(bare.join("hooks/pre-receive")).expect("the hook is a link"),
        std::fs::canonicalize(nap_bin()).expect("the nap binary")
    );
    let deployed = master_of(&bare);

    alice.commit(&repo, &[("extra.txt", "around nap\n")], "around");
    let target = bare.to_str().expect("a UTF-8 path");
    for (token_env, expected) in [
        (None, "pushes must go through nap"),
        (
            Some("0123456789abcdef"),
            "this push did not come through nap; refused",
        ),
    ] {
        let mut push = alice.git_command(&repo, &["push", target, "master"]);
        if let Some(token) = token_env {
            push.env("NAP_SOCKET", nap.data.join("nap.sock"))
                .env("NAP_HOOK_TOKEN", token);
        }
        let output = push.output().expect("git push");
        let stderr = text(&output).1;
        assert!(!output.status.success(), "pushed around nap:\n{stderr}");
        assert!(stderr.contains(expected), "{expected:?} not in\n{stderr}");
        assert!(stderr.contains("pre-receive hook declined"), "{stderr}");
        assert_eq!(master_of(&bare), deployed, "the ref moved");
    }
    assert!(http_get(port, "/").is_some_and(|body| body.starts_with("web@1 v1")));
}

/// A repository made by an older nap has a shell script as its hook, which ran `$NAP_BIN
/// hook pre-receive`; nap no longer sets `NAP_BIN`. Its next push replaces the script with
/// the link first, and deploys.
#[test]
fn a_repository_with_an_older_naps_hook_script_gets_the_link_and_deploys() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    let hook = nap.data.join("repos/web.git/hooks/pre-receive");
    std::fs::remove_file(&hook).expect("remove the link");
    std::fs::write(
        &hook,
        "#!/bin/sh\n: \"${NAP_BIN:?pushes must go through nap}\"\nexec \"$NAP_BIN\" hook pre-receive\n",
    )
    .expect("the old hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");

    alice.commit(&repo, &[("extra.txt", "second\n")], "second");
    let output = alice.deploy(&repo, "web");
    assert!(output.contains("-----> web v2 deployed"), "{output}");
    assert_eq!(
        std::fs::read_link(&hook).expect("the hook is a link again"),
        std::fs::canonicalize(nap_bin()).expect("the nap binary")
    );
}

#[test]
fn bad_profiles_are_rejected_with_line_info_and_the_old_release_keeps_serving() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    let ports = announced_ports(&alice.deploy(&repo, "web"));
    let port = ports[0].1;
    let head = text(&alice.git(&repo, &["rev-parse", "HEAD"])).0;
    for (profile, expected) in [
        ("command: [unclosed\n", "profile:1:"),
        ("scale: 2\n", "profile:1:1: missing required key 'command'"),
        (
            "command: python3 server.py\nscale: -1\n",
            "profile:2:8: scale:",
        ),
        (
            "command: python3 server.py\nscale: lots\n",
            "profile:2:8: scale: expected a whole number from 0 to 64, found 'lots'",
        ),
        (
            "command: python3 server.py\nmemory: 12Q\n",
            "profile:2:9: memory:",
        ),
    ] {
        alice.commit(&repo, &[("profile", profile)], "bad");
        let output = alice.push(&repo, "web");
        let stderr = text(&output).1;
        assert!(
            !output.status.success(),
            "{profile:?} was deployed:\n{stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{profile:?}: expected {expected:?} in\n{stderr}"
        );
        assert!(stderr.contains("pre-receive hook declined"), "{stderr}");
        assert!(
            http_get(port, "/").is_some_and(|b| b.starts_with("web@1 v1")),
            "old release stopped"
        );
        alice.git(&repo, &["reset", "-q", "--hard", head.trim()]);
    }
    // The ref was never moved: the server still has the good commit.
    let remote = text(&alice.git(&repo, &["ls-remote", &alice.remote("web"), "master"])).0;
    assert!(remote.starts_with(head.trim()), "{remote}");
    assert_eq!(nap.ps("web").len(), 1);
}

#[test]
fn a_release_that_exits_at_once_is_rejected_with_its_last_lines() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile("scale: 2\n"));
    let ports = announced_ports(&alice.deploy(&repo, "web"));
    alice.commit(
        &repo,
        &[(
            "profile",
            "command: echo booting; echo cannot connect to db >&2; exit 3\n",
        )],
        "broken",
    );
    let output = alice.push(&repo, "web");
    let stderr = text(&output).1;
    assert!(!output.status.success());
    assert!(stderr.contains("exited with status 3"), "{stderr}");
    assert!(stderr.contains("cannot connect to db"), "{stderr}");
    assert!(
        stderr.contains("the running release is unchanged"),
        "{stderr}"
    );
    for (index, port) in ports {
        let body = http_get(port, "/").expect("old instance still answers");
        assert!(body.starts_with(&format!("web@{index} v1")), "{body}");
    }
    assert!(
        !nap.data.join("apps/web/releases/v2").exists(),
        "no half release left"
    );
    let instances = nap.ps("web");
    assert_eq!(instances.len(), 2);
    assert!(instances.iter().all(|i| i.release == "v1"));
}

#[test]
fn an_app_listening_on_the_wrong_port_is_rejected() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.repo(
        "web",
        &[(
            "profile",
            "command: python3 -m http.server --bind 127.0.0.1 0\n",
        )],
    );
    let output = alice.push(&repo, "web");
    let stderr = text(&output).1;
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("not on $PORT"), "{stderr}");
}

#[test]
fn unknown_keys_warn_and_the_deploy_goes_on() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile("scael: 2\n"));
    let output = alice.deploy(&repo, "web");
    assert!(
        output.contains("unknown key 'scael' (did you mean 'scale'?)"),
        "{output}"
    );
    assert!(output.contains("web v1 deployed"));
}

#[test]
fn no_profile_is_rejected_and_other_branches_are_only_stored() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.repo("web", &[("README", "no profile here\n")]);
    let output = alice.push(&repo, "web");
    assert!(!output.status.success());
    assert!(
        text(&output)
            .1
            .contains("no profile at the root of the tree"),
        "{:?}",
        text(&output)
    );

    alice.git(&repo, &["checkout", "-q", "-b", "feature"]);
    let output = alice.git(&repo, &["push", &alice.remote("web"), "feature"]);
    assert!(output.status.success(), "{:?}", text(&output));
    assert!(
        text(&output)
            .1
            .contains("refs/heads/feature stored, not deployed"),
        "{:?}",
        text(&output)
    );
}

#[test]
fn memory_limit_stops_an_instance_that_allocates_too_much() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let hog = "command: python3 -c \"import time; b = bytearray(400 * 1024 * 1024); print('allocated', flush=True); time.sleep(600)\"\nmemory: 64M\n";
    let repo = alice.repo("hog", &[("profile", hog)]);
    let output = alice.push(&repo, "hog");
    let stderr = text(&output).1;
    if stderr.contains("not enforced") {
        println!("skipped: this machine lets nap create no memory cgroup ({stderr})");
        return;
    }
    assert!(
        !output.status.success(),
        "a 400 MB allocation kept running under 64M:\n{stderr}"
    );
    assert!(!stderr.contains("hog@1 | allocated"), "{stderr}");
    assert!(nap.ps("hog").is_empty());
}

#[test]
fn parallel_pushes_to_four_apps_and_two_to_one_app_all_end_well() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repos: Vec<_> = (0..4)
        .map(|i| alice.app_repo(&format!("w{i}"), &server_profile("scale: 2\n")))
        .collect();
    let same = alice.app_repo("same", &server_profile(""));
    let same2 = alice.home.join("same2");
    assert!(
        alice
            .git(
                &alice.home,
                &[
                    "clone",
                    "-q",
                    same.to_str().unwrap(),
                    same2.to_str().unwrap()
                ]
            )
            .status
            .success()
    );
    alice.commit(
        &same2,
        &[("profile", &server_profile("scale: 2\n"))],
        "second",
    );
    let alice = &alice;
    let (same, same2) = (&same, &same2);
    std::thread::scope(|scope| {
        let mut pushes = Vec::new();
        for (i, repo) in repos.iter().enumerate() {
            pushes.push(scope.spawn(move || (format!("w{i}"), alice.push(repo, &format!("w{i}")))));
        }
        pushes.push(scope.spawn(move || {
            (
                "same".to_owned(),
                alice.git(same, &["push", "-f", &alice.remote("same"), "master"]),
            )
        }));
        pushes.push(scope.spawn(move || {
            (
                "same".to_owned(),
                alice.git(same2, &["push", "-f", &alice.remote("same"), "master"]),
            )
        }));
        for push in pushes {
            let (app, output) = push.join().unwrap();
            assert!(output.status.success(), "{app}: {}", text(&output).1);
        }
    });
    for i in 0..4 {
        let instances = nap.ps(&format!("w{i}"));
        assert_eq!(instances.len(), 2);
        for instance in instances {
            assert!(http_get(instance.port, "/").is_some());
        }
    }
    // Two pushes of `same`, one after the other: the second (forced) one's
    // release runs, and the repository holds its commit.
    let instances = nap.ps("same");
    assert!(
        !instances.is_empty() && instances.iter().all(|i| i.release == "v2"),
        "{instances:?}"
    );
    let v2 = std::fs::read_to_string(nap.data.join("apps/same/releases/v2.json")).unwrap();
    let master = text(&alice.git(same, &["ls-remote", &alice.remote("same"), "master"])).0;
    let commit = master.split_whitespace().next().unwrap();
    assert!(
        v2.contains(commit),
        "running release is not the pushed master {commit}:\n{v2}"
    );
}

#[test]
fn a_crashed_daemon_comes_back_with_every_instance() {
    let mut nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let web = alice.app_repo("web", &server_profile("scale: 2\n"));
    alice.deploy(&web, "web");
    let api = alice.app_repo("api", &server_profile(""));
    alice.deploy(&api, "api");
    let before: Vec<u32> = ["web", "api"]
        .iter()
        .flat_map(|a| nap.ps(a))
        .filter_map(|i| i.pid)
        .collect();
    assert_eq!(before.len(), 3);

    nap.crash();
    nap.start_again();

    for (app, count) in [("web", 2), ("api", 1)] {
        let instances = nap.ps(app);
        assert_eq!(instances.len(), count, "{app}: {instances:?}");
        for instance in instances {
            assert_eq!(instance.state, "up", "{instance:?}");
            let body = http_get(instance.port, "/").expect("restored instance answers");
            assert!(body.contains(&format!("{app}@")), "{body}");
            assert!(
                !before.contains(&instance.pid.unwrap()),
                "an old process was kept"
            );
        }
    }
    // The old daemon's processes are gone, not orphaned. (Reparented to a
    // PID 1 that may not reap, they can linger as zombies: dead all the same.)
    for pid in before {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next());
        assert!(
            matches!(state, None | Some("Z")),
            "orphan {pid} still runs: {stat}"
        );
    }
}

#[test]
fn a_stopped_daemon_stops_its_instances_and_brings_them_back() {
    let mut nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let web = alice.app_repo("web", &server_profile(""));
    let port = announced_ports(&alice.deploy(&web, "web"))[0].1;
    nap.stop();
    assert!(
        http_get(port, "/").is_none(),
        "an instance outlived the daemon"
    );
    nap.start_again();
    let instances = nap.ps("web");
    assert_eq!(instances.len(), 1);
    assert!(http_get(instances[0].port, "/").is_some());
}
