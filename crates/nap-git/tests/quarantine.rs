//! A real `git push` runs a real `pre-receive` hook, which is this test binary run again
//! with only [`pre_receive_probe`] selected. The probe reads the pushed commit while its
//! objects exist only in git's quarantine directory.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Fixture, find_named, git, git_env, path_str, run};

/// The directory the probe writes its findings to; only set when git runs the hook.
const PROBE_OUT: &str = "NAP_GIT_PROBE_OUT";

/// The hook. Run normally it does nothing; run by git (see [`install_probe_hook`]) it
/// reads `old new ref` lines from stdin and, for each, records into `$NAP_GIT_PROBE_OUT`:
/// what the repository without the quarantine says about the new commit, the commit
/// as read through the quarantine, its `profile`, and a checkout of it.
#[test]
fn pre_receive_probe() {
    let Some(out) = std::env::var_os(PROBE_OUT).map(PathBuf::from) else {
        return;
    };
    let repo_dir = std::env::current_dir().unwrap();
    let quarantine = nap_git::Quarantine::from_env();
    std::fs::write(out.join("quarantine"), format!("{quarantine:?}")).unwrap();
    let quarantined = nap_git::open(&repo_dir, &quarantine).unwrap();
    let plain = nap_git::open(&repo_dir, &nap_git::Quarantine::default()).unwrap();

    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let [_old, new, _ref] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("unexpected hook input {line:?}");
        };
        let without = match plain.resolve_commit(new) {
            Ok(info) => format!("found {}", info.id),
            Err(error) => format!("error: {error}"),
        };
        std::fs::write(out.join("without_quarantine"), without).unwrap();

        let info = quarantined.resolve_commit(new).unwrap();
        std::fs::write(out.join("commit"), &info.id).unwrap();
        let profile = quarantined
            .read_file(new, "profile", 1 << 16)
            .unwrap()
            .unwrap();
        std::fs::write(out.join("profile"), profile).unwrap();
        let stats = quarantined.checkout(new, &out.join("checkout")).unwrap();
        std::fs::write(out.join("files"), stats.files.to_string()).unwrap();
    }
    if let Some(dir) = &quarantine.object_dir {
        let alternates = find_named(&repo_dir.join(dir), "alternates");
        assert!(
            alternates.is_empty(),
            "{alternates:?} written into the quarantine"
        );
    }
}

/// Install a `pre-receive` hook into `bare` that runs [`pre_receive_probe`].
fn install_probe_hook(bare: &Path) {
    let exe = std::env::current_exe().expect("test binary path");
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nexec '{}' --exact quarantine::pre_receive_probe --nocapture --test-threads=1 -q\n",
            exe.display()
        ),
    )
    .expect("write hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod hook");
}

/// `git push` from `work` to `bare`, with the probe writing into a fresh `out`.
fn push_with_probe(fixture: &Fixture, out: &Path) {
    std::fs::create_dir(out).expect("probe output dir");
    let mut push = Command::new("git");
    push.arg("-C")
        .arg(&fixture.work)
        .args(["push", "-q", path_str(&fixture.bare), "master"])
        .env(PROBE_OUT, out);
    run(git_env(&mut push));
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn pre_receive_hook_reads_and_checks_out_the_quarantined_push() {
    let fixture = Fixture::app_work_only();
    nap_git::init_bare(&fixture.bare).unwrap();
    install_probe_hook(&fixture.bare);

    // First push: every object is new, few enough that git stores them loose.
    let out = fixture.tmp.path().join("probe1");
    push_with_probe(&fixture, &out);
    let first = fixture.rev_parse("master");
    let quarantine = read(out.join("quarantine"));
    assert!(quarantine.contains("incoming"), "{quarantine}");
    assert!(quarantine.contains("alternates: [\""), "{quarantine}");
    let without = read(out.join("without_quarantine"));
    assert!(
        without.starts_with("error: ") && without.contains("not found"),
        "{without}"
    );
    assert_eq!(read(out.join("commit")), first);
    assert_eq!(
        read(out.join("profile")),
        "command: python3 -m http.server $PORT\nscale: 2\n"
    );
    assert_eq!(read(out.join("files")), "6");
    assert_eq!(read(out.join("checkout/src/main.rs")), "pub fn main() {}\n");

    // Second push: a new profile on top; the new objects arrive as a pack (unpackLimit 1)
    // and the unchanged ones are only in the repository itself.
    git(&fixture.bare, &["config", "receive.unpackLimit", "1"]);
    std::fs::write(
        fixture.work.join("profile"),
        "command: ./bin/run\nscale: 3\n",
    )
    .unwrap();
    git(&fixture.work, &["commit", "-q", "-am", "Scale to three"]);
    let out = fixture.tmp.path().join("probe2");
    push_with_probe(&fixture, &out);
    let second = fixture.rev_parse("master");
    assert_ne!(first, second);
    assert_eq!(read(out.join("commit")), second);
    assert_eq!(read(out.join("profile")), "command: ./bin/run\nscale: 3\n");
    assert_eq!(
        read(out.join("checkout/profile")),
        "command: ./bin/run\nscale: 3\n"
    );
    assert_eq!(
        read(out.join("checkout/src/lib/deep/nested/file.txt")),
        "nested content\n"
    );

    // The hook accepted both pushes, and nothing anywhere was told about alternates.
    assert_eq!(git(&fixture.bare, &["rev-parse", "master"]).trim(), second);
    let alternates = find_named(&fixture.bare, "alternates");
    assert!(alternates.is_empty(), "{alternates:?}");
    git(&fixture.bare, &["fsck", "--strict"]);
}

#[test]
fn open_fails_clearly_on_a_missing_quarantine_directory() {
    let fixture = Fixture::app();
    let quarantine = nap_git::Quarantine {
        object_dir: Some("objects/tmp_objdir-incoming-gone".into()),
        alternates: vec![],
    };
    let error = nap_git::open(&fixture.bare, &quarantine).unwrap_err();
    assert!(
        matches!(error, nap_git::OpenError::ObjectDir { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("tmp_objdir-incoming-gone"),
        "{error}"
    );
}

#[test]
fn relative_quarantine_paths_are_relative_to_the_repository() {
    // Like the hook sees it, but with relative paths: move the pushed objects into
    // a quarantine-like directory and point at it relative to the repository.
    let fixture = Fixture::app();
    fixture.quarantine_loose_objects();
    let id = fixture.rev_parse("master");
    let plain = fixture.open();
    assert!(plain.resolve_commit(&id).is_err());

    let quarantine = nap_git::Quarantine::from_env_values(
        Some("objects/incoming-test".as_ref()),
        Some("objects:./objects".as_ref()),
    );
    let repo = nap_git::open(&fixture.bare, &quarantine).unwrap();
    assert_eq!(repo.object_directories().len(), 2, "{repo:?}");
    assert_eq!(repo.resolve_commit(&id).unwrap().id, id);
    let dest = fixture.tmp.path().join("release");
    assert_eq!(repo.checkout(&id, &dest).unwrap().files, 6);
}
