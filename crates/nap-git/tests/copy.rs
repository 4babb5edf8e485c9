use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nap_git::CopyError;

use crate::util::{Fixture, git};

/// Every file under `dir` with its size, mode and contents: to prove nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, u32, Vec<u8>)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                stack.push(path);
            } else {
                let contents = std::fs::read(&path).expect("read file");
                files.insert(path, (meta.len(), meta.mode(), contents));
            }
        }
    }
    files
}

/// The app fixture with its first commit packed (with bitmap and reverse index) and a
/// second commit pushed as loose objects, plus things that must not be copied.
fn packed_and_loose() -> (Fixture, String, String) {
    let fixture = Fixture::app();
    let first = fixture.rev_parse("master");
    git(
        &fixture.bare,
        &[
            "-c",
            "pack.writeReverseIndex=true",
            "repack",
            "-a",
            "-d",
            "-b",
            "-q",
        ],
    );
    std::fs::write(fixture.work.join("profile"), "command: ./bin/run\n").expect("write profile");
    std::fs::write(fixture.work.join("added.txt"), "new file\n").expect("write added.txt");
    git(&fixture.work, &["add", "added.txt"]);
    git(&fixture.work, &["commit", "-q", "-am", "Second"]);
    git(
        &fixture.work,
        &[
            "push",
            "-q",
            fixture.bare.to_str().expect("UTF-8 temp path"),
            "master",
        ],
    );
    let second = fixture.rev_parse("master");

    let objects = fixture.bare.join("objects");
    let packs = crate::util::names_in(&objects.join("pack"));
    for ext in ["pack", "idx", "bitmap", "rev"] {
        assert!(
            packs.iter().any(|name| name.ends_with(&format!(".{ext}"))),
            "no .{ext} in {packs:?}"
        );
    }
    let blob = fixture.rev_parse("master:added.txt");
    assert!(objects.join(&blob[..2]).join(&blob[2..]).is_file());
    // A leftover quarantine, a keep file, and an empty alternates file: none copied.
    let quarantine = objects.join("tmp_objdir-incoming-abc123/12");
    std::fs::create_dir_all(&quarantine).expect("create quarantine dir");
    std::fs::write(
        quarantine.join("3456789012345678901234567890123456789a"),
        "junk",
    )
    .expect("write quarantine object");
    let idx = packs
        .iter()
        .find(|name| name.ends_with(".idx"))
        .expect("a pack index");
    std::fs::write(
        objects.join("pack").join(idx.replace(".idx", ".keep")),
        "kept",
    )
    .expect("write .keep");
    std::fs::create_dir_all(objects.join("info")).expect("create objects/info");
    std::fs::write(objects.join("info/alternates"), "\n").expect("write alternates");
    (fixture, first, second)
}

#[test]
fn copy_objects_makes_a_self_contained_repository_and_leaves_the_source_alone() {
    let (fixture, first, second) = packed_and_loose();
    let before = snapshot(&fixture.bare);
    let to = fixture.tmp.path().join("similar.git");
    nap_git::init_bare(&to).unwrap();

    let stats = nap_git::copy_objects(&fixture.bare, &to).unwrap();

    assert_eq!(stats.packs, 1, "{stats:?}");
    // The second push: a commit, the root tree, two blobs.
    assert_eq!(stats.loose_objects, 4, "{stats:?}");
    // .pack, .idx, .bitmap, .rev and the loose objects, all on one file system.
    assert_eq!(stats.linked, 4 + 4, "{stats:?}");
    assert_eq!(stats.copied, 0, "{stats:?}");
    assert_eq!(stats.already_present, 0, "{stats:?}");
    assert!(stats.bytes > 0);
    assert_eq!(snapshot(&fixture.bare), before, "the source changed");

    let objects = to.join("objects");
    let packs = crate::util::names_in(&objects.join("pack"));
    assert!(
        !packs.iter().any(|name| name.ends_with(".keep")),
        "{packs:?}"
    );
    assert!(!objects.join("tmp_objdir-incoming-abc123").exists());
    assert!(!objects.join("12").exists());
    assert!(!objects.join("info/alternates").exists());
    let pack = packs.iter().find(|name| name.ends_with(".pack")).unwrap();
    assert_eq!(
        std::fs::metadata(objects.join("pack").join(pack))
            .unwrap()
            .nlink(),
        2,
        "hard-linked"
    );

    // Everything is there: both commits with their trees, and git finds nothing wrong.
    let log = git(&to, &["log", "--format=%H %s", &second]);
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            format!("{second} Second"),
            format!("{first} First version of the app")
        ]
    );
    git(&to, &["fsck", "--strict", "--no-dangling", "--full"]);
    let repo = nap_git::open(&to, &nap_git::Quarantine::default()).unwrap();
    repo.set_reference("refs/heads/master", &second).unwrap();
    git(&to, &["fsck", "--strict", "--no-dangling", "--full"]);
    let listing = git(&to, &["ls-tree", "-r", "--name-only", &second]);
    assert!(listing.lines().any(|line| line == "added.txt"), "{listing}");
    assert!(
        repo.read_file(&first, "profile", 1 << 16)
            .unwrap()
            .unwrap()
            .starts_with(b"command: python3")
    );

    // Again: everything is already there.
    let again = nap_git::copy_objects(&fixture.bare, &to).unwrap();
    assert_eq!(again.linked + again.copied, 0, "{again:?}");
    assert_eq!(again.already_present, stats.linked, "{again:?}");
}

#[test]
fn copy_objects_refuses_a_source_with_alternates() {
    let fixture = Fixture::app();
    let alternates = fixture.bare.join("objects/info/alternates");
    std::fs::create_dir_all(alternates.parent().unwrap()).unwrap();
    std::fs::write(&alternates, "/elsewhere/objects\n").unwrap();
    let to = fixture.tmp.path().join("to.git");
    nap_git::init_bare(&to).unwrap();

    let error = nap_git::copy_objects(&fixture.bare, &to).unwrap_err();
    assert!(matches!(error, CopyError::Alternates { .. }), "{error:?}");
    assert!(error.to_string().contains("app.git"), "{error}");
    assert!(crate::util::names_in(&to.join("objects/pack")).is_empty());
}

#[test]
fn copy_objects_needs_both_repositories() {
    let fixture = Fixture::app();
    let missing = fixture.tmp.path().join("missing.git");
    let error = nap_git::copy_objects(&fixture.bare, &missing).unwrap_err();
    assert!(matches!(error, CopyError::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("missing.git"), "{error}");

    let error = nap_git::copy_objects(&missing, &fixture.bare).unwrap_err();
    assert!(matches!(error, CopyError::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("missing.git"), "{error}");
}

#[test]
fn copy_objects_copies_where_it_cannot_link() {
    // Needs a second file system; /dev/shm is one on Linux machines with tmpfs.
    let (fixture, _first, second) = packed_and_loose();
    let shm = Path::new("/dev/shm");
    let device = |path: &Path| std::fs::metadata(path).map(|meta| meta.dev()).ok();
    if device(shm).is_none() || device(shm) == device(fixture.tmp.path()) {
        eprintln!("skipped: /dev/shm is not another file system here");
        return;
    }
    let other = tempfile::tempdir_in(shm).unwrap();
    let to = other.path().join("copy.git");
    nap_git::init_bare(&to).unwrap();

    let stats = nap_git::copy_objects(&fixture.bare, &to).unwrap();
    assert_eq!(stats.linked, 0, "{stats:?}");
    assert_eq!(stats.copied, 4 + 4, "{stats:?}");
    git(&to, &["log", "--oneline", &second]);
    git(&to, &["fsck", "--strict", "--full"]);
    // No temporary files left behind.
    let leftovers: Vec<_> = snapshot(&to.join("objects"))
        .into_keys()
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("tmp_")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let names = crate::util::names_in(&to.join("objects/pack"));
    assert!(
        names.iter().all(|name| name.starts_with("pack-")),
        "{names:?}"
    );
}
