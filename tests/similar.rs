//! Similar apps (`clone`) and deploying from a git URL (`deploy --from`).

use crate::harness::{Nap, http_get, server_profile, text};

#[test]
fn clone_runs_the_same_code_with_a_new_command_and_keeps_the_original() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo(
        "web",
        &server_profile("scale: 2\n# keep this comment\nmemory: 128M\n"),
    );
    alice.deploy(&repo, "web");

    let output = alice.ssh(&[
        "clone",
        "web",
        "--command",
        "GREETING=cloned",
        "python3",
        "server.py",
    ]);
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("-----> web-1 v1 deployed"), "{stderr}");
    let clone = nap.ps("web-1");
    assert_eq!(clone.len(), 2, "the profile's scale came along");
    assert!(
        http_get(clone[0].port, "/").unwrap().contains(" cloned "),
        "new command runs"
    );
    let original = nap.ps("web");
    assert!(
        http_get(original[0].port, "/").unwrap().contains(" hello "),
        "the original still runs its command"
    );

    // The new app's repository holds a commit by nap on top of web's code,
    // with only the command changed; its owner can clone it.
    let copy = alice.home.join("web-1-copy");
    let output = alice.git(
        &alice.home,
        &[
            "clone",
            "-q",
            &alice.remote("web-1"),
            copy.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{:?}", text(&output));
    let profile = std::fs::read_to_string(copy.join("profile")).unwrap();
    assert!(
        profile.contains("GREETING=cloned python3 server.py"),
        "{profile}"
    );
    assert!(
        profile.contains("# keep this comment") && profile.contains("memory: 128M"),
        "{profile}"
    );
    let parent = text(&alice.git(&copy, &["rev-parse", "HEAD~1"])).0;
    assert_eq!(parent, text(&alice.git(&repo, &["rev-parse", "HEAD"])).0);

    // With a name; a taken name is refused.
    let output = alice.ssh(&["clone", "web", "worker", "--command", "sleep", "1000"]);
    assert!(output.status.success(), "{:?}", text(&output));
    assert!(text(&alice.ssh(&["apps"])).0.contains("worker"));
    let output = alice.ssh(&["clone", "web", "worker", "--command", "sleep", "1"]);
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("app worker already exists"),
        "{:?}",
        text(&output)
    );
}

#[test]
fn clone_numbering_counts_similar_apps_and_skips_taken_names() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    for expected in ["web-1", "web-2", "web-3"] {
        let output = alice.ssh(&["clone", "web", "--command", "python3", "server.py"]);
        assert!(
            text(&output).1.contains(&format!("{expected} v1 deployed")),
            "{:?}",
            text(&output)
        );
    }
    assert!(alice.ssh(&["destroy", "web-2", "--force"]).status.success());
    // web-1 and web-3 exist: two similar apps, so N = 3, taken, so web-4.
    let output = alice.ssh(&["clone", "web", "--command", "python3", "server.py"]);
    assert!(
        text(&output).1.contains("web-4 v1 deployed"),
        "{:?}",
        text(&output)
    );
}

#[test]
fn another_user_cannot_clone_and_failures_leave_no_app() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let bob = nap.user("bob", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile(""));
    alice.deploy(&repo, "web");
    let output = bob.ssh(&["clone", "web", "mine", "--command", "python3", "server.py"]);
    assert!(!output.status.success());
    assert!(text(&output).1.contains("app web belongs to another user"));
    let output = alice.ssh(&["clone", "web", "broken", "--command", "exit", "1"]);
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("broken was not created"),
        "{:?}",
        text(&output)
    );
    for gone in [
        "apps/broken",
        "repos/broken.git",
        "apps/mine",
        "repos/mine.git",
    ] {
        assert!(!nap.data.join(gone).exists(), "{gone} left behind");
    }
}

#[test]
fn deploy_from_a_local_repository_as_admin() {
    let nap = Nap::start();
    let admin = nap.user("root", "ed25519", true);
    let alice = nap.user("alice", "ed25519", false);
    let source = admin.app_repo("upstream", &server_profile(""));
    admin.git(&source, &["branch", "-q", "stable"]);
    let bare = nap.dir.path().join("upstream.git");
    assert!(
        admin
            .git(
                &admin.home,
                &[
                    "clone",
                    "-q",
                    "--bare",
                    source.to_str().unwrap(),
                    bare.to_str().unwrap()
                ]
            )
            .status
            .success()
    );
    let url = format!("file://{}", bare.display());

    let output = admin.ssh(&["deploy", "fromurl", "--from", &url, "--ref", "stable"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let instances = nap.ps("fromurl");
    assert!(
        http_get(instances[0].port, "/")
            .unwrap()
            .starts_with("fromurl@1 v1")
    );

    // Non-admins may not read the server's disk.
    for url in [url.as_str(), bare.to_str().unwrap()] {
        let output = alice.ssh(&["deploy", "sneaky", "--from", url]);
        assert!(!output.status.success());
        assert!(
            text(&output).1.contains("for admins only"),
            "{:?}",
            text(&output)
        );
    }
    let output = alice.ssh(&["deploy", "sneaky", "--from", "ext::sh -c id"]);
    assert!(!output.status.success());
    assert!(!nap.data.join("apps/sneaky").exists());
}

#[test]
fn deploy_from_url_failures_are_clear_and_leave_nothing() {
    let nap = Nap::start();
    let admin = nap.user("root", "ed25519", true);
    let nothing = nap.dir.path().join("nothing.git");
    let no_profile = admin.repo("plain", &[("README", "hi\n")]);
    let with_profile = admin.app_repo("good", &server_profile(""));
    for (app, url, reference, expected) in [
        (
            "a1",
            format!("file://{}", nothing.display()),
            "HEAD",
            "cannot fetch HEAD",
        ),
        (
            "a2",
            format!("file://{}", with_profile.display()),
            "no-such-branch",
            "cannot fetch no-such-branch",
        ),
        (
            "a3",
            format!("file://{}", no_profile.display()),
            "HEAD",
            "no profile at the root",
        ),
    ] {
        let output = admin.ssh(&["deploy", app, "--from", &url, "--ref", reference]);
        let stderr = text(&output).1;
        assert!(!output.status.success(), "{app}: {stderr}");
        assert!(stderr.contains(expected), "{app}: {stderr}");
        assert!(
            stderr.contains(&format!("{app} was not created")),
            "{stderr}"
        );
        assert!(
            !nap.data.join("apps").join(app).exists()
                && !nap.data.join("repos").join(format!("{app}.git")).exists()
        );
    }
}
