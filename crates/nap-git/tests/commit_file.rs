use nap_git::CommitFileError;

use crate::util::{Fixture, git};

const AUTHOR: (&str, &str) = ("Ann Operator", "ann@example.invalid");

/// The paths that differ between two commits.
fn changed(fixture: &Fixture, from: &str, to: &str) -> Vec<String> {
    git(&fixture.bare, &["diff", "--name-only", from, to])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn commit_file_replaces_the_profile_and_nothing_else() {
    let fixture = Fixture::app();
    let parent = fixture.rev_parse("master");
    let repo = fixture.open();

    let id = repo
        .commit_file(
            &parent,
            "profile",
            b"command: ./bin/run --worker\n",
            "Similar app of app",
            AUTHOR,
            "refs/heads/master",
        )
        .unwrap();

    assert_eq!(id.len(), 40);
    let bare = &fixture.bare;
    assert_eq!(
        git(bare, &["show", &format!("{id}:profile")]),
        "command: ./bin/run --worker\n"
    );
    assert_eq!(changed(&fixture, &parent, &id), ["profile"]);
    let stat = git(bare, &["diff", "--stat", &parent, &id]);
    assert!(stat.contains("1 file changed"), "{stat}");
    // Every other entry, modes included, is the parent's.
    let tree = |rev: &str| git(bare, &["ls-tree", "-r", rev]);
    let without_profile = |listing: String| {
        listing
            .lines()
            .filter(|line| !line.ends_with("\tprofile"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(without_profile(tree(&id)), without_profile(tree(&parent)));
    assert!(tree(&id).contains("100644 blob"), "{}", tree(&id));
    assert!(
        tree(&id)
            .lines()
            .any(|line| line.starts_with("100644 blob") && line.ends_with("\tprofile"))
    );

    // The commit: one parent, the given identity as author and committer, the message.
    assert_eq!(git(bare, &["rev-parse", &format!("{id}^@")]).trim(), parent);
    assert_eq!(
        git(bare, &["log", "-1", "--format=%an <%ae>|%cn <%ce>|%B", &id]),
        "Ann Operator <ann@example.invalid>|Ann Operator <ann@example.invalid>|Similar app of app\n\n"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let committed: u64 = git(bare, &["log", "-1", "--format=%ct", &id])
        .trim()
        .parse()
        .unwrap();
    assert!(now.abs_diff(committed) < 60, "{committed} vs now {now}");

    // The reference moved, and the repository is sound.
    assert_eq!(git(bare, &["rev-parse", "refs/heads/master"]).trim(), id);
    git(bare, &["fsck", "--strict", "--no-dangling"]);
    assert_eq!(repo.resolve_commit("master").unwrap().id, id);
}

#[test]
fn commit_file_keeps_the_executable_bit_and_adds_missing_files() {
    let fixture = Fixture::app();
    let parent = fixture.rev_parse("master");
    let repo = fixture.open();
    let bare = &fixture.bare;
    let entry = |rev: &str, path: &str| {
        git(bare, &["ls-tree", rev, path])
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };

    // A nested executable stays executable.
    let id = repo
        .commit_file(
            &parent,
            "bin/run",
            b"#!/bin/sh\necho changed\n",
            "Change run",
            AUTHOR,
            "refs/heads/exec",
        )
        .unwrap();
    assert_eq!(entry(&id, "bin/run"), "100755");
    assert_eq!(changed(&fixture, &parent, &id), ["bin/run"]);
    assert_eq!(
        git(bare, &["show", &format!("{id}:bin/run")]),
        "#!/bin/sh\necho changed\n"
    );
    assert_eq!(git(bare, &["rev-parse", "refs/heads/exec"]).trim(), id);
    // The parent's own branch did not move.
    assert_eq!(git(bare, &["rev-parse", "master"]).trim(), parent);

    // A missing file is added, at the root and in new directories.
    let added = repo
        .commit_file(
            "master",
            "Procfile",
            b"web: run\n",
            "Add",
            AUTHOR,
            "refs/heads/added",
        )
        .unwrap();
    assert_eq!(entry(&added, "Procfile"), "100644");
    assert_eq!(changed(&fixture, &parent, &added), ["Procfile"]);
    let nested = repo
        .commit_file(
            &added,
            "conf/d/app.yml",
            b"x: 1\n",
            "Nested",
            AUTHOR,
            "refs/heads/added",
        )
        .unwrap();
    assert_eq!(entry(&nested, "conf/d/app.yml"), "100644");
    assert_eq!(changed(&fixture, &added, &nested), ["conf/d/app.yml"]);
    assert_eq!(
        git(bare, &["rev-parse", &format!("{nested}^")]).trim(),
        added
    );
    // A file into an existing deep directory.
    let deep = repo
        .commit_file(
            &parent,
            "src/lib/deep/other.txt",
            b"other\n",
            "Deep",
            AUTHOR,
            "refs/heads/deep",
        )
        .unwrap();
    assert_eq!(
        changed(&fixture, &parent, &deep),
        ["src/lib/deep/other.txt"]
    );
    git(bare, &["fsck", "--strict", "--no-dangling"]);

    // The same contents again: a new commit with the same tree.
    let same = repo
        .commit_file(
            &parent,
            "profile",
            b"command: python3 -m http.server $PORT\nscale: 2\n",
            "No change",
            AUTHOR,
            "refs/heads/same",
        )
        .unwrap();
    assert_eq!(
        git(bare, &["rev-parse", &format!("{same}^{{tree}}")]),
        git(bare, &["rev-parse", &format!("{parent}^{{tree}}")])
    );
}

#[test]
fn commit_file_refuses_what_it_cannot_write() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let refs_before = git(&fixture.bare, &["show-ref"]);
    let commit = |path: &str, reference: &str, author: (&str, &str)| {
        repo.commit_file("master", path, b"x\n", "m", author, reference)
            .unwrap_err()
    };
    let master = "refs/heads/master";

    for (path, kind) in [
        ("src", "directory"),
        ("link", "symlink"),
        ("vendor/sub", "submodule"),
    ] {
        let error = commit(path, master, AUTHOR);
        assert!(
            matches!(&error, CommitFileError::NotAFile { kind: k, .. } if *k == kind),
            "{path}: {error:?}"
        );
        assert!(error.to_string().contains(path), "{error}");
    }
    let error = commit("profile/x", master, AUTHOR);
    assert!(
        matches!(&error, CommitFileError::NotADirectory { prefix, .. } if prefix == "profile"),
        "{error:?}"
    );
    let error = commit("bin/run/x", master, AUTHOR);
    assert!(
        matches!(&error, CommitFileError::NotADirectory { prefix, .. } if prefix == "bin/run"),
        "{error:?}"
    );
    for path in [
        "",
        "/profile",
        "a//b",
        "../x",
        "./x",
        "a/..",
        ".git/config",
        "x/.GIT/y",
    ] {
        let error = commit(path, master, AUTHOR);
        assert!(
            matches!(error, CommitFileError::InvalidPath { .. }),
            "{path:?}: {error:?}"
        );
    }
    for reference in ["master", "HEAD", "refs/heads/a..b", "refs/heads/x.lock", ""] {
        let error = commit("profile", reference, AUTHOR);
        assert!(
            matches!(error, CommitFileError::InvalidReference { .. }),
            "{reference:?}: {error:?}"
        );
    }
    for author in [("A <b>", "a@b"), ("A", "a>@b"), ("A\nB", "a@b"), ("A", "")] {
        let error = commit("profile", master, author);
        assert!(
            matches!(error, CommitFileError::InvalidIdentity { .. }),
            "{author:?}: {error:?}"
        );
    }
    let error = repo
        .commit_file("no-such-branch", "profile", b"", "m", AUTHOR, master)
        .unwrap_err();
    assert!(matches!(error, CommitFileError::Resolve(_)), "{error:?}");
    assert!(error.to_string().contains("no-such-branch"), "{error}");

    assert_eq!(git(&fixture.bare, &["show-ref"]), refs_before);
}

#[test]
fn writes_are_refused_through_a_quarantine() {
    let fixture = Fixture::app();
    let incoming = fixture.bare.join("objects/incoming-test");
    std::fs::create_dir(&incoming).unwrap();
    let quarantine = nap_git::Quarantine {
        object_dir: Some(incoming),
        alternates: vec![],
    };
    let repo = nap_git::open(&fixture.bare, &quarantine).unwrap();
    let error = repo
        .commit_file("master", "profile", b"", "m", AUTHOR, "refs/heads/x")
        .unwrap_err();
    assert!(
        matches!(error, CommitFileError::Quarantined { .. }),
        "{error:?}"
    );
    let error = repo.set_reference("refs/heads/x", "master").unwrap_err();
    assert!(
        matches!(error, nap_git::ReferenceError::Quarantined { .. }),
        "{error:?}"
    );
    let error = repo.set_head("master").unwrap_err();
    assert!(
        matches!(error, nap_git::ReferenceError::Quarantined { .. }),
        "{error:?}"
    );
}

/// What nap's "similar app" does: a new repository with the other app's objects, a
/// commit with a new profile on its `master`, `HEAD` on `master`; `git clone` gets it.
#[test]
fn a_similar_app_end_to_end() {
    let fixture = Fixture::app();
    let release = fixture.rev_parse("master");
    let similar = fixture.tmp.path().join("app-1.git");
    nap_git::init_bare(&similar).unwrap();
    nap_git::copy_objects(&fixture.bare, &similar).unwrap();
    let repo = nap_git::open(&similar, &nap_git::Quarantine::default()).unwrap();
    let id = repo
        .commit_file(
            &release,
            "profile",
            b"command: ./bin/run worker\n",
            "Similar app of app",
            AUTHOR,
            "refs/heads/master",
        )
        .unwrap();
    repo.set_head("master").unwrap();
    git(&similar, &["fsck", "--strict", "--no-dangling"]);

    let clone = fixture.tmp.path().join("clone");
    git(
        fixture.tmp.path(),
        &[
            "clone",
            "-q",
            similar.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(
        git(&clone, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
        "master"
    );
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]).trim(), id);
    assert_eq!(
        std::fs::read_to_string(clone.join("profile")).unwrap(),
        "command: ./bin/run worker\n"
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("src/main.rs")).unwrap(),
        "pub fn main() {}\n"
    );
}
