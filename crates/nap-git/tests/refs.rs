use nap_git::ReferenceError;

use crate::util::{Fixture, git};

/// A second commit on top of master in the bare repository, made by nap itself.
fn second_commit(fixture: &Fixture, repo: &nap_git::Repo) -> String {
    repo.commit_file(
        "master",
        "profile",
        b"command: true\n",
        "Second",
        ("Nap Test", "test@example.invalid"),
        "refs/heads/second",
    )
    .expect("commit_file");
    git(&fixture.bare, &["rev-parse", "refs/heads/second"])
        .trim()
        .to_owned()
}

#[test]
fn set_reference_creates_and_overwrites_and_delete_reference_deletes() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let first = fixture.rev_parse("master");
    let second = second_commit(&fixture, &repo);
    let bare = &fixture.bare;

    repo.set_reference("refs/nap/fetch", &first).unwrap();
    assert_eq!(git(bare, &["rev-parse", "refs/nap/fetch"]).trim(), first);
    // Overwriting, backwards and forwards, by id or by name.
    repo.set_reference("refs/heads/master", &second).unwrap();
    assert_eq!(
        git(bare, &["rev-parse", "refs/heads/master"]).trim(),
        second
    );
    repo.set_reference("refs/heads/master", "refs/nap/fetch")
        .unwrap();
    assert_eq!(git(bare, &["rev-parse", "refs/heads/master"]).trim(), first);
    assert_eq!(repo.resolve_commit("master").unwrap().id, first);

    repo.delete_reference("refs/nap/fetch").unwrap();
    let refs = git(bare, &["for-each-ref", "--format=%(refname)"]);
    assert!(!refs.contains("refs/nap/fetch"), "{refs}");
    // Deleting what is not there is fine.
    repo.delete_reference("refs/nap/fetch").unwrap();

    // Packed references are deleted too.
    git(bare, &["pack-refs", "--all"]);
    repo.delete_reference("refs/heads/second").unwrap();
    let refs = git(bare, &["for-each-ref", "--format=%(refname)"]);
    assert_eq!(refs.trim(), "refs/heads/master");
    git(bare, &["fsck", "--strict"]);
}

#[test]
fn reference_names_and_targets_are_checked() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let refs_before = git(&fixture.bare, &["show-ref"]);
    for name in [
        "master",
        "HEAD",
        "refs/heads/a..b",
        "refs/x.lock",
        "refs/",
        "",
    ] {
        let error = repo.set_reference(name, "master").unwrap_err();
        assert!(
            matches!(error, ReferenceError::InvalidName { .. }),
            "{name:?}: {error:?}"
        );
        let error = repo.delete_reference(name).unwrap_err();
        assert!(
            matches!(error, ReferenceError::InvalidName { .. }),
            "{name:?}: {error:?}"
        );
    }
    for commit in ["0123456789012345678901234567890123456789", "no-such-branch"] {
        let error = repo.set_reference("refs/heads/x", commit).unwrap_err();
        assert!(matches!(error, ReferenceError::Resolve(_)), "{error:?}");
    }
    // A tree is not a commit.
    let tree = fixture.rev_parse("master^{tree}");
    let error = repo.set_reference("refs/heads/x", &tree).unwrap_err();
    assert!(matches!(error, ReferenceError::Resolve(_)), "{error:?}");
    assert_eq!(git(&fixture.bare, &["show-ref"]), refs_before);
}

#[test]
fn set_head_makes_git_clone_check_out_that_branch() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let bare = &fixture.bare;
    // init_bare leaves HEAD at main; the app was pushed to master.
    assert_eq!(
        git(bare, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );

    repo.set_head("master").unwrap();
    assert_eq!(
        git(bare, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/master"
    );
    let clone = fixture.tmp.path().join("clone");
    git(
        fixture.tmp.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(
        git(&clone, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
        "master"
    );
    assert_eq!(
        git(&clone, &["rev-parse", "HEAD"]).trim(),
        fixture.rev_parse("master")
    );
    assert!(clone.join("profile").is_file());

    // Back to a branch that does not exist yet is allowed, as `git symbolic-ref` does.
    repo.set_head("main").unwrap();
    assert_eq!(
        git(bare, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    for branch in ["", "a..b", "x.lock", "-/"] {
        let error = repo.set_head(branch).unwrap_err();
        assert!(
            matches!(error, ReferenceError::InvalidName { .. }),
            "{branch:?}: {error:?}"
        );
    }
    assert_eq!(
        git(bare, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
}
