use nap_git::ReadFileError;

use crate::util::Fixture;

const MAX: u64 = 64 * 1024;

#[test]
fn read_profile_and_nested_files() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    assert_eq!(
        repo.read_file("master", "profile", MAX).unwrap().unwrap(),
        b"command: python3 -m http.server $PORT\nscale: 2\n"
    );
    assert_eq!(
        repo.read_file("master", "src/lib/deep/nested/file.txt", MAX)
            .unwrap()
            .unwrap(),
        b"nested content\n"
    );
    assert_eq!(
        repo.read_file("master", "empty", MAX).unwrap().unwrap(),
        b""
    );
}

#[test]
fn missing_paths_are_none() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    for path in [
        "Procfile",
        "src/nope.rs",
        "profile/below-a-file",
        "no/such/dir/file",
    ] {
        assert_eq!(repo.read_file("master", path, MAX).unwrap(), None, "{path}");
    }
}

#[test]
fn not_a_file_invalid_path_and_too_large_are_errors() {
    let fixture = Fixture::app();
    let repo = fixture.open();
    let kind = |path: &str| match repo.read_file("master", path, MAX).unwrap_err() {
        ReadFileError::NotAFile { kind, .. } => kind,
        other => panic!("{path}: {other:?}"),
    };
    assert_eq!(kind("src"), "directory");
    assert_eq!(kind("src/lib/deep"), "directory");
    assert_eq!(kind("link"), "symlink");
    assert_eq!(kind("vendor/sub"), "submodule");

    for path in [
        "",
        "/profile",
        "../profile",
        "src/../profile",
        "./profile",
        "src//main.rs",
    ] {
        let error = repo.read_file("master", path, MAX).unwrap_err();
        assert!(
            matches!(error, ReadFileError::InvalidPath { .. }),
            "{path:?}: {error:?}"
        );
    }

    let error = repo.read_file("master", "profile", 10).unwrap_err();
    assert!(
        matches!(
            error,
            ReadFileError::TooLarge {
                size: 47,
                max_bytes: 10,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("profile"), "{error}");

    let error = repo.read_file("nope", "profile", MAX).unwrap_err();
    assert!(matches!(error, ReadFileError::Resolve(_)), "{error:?}");
}
