use nap_git::ResolveError;

use crate::util::{Fixture, git};

#[test]
fn resolve_by_branch_ref_and_full_id() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let id = fixture.rev_parse("master");
    let expected = nap_git::CommitInfo {
        id: id.clone(),
        short: id[..7].to_owned(),
        summary: "First version of the app".to_owned(),
        author: "Nap Test <test@example.invalid>".to_owned(),
    };
    for rev in ["master", "refs/heads/master", id.as_str()] {
        assert_eq!(repo.resolve_commit(rev).unwrap(), expected, "{rev}");
    }
}

#[test]
fn annotated_tags_are_followed_to_their_commit() {
    let fixture = Fixture::app();
    git(&fixture.work, &["tag", "-a", "-m", "release", "v1"]);
    git(
        &fixture.work,
        &["push", "-q", fixture.bare.to_str().unwrap(), "v1"],
    );
    let repo = fixture.open();
    assert_eq!(
        repo.resolve_commit("v1").unwrap().id,
        fixture.rev_parse("master")
    );
}

#[test]
fn bad_revs_are_errors_not_panics() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let tree = fixture.rev_parse("master^{tree}");
    let check = |rev: &str, ok: fn(&ResolveError) -> bool| {
        let error = repo.resolve_commit(rev).unwrap_err();
        assert!(ok(&error), "{rev}: {error:?}");
        assert!(error.to_string().contains(rev), "{error}");
    };
    check("0000000000000000000000000000000000000000", |e| {
        matches!(e, ResolveError::NotFound { .. })
    });
    check("deadbeef", |e| matches!(e, ResolveError::NotFound { .. }));
    check("no-such-branch", |e| {
        matches!(e, ResolveError::NotFound { .. })
    });
    check("a..b", |e| matches!(e, ResolveError::InvalidRev { .. }));
    check("", |e| matches!(e, ResolveError::InvalidRev { .. }));
    check(&tree, |e| matches!(e, ResolveError::NotACommit { .. }));
}
