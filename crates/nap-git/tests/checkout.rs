use std::os::unix::fs::PermissionsExt;

use nap_git::{CheckoutError, CheckoutOptions};

use crate::util::{Fixture, names_in};

#[test]
fn checkout_writes_files_modes_and_symlinks_and_skips_submodules() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let releases = fixture.tmp.path().join("apps/app/releases");
    let dest = releases.join("v1");

    let stats = repo.checkout("master", &dest).unwrap();

    assert_eq!(stats.files, 6, "{stats:?}");
    assert_eq!(stats.skipped_submodules, 1, "{stats:?}");
    let read = |path: &str| std::fs::read(dest.join(path)).unwrap();
    assert_eq!(
        read("profile"),
        b"command: python3 -m http.server $PORT\nscale: 2\n"
    );
    assert_eq!(read("src/lib/deep/nested/file.txt"), b"nested content\n");
    assert_eq!(read("src/main.rs"), b"pub fn main() {}\n");
    assert_eq!(read("empty"), b"");
    let mode = |path: &str| {
        std::fs::metadata(dest.join(path))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_ne!(mode("bin/run") & 0o111, 0, "bin/run is executable");
    assert_eq!(
        mode("src/main.rs") & 0o111,
        0,
        "src/main.rs is not executable"
    );
    assert_eq!(
        std::fs::read_link(dest.join("link")).unwrap(),
        std::path::Path::new("src/lib/deep/nested/file.txt")
    );
    assert_eq!(read("link"), b"nested content\n");
    assert!(!dest.join("vendor/sub").is_file());
    let total: u64 = [
        47,
        15,
        17,
        21,
        0,
        "src/lib/deep/nested/file.txt".len() as u64,
    ]
    .iter()
    .sum();
    assert_eq!(stats.bytes, total);

    // Only the destination is left in its parent: no staging directory.
    assert_eq!(names_in(&releases), ["v1"]);
}

#[test]
fn checkout_refuses_an_existing_destination_and_leaves_it_alone() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let dest = fixture.tmp.path().join("release");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("keep"), "mine").unwrap();

    let error = repo.checkout("master", &dest).unwrap_err();
    assert!(
        matches!(error, CheckoutError::DestinationExists { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("release"), "{error}");
    assert_eq!(names_in(&dest), ["keep"]);

    // A dangling symlink counts as existing too.
    let link = fixture.tmp.path().join("link-release");
    std::os::unix::fs::symlink("/nonexistent", &link).unwrap();
    let error = repo.checkout("master", &link).unwrap_err();
    assert!(
        matches!(error, CheckoutError::DestinationExists { .. }),
        "{error:?}"
    );
}

#[test]
fn checkout_of_a_bad_commit_is_an_error_and_writes_nothing() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let parent = fixture.tmp.path().join("releases");
    std::fs::create_dir(&parent).unwrap();
    for rev in [
        "0123456789012345678901234567890123456789",
        "not-a-branch",
        "a..b",
    ] {
        let error = repo.checkout(rev, &parent.join("v1")).unwrap_err();
        assert!(
            matches!(error, CheckoutError::Resolve(_)),
            "{rev}: {error:?}"
        );
    }
    assert!(names_in(&parent).is_empty());
}

#[test]
fn checkout_limits_refuse_big_trees_before_writing() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let parent = fixture.tmp.path().join("releases");
    let dest = parent.join("v1");

    let options = CheckoutOptions {
        max_files: Some(5),
        ..Default::default()
    };
    let error = repo.checkout_with("master", &dest, &options).unwrap_err();
    assert!(
        matches!(
            error,
            CheckoutError::TooManyFiles {
                files: 6,
                max_files: 5,
                ..
            }
        ),
        "{error:?}"
    );

    let options = CheckoutOptions {
        max_bytes: Some(100),
        ..Default::default()
    };
    let error = repo.checkout_with("master", &dest, &options).unwrap_err();
    assert!(
        matches!(error, CheckoutError::TooLarge { bytes, max_bytes: 100, .. } if bytes > 100),
        "{error:?}"
    );
    assert!(!dest.exists());

    let options = CheckoutOptions {
        max_files: Some(6),
        max_bytes: Some(200),
        thread_limit: Some(1),
        interrupt: None,
    };
    let stats = repo.checkout_with("master", &dest, &options).unwrap();
    assert_eq!(stats.files, 6);
    assert_eq!(names_in(&parent), ["v1"]);
}

#[test]
fn an_interrupted_checkout_fails_and_leaves_nothing() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let parent = fixture.tmp.path().join("releases");
    let dest = parent.join("v1");
    let interrupt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let options = CheckoutOptions {
        interrupt: Some(interrupt.clone()),
        ..Default::default()
    };
    let error = repo.checkout_with("master", &dest, &options).unwrap_err();
    assert!(
        matches!(error, CheckoutError::Interrupted { .. }),
        "{error:?}"
    );
    assert!(names_in(&parent).is_empty(), "{:?}", names_in(&parent));

    interrupt.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        repo.checkout_with("master", &dest, &options).unwrap().files,
        6
    );
}

#[test]
fn a_failed_checkout_removes_its_staging_directory() {
    // A tree whose object is missing: the checkout fails half-way.
    let fixture = Fixture::app();
    let objects = fixture.bare.join("objects");
    let blob = fixture.rev_parse("master:src/main.rs");
    let loose = objects.join(&blob[..2]).join(&blob[2..]);
    assert!(loose.is_file(), "small pushes are stored as loose objects");
    std::fs::remove_file(&loose).unwrap();

    let repo = fixture.open();
    let parent = fixture.tmp.path().join("releases");
    std::fs::create_dir(&parent).unwrap();
    let error = repo.checkout("master", &parent.join("v1")).unwrap_err();
    assert!(
        matches!(
            error,
            CheckoutError::Write { .. } | CheckoutError::Tree { .. }
        ),
        "{error:?}"
    );
    assert!(names_in(&parent).is_empty(), "{:?}", names_in(&parent));
}

/// Trees a hostile pusher can craft (`git mktree` takes anything, and receive-pack does
/// not fsck by default): nothing may be written outside the destination.
#[test]
fn hostile_trees_cannot_write_outside_the_destination() {
    let fixture = Fixture::app_work_only();
    let outside = fixture.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let work = &fixture.work;
    let hash = |content: &str| {
        let mut command = std::process::Command::new("git");
        command
            .arg("-C")
            .arg(work)
            .args(["hash-object", "-w", "--stdin"]);
        crate::util::git_stdin(&mut command, content)
    };
    let mktree = |entries: &str| {
        let mut command = std::process::Command::new("git");
        command.arg("-C").arg(work).arg("mktree");
        crate::util::git_stdin(&mut command, entries)
    };
    let commit = |tree: &str| {
        crate::util::git(work, &["commit-tree", "-m", "hostile", tree])
            .trim()
            .to_owned()
    };

    let blob = hash("pwned\n");
    let link = hash(outside.to_str().unwrap());
    let sub = mktree(&format!("100644 blob {blob}\tpwn\n"));
    let trees = [
        // A symlink `a` to a directory outside, and a file `a/pwn` to write through it.
        (
            "symlink then file",
            mktree(&format!("120000 blob {link}\ta\n040000 tree {sub}\ta\n")),
        ),
        ("dot-dot", mktree(&format!("100644 blob {blob}\t..\n"))),
        ("dot-dot dir", mktree(&format!("040000 tree {sub}\t..\n"))),
        (".git dir", mktree(&format!("040000 tree {sub}\t.git\n"))),
        (".GIT dir", mktree(&format!("040000 tree {sub}\t.GIT\n"))),
    ];
    let repo = nap_git::open(work, &nap_git::Quarantine::default()).unwrap();
    let parent = fixture.tmp.path().join("releases");
    std::fs::create_dir(&parent).unwrap();
    for (name, tree) in trees {
        let id = commit(&tree);
        let result = repo.checkout(&id, &parent.join("v1"));
        assert!(result.is_err(), "{name}: {result:?}");
        assert!(
            names_in(&outside).is_empty(),
            "{name}: wrote {:?}",
            names_in(&outside)
        );
        assert!(
            names_in(&parent).is_empty(),
            "{name}: left {:?}",
            names_in(&parent)
        );
    }
}
