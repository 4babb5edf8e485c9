//! The SSH front door: keys, authentication, what may be executed, app
//! names and ownership. Real `ssh-keygen`, `ssh` and `git` against a real daemon.

use crate::harness::{Nap, text};

#[test]
fn keys_of_all_three_types_authenticate() {
    let nap = Nap::start();
    for (name, kind) in [("ed", "ed25519"), ("ec", "ecdsa"), ("rs", "rsa")] {
        let user = nap.user(name, kind, false);
        let output = user.ssh(&["whoami"]);
        assert!(output.status.success(), "{kind}: {:?}", text(&output));
        assert_eq!(text(&output).0.trim(), name);
    }
    let list = text(&nap.cli(&["keys", "list"])).0;
    for kind in ["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"] {
        assert!(list.contains(kind), "{kind} missing from\n{list}");
    }
    assert!(list.contains("SHA256:"), "{list}");
}

#[test]
fn weak_and_malformed_keys_are_refused_with_a_reason() {
    let nap = Nap::start();
    let dir = nap.dir.path();
    let output = crate::harness::run(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-t", "rsa", "-b", "1024", "-f"])
            .arg(dir.join("weak")),
    );
    assert!(output.status.success());
    let weak = std::fs::read_to_string(dir.join("weak.pub")).unwrap();
    let output = nap.cli_with_input(&["keys", "add", "weak", "-"], &weak);
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("1024 bits is too short"),
        "{:?}",
        text(&output)
    );
    let output = nap.cli_with_input(&["keys", "add", "junk"], "not a key\n");
    assert!(
        text(&output).1.contains("not an OpenSSH public key"),
        "{:?}",
        text(&output)
    );
    let output = nap.cli_with_input(&["keys", "add", "Bad/Name"], &weak);
    assert!(
        text(&output).1.contains("invalid user name"),
        "{:?}",
        text(&output)
    );
    assert!(!nap.data.join("users.json").exists(), "nothing was written");
}

#[test]
fn one_key_belongs_to_one_user_and_re_adding_is_harmless() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let again = nap.cli_with_input(&["keys", "add", "alice"], &alice.public_key());
    assert!(again.status.success(), "{:?}", text(&again));
    assert!(text(&again).0.contains("nothing changed"));
    let stolen = nap.cli_with_input(&["keys", "add", "mallory"], &alice.public_key());
    assert!(!stolen.status.success());
    assert!(
        text(&stolen).1.contains("already belongs to user alice"),
        "{:?}",
        text(&stolen)
    );
    assert_eq!(text(&alice.ssh(&["whoami"])).0.trim(), "alice");
}

#[test]
fn unknown_keys_passwords_and_wrong_login_names_are_denied() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let stranger = nap.stranger("eve");
    let output = stranger.ssh(&["whoami"]);
    assert_eq!(output.status.code(), Some(255));
    assert!(
        text(&output).1.contains("Permission denied"),
        "{:?}",
        text(&output)
    );

    // The server offers public keys only: a client that wants a password is told so.
    let output = crate::harness::run(
        std::process::Command::new("ssh")
            .args(alice.ssh_options("accept-new"))
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
            ])
            .args(["iwanna@127.0.0.1", "whoami"]),
    );
    assert_eq!(output.status.code(), Some(255));
    assert!(
        text(&output).1.contains("Permission denied (publickey)"),
        "{:?}",
        text(&output)
    );

    let output = alice.ssh_as("root", &["whoami"]);
    assert_eq!(output.status.code(), Some(255), "{:?}", text(&output));
    assert!(text(&output).1.contains("Permission denied"));
}

#[test]
fn nothing_reaches_a_shell() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", true);
    let marker = nap.dir.path().join("pwned");
    let touch = format!("touch {}", marker.display());
    for command in [
        vec!["sh", "-c", "id"],
        vec!["apps;", "id"],
        vec!["apps", ";", "id"],
        vec!["apps", "&&", "id"],
        vec!["$(id)"],
        vec![touch.as_str()],
        vec!["git-upload-pack", "'x'; id"],
    ] {
        let output = alice.ssh(&command);
        let (stdout, stderr) = text(&output);
        assert!(!output.status.success(), "{command:?} succeeded");
        assert!(!stdout.contains("uid="), "{command:?} ran id: {stdout}");
        assert!(
            stderr.contains(" !     "),
            "{command:?}: one clear line: {stderr}"
        );
    }
    assert!(!marker.exists(), "a command reached a shell");

    let output = crate::harness::run(
        std::process::Command::new("ssh")
            .arg("-tt")
            .args(alice.ssh_options("accept-new"))
            .arg("iwanna@127.0.0.1")
            .stdin(std::process::Stdio::null()),
    );
    assert!(!output.status.success());
    let (stdout, stderr) = text(&output);
    assert!(
        format!("{stdout}{stderr}").contains("no shell here"),
        "{stdout} {stderr}"
    );

    let output = alice.ssh(&["-s", "sftp"]);
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("subsystem 'sftp' is not served"),
        "{:?}",
        text(&output)
    );
}

#[test]
fn bad_app_names_are_refused_before_anything_is_created() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", true);
    let repo = alice.repo(
        "work",
        &[(
            "profile",
            "command: exec python3 -m http.server --bind 127.0.0.1 $PORT\n",
        )],
    );
    let before = nap.tree();
    let seventy = "a".repeat(70);
    for name in [
        "../x",
        "MyApp",
        "my_app",
        "-x",
        seventy.as_str(),
        "a/b",
        "x%2f..%2fy",
    ] {
        let output = alice.push(&repo, name);
        assert!(!output.status.success(), "{name} was accepted");
        let stderr = text(&output).1;
        assert!(
            stderr.contains("invalid app name")
                || stderr.contains("does not appear to be a git repository"),
            "{name}: {stderr}"
        );
        let output = alice.ssh(&["git-receive-pack", &format!("'{name}'")]);
        assert!(!output.status.success());
        assert!(
            text(&output).1.contains("invalid app name"),
            "{name}: {:?}",
            text(&output)
        );
    }
    assert_eq!(nap.tree(), before, "a refused name created something");
}

#[test]
fn push_then_clone_back() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.repo(
        "work",
        &[
            (
                "profile",
                "command: exec python3 -m http.server --bind 127.0.0.1 $PORT\n",
            ),
            ("src/a.txt", "hello\n"),
        ],
    );
    let output = alice.push(&repo, "myapp");
    assert!(output.status.success(), "{:?}", text(&output));
    let head = text(&alice.git(&repo, &["rev-parse", "HEAD"])).0;
    for url in [alice.remote("myapp"), alice.remote("myapp.git")] {
        let target = alice.home.join(format!("back-{}", url.len()));
        let output = alice.git(
            &alice.home,
            &["clone", "-q", &url, target.to_str().unwrap()],
        );
        assert!(output.status.success(), "{:?}", text(&output));
        assert_eq!(
            std::fs::read_to_string(target.join("src/a.txt")).unwrap(),
            "hello\n"
        );
        assert_eq!(text(&alice.git(&target, &["rev-parse", "HEAD"])).0, head);
        let branch = text(&alice.git(&target, &["rev-parse", "--abbrev-ref", "HEAD"])).0;
        assert_eq!(
            branch.trim(),
            "master",
            "the pushed branch is the default one"
        );
    }
    let apps = text(&alice.ssh(&["apps"])).0;
    assert!(apps.contains("myapp") && apps.contains("alice"), "{apps}");
    let output = alice.git(&alice.home, &["clone", "-q", &alice.remote("nosuch"), "x"]);
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("app nosuch does not exist"),
        "{:?}",
        text(&output)
    );
}

#[test]
fn another_user_cannot_push_fetch_or_list_the_app() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let bob = nap.user("bob", "ed25519", false);
    let admin = nap.user("root", "ed25519", true);
    let repo = alice.repo(
        "work",
        &[(
            "profile",
            "command: exec python3 -m http.server --bind 127.0.0.1 $PORT\n",
        )],
    );
    assert!(alice.push(&repo, "secret").status.success());

    let theirs = bob.repo("theirs", &[("profile", "command: evil\n")]);
    let output = bob.push(&theirs, "secret");
    assert!(!output.status.success());
    assert!(
        text(&output)
            .1
            .contains("app secret belongs to another user"),
        "{:?}",
        text(&output)
    );
    let output = bob.git(&bob.home, &["clone", "-q", &bob.remote("secret"), "stolen"]);
    assert!(!output.status.success());
    assert!(
        text(&output)
            .1
            .contains("app secret belongs to another user")
    );
    assert!(!bob.home.join("stolen/profile").exists());
    assert!(!text(&bob.ssh(&["apps"])).0.contains("secret"));

    // The owner's code is untouched, and admins see and fetch everything.
    assert!(text(&admin.ssh(&["apps"])).0.contains("secret"));
    let output = admin.git(
        &admin.home,
        &["clone", "-q", &admin.remote("secret"), "copy"],
    );
    assert!(output.status.success(), "{:?}", text(&output));
    assert_eq!(
        std::fs::read_to_string(admin.home.join("copy/profile")).unwrap(),
        "command: exec python3 -m http.server --bind 127.0.0.1 $PORT\n"
    );
}

#[test]
fn only_admins_manage_keys_and_new_keys_work_at_once() {
    let nap = Nap::start();
    let admin = nap.user("root", "ed25519", true);
    let alice = nap.user("alice", "ed25519", false);
    let bob = nap.stranger("bob");
    assert_eq!(bob.ssh(&["whoami"]).status.code(), Some(255));

    let output = alice.ssh_with_input(&["keys:add", "bob"], &bob.public_key());
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("only admins may add keys"),
        "{:?}",
        text(&output)
    );
    assert!(!text(&alice.ssh(&["keys"])).0.contains("alice"));

    let output = admin.ssh_with_input(&["keys:add", "bob"], &bob.public_key());
    assert!(output.status.success(), "{:?}", text(&output));
    assert_eq!(
        text(&bob.ssh(&["whoami"])).0.trim(),
        "bob",
        "no restart needed"
    );

    let output = admin.ssh(&["keys:remove", "bob"]);
    assert!(output.status.success(), "{:?}", text(&output));
    assert_eq!(
        bob.ssh(&["whoami"]).status.code(),
        Some(255),
        "removed at once"
    );
}

#[test]
fn host_key_is_the_same_after_a_restart() {
    let mut nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    assert!(alice.ssh(&["whoami"]).status.success());
    nap.restart();
    let output = crate::harness::run(
        std::process::Command::new("ssh")
            .args(alice.ssh_options("yes"))
            .args(["iwanna@127.0.0.1", "whoami"]),
    );
    assert!(output.status.success(), "{:?}", text(&output));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(nap.data.join("host_key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn unknown_commands_and_bad_usage_say_so() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let output = alice.ssh(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("unknown command 'frobnicate'"));
    let output = alice.ssh(&["apps", "extra"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("usage: apps"));
    let output = alice.ssh(&["help"]);
    assert!(output.status.success());
    assert!(text(&output).0.contains("keys:add"));
}
