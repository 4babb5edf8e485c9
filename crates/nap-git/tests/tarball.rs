use std::path::Path;
use std::process::Command;

use nap_git::TarballError;

use crate::util::{Fixture, git, git_env, run};

/// `tar -tzvf` of `archive` in UTC: (mode string, path, symlink target) per entry.
fn listing(archive: &Path) -> Vec<(String, String, Option<String>)> {
    let output = run(Command::new("tar")
        .arg("-tzvf")
        .arg(archive)
        .env("TZ", "UTC")
        .env("LC_ALL", "C"));
    String::from_utf8(output.stdout)
        .expect("tar output is UTF-8")
        .lines()
        .map(|line| {
            // -rw-r--r-- 0/0  47 2024-01-01 00:00 profile
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields[3], "2024-01-01", "mtime is the commit's: {line}");
            assert_eq!(fields[4], "00:00", "mtime is the commit's: {line}");
            assert_eq!(fields[1], "0/0", "owner: {line}");
            let (path, target) = match fields[5..].join(" ").split_once(" -> ") {
                Some((path, target)) => (path.to_owned(), Some(target.to_owned())),
                None => (fields[5..].join(" "), None),
            };
            (fields[0].to_owned(), path, target)
        })
        .collect()
}

/// Remove the empty directories under `dir` (git archive writes one per submodule).
fn remove_empty_dirs(dir: &Path) {
    run(Command::new("find")
        .arg(dir)
        .args(["-mindepth", "1", "-type", "d", "-empty", "-delete"]));
}

fn write_tarball(repo: &nap_git::Repo, commit: &str, path: &Path) -> nap_git::TarballStats {
    let file = std::fs::File::create(path).expect("create archive file");
    repo.write_tarball(commit, std::io::BufWriter::new(file))
        .expect("write_tarball")
}

#[test]
fn write_tarball_matches_git_archive() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let tmp = fixture.tmp.path();
    let archive = tmp.join("release.tar.gz");

    let stats = write_tarball(&repo, "master", &archive);

    assert_eq!(stats.files, 6, "{stats:?}");
    assert_eq!(stats.skipped_submodules, 1, "{stats:?}");
    assert_eq!(
        stats.compressed_bytes,
        std::fs::metadata(&archive).unwrap().len()
    );

    // The same paths as git's tree, less the submodule, no prefix, modes and links kept.
    let mut entries = listing(&archive);
    entries.sort_by(|a, b| a.1.cmp(&b.1));
    let mut expected: Vec<String> = git(&fixture.bare, &["ls-tree", "-r", "master"])
        .lines()
        .filter(|line| !line.starts_with("160000"))
        .map(|line| line.split_once('\t').unwrap().1.to_owned())
        .collect();
    expected.sort();
    let paths: Vec<&String> = entries.iter().map(|entry| &entry.1).collect();
    assert_eq!(paths, expected.iter().collect::<Vec<_>>());
    let mode = |path: &str| {
        let entry = entries.iter().find(|entry| entry.1 == path).unwrap();
        (entry.0.as_str(), entry.2.as_deref())
    };
    assert_eq!(mode("bin/run"), ("-rwxr-xr-x", None));
    assert_eq!(mode("profile"), ("-rw-r--r--", None));
    assert_eq!(mode("empty"), ("-rw-r--r--", None));
    // A symlink's own permission bits mean nothing on Linux (gix-archive writes 0644).
    let (link_mode, link_target) = mode("link");
    assert!(link_mode.starts_with('l'), "{link_mode}");
    assert_eq!(link_target, Some("src/lib/deep/nested/file.txt"));

    // Extracted, it is what `git archive` gives (whose extra empty submodule directory
    // is the only difference).
    let ours = tmp.join("ours");
    let theirs = tmp.join("theirs");
    std::fs::create_dir(&ours).unwrap();
    std::fs::create_dir(&theirs).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&ours));
    let git_archive = tmp.join("git.tar");
    run(git_env(
        Command::new("git")
            .arg("-C")
            .arg(&fixture.bare)
            .args(["archive", "--format=tar", "-o"])
            .arg(&git_archive)
            .arg("master"),
    ));
    run(Command::new("tar")
        .arg("-xf")
        .arg(&git_archive)
        .arg("-C")
        .arg(&theirs));
    remove_empty_dirs(&theirs);
    run(Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&ours)
        .arg(&theirs));
    let executable = |dir: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.join("bin/run"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111
    };
    assert_ne!(executable(&ours), 0);
    assert_eq!(
        std::fs::read_link(ours.join("link")).unwrap(),
        Path::new("src/lib/deep/nested/file.txt")
    );

    // Deterministic: the same commit gives the same bytes.
    let again = tmp.join("again.tar.gz");
    write_tarball(&repo, &fixture.rev_parse("master"), &again);
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

#[test]
fn write_tarball_honours_gitattributes_like_git_archive() {
    let fixture = Fixture::app_work_only();
    let work = &fixture.work;
    std::fs::write(
        work.join(".gitattributes"),
        "secret.txt export-ignore\n*.crlf text eol=crlf\n",
    )
    .unwrap();
    std::fs::write(work.join("secret.txt"), "not for release\n").unwrap();
    std::fs::write(work.join("dos.crlf"), "one\ntwo\n").unwrap();
    git(work, &["add", "."]);
    git(work, &["commit", "-q", "-m", "Attributes"]);
    fixture.push_to_new_bare();
    let repo = fixture.open();
    let archive = fixture.tmp.path().join("release.tar.gz");

    write_tarball(&repo, "master", &archive);

    let ours = fixture.tmp.path().join("ours");
    std::fs::create_dir(&ours).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&ours));
    assert!(!ours.join("secret.txt").exists());
    assert_eq!(
        std::fs::read(ours.join("dos.crlf")).unwrap(),
        b"one\r\ntwo\r\n"
    );
    assert!(ours.join(".gitattributes").is_file());
}

#[test]
fn write_tarball_of_a_bad_commit_is_an_error_and_writes_nothing() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let tree = fixture.rev_parse("master^{tree}");
    for rev in [
        "0123456789012345678901234567890123456789",
        "not-a-branch",
        "a..b",
        tree.as_str(),
    ] {
        let mut out = Vec::new();
        let error = repo.write_tarball(rev, &mut out).unwrap_err();
        assert!(
            matches!(error, TarballError::Resolve(_)),
            "{rev}: {error:?}"
        );
        assert!(out.is_empty(), "{rev}: wrote {} bytes", out.len());
    }
}

#[test]
fn write_tarball_fails_on_a_missing_object_and_a_hostile_tree() {
    // A missing blob.
    let fixture = Fixture::app();
    let blob = fixture.rev_parse("master:src/main.rs");
    std::fs::remove_file(
        fixture
            .bare
            .join("objects")
            .join(&blob[..2])
            .join(&blob[2..]),
    )
    .unwrap();
    let error = fixture
        .open()
        .write_tarball("master", std::io::sink())
        .unwrap_err();
    assert!(
        matches!(
            error,
            TarballError::Write { .. } | TarballError::Tree { .. }
        ),
        "{error:?}"
    );

    // A tree with a `..` entry.
    let fixture = Fixture::app_work_only();
    let work = &fixture.work;
    let mut hash = Command::new("git");
    hash.arg("-C")
        .arg(work)
        .args(["hash-object", "-w", "--stdin"]);
    let blob = crate::util::git_stdin(&mut hash, "pwned\n");
    let mut mktree = Command::new("git");
    mktree.arg("-C").arg(work).arg("mktree");
    let tree = crate::util::git_stdin(&mut mktree, &format!("100644 blob {blob}\t..\n"));
    let commit = git(work, &["commit-tree", "-m", "hostile", &tree])
        .trim()
        .to_owned();
    let repo = nap_git::open(work, &nap_git::Quarantine::default()).unwrap();
    let mut out = Vec::new();
    let error = repo.write_tarball(&commit, &mut out).unwrap_err();
    assert!(
        matches!(
            error,
            TarballError::Tree { .. } | TarballError::Write { .. }
        ),
        "{error:?}"
    );
}

#[test]
fn write_tarball_reads_through_a_quarantine() {
    // The pushed objects moved into a quarantine-like directory, as during pre-receive.
    let fixture = Fixture::app();
    let incoming = fixture.quarantine_loose_objects();
    let objects = fixture.bare.join("objects");
    let id = fixture.rev_parse("master");
    let quarantine = nap_git::Quarantine {
        object_dir: Some(incoming),
        alternates: vec![objects],
    };
    let repo = nap_git::open(&fixture.bare, &quarantine).unwrap();
    assert!(fixture.open().write_tarball(&id, std::io::sink()).is_err());

    let archive = fixture.tmp.path().join("release.tar.gz");
    let stats = write_tarball(&repo, &id, &archive);
    assert_eq!(stats.files, 6);
    let entries = listing(&archive);
    assert!(
        entries.iter().any(|entry| entry.1 == "profile"),
        "{entries:?}"
    );
}
