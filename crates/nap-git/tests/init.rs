use crate::util::{Fixture, git};

#[test]
fn init_bare_makes_a_repository_git_push_accepts_and_fsck_likes() {
    let fixture = Fixture::app();
    let pushed = git(&fixture.bare, &["rev-parse", "refs/heads/master"]);
    assert_eq!(pushed.trim(), fixture.rev_parse("master"));
    assert_eq!(
        git(&fixture.bare, &["rev-parse", "--is-bare-repository"]).trim(),
        "true"
    );
    git(&fixture.bare, &["fsck", "--strict", "--no-dangling"]);
}

#[test]
fn init_bare_refuses_an_existing_path() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("app.git");
    nap_git::init_bare(&path).unwrap();
    let error = nap_git::init_bare(&path).unwrap_err();
    assert!(
        matches!(error, nap_git::InitError::AlreadyExists { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("app.git"), "{error}");

    // Even an empty directory: gix would initialise into it, nap does not.
    let empty = tmp.path().join("empty.git");
    std::fs::create_dir(&empty).unwrap();
    let error = nap_git::init_bare(&empty).unwrap_err();
    assert!(
        matches!(error, nap_git::InitError::AlreadyExists { .. }),
        "{error:?}"
    );
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn init_bare_creates_missing_parents() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("repos/deeper/app.git");
    nap_git::init_bare(&path).unwrap();
    git(&path, &["fsck"]);
}
