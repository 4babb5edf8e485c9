//! A Python app: a virtualenv, `pip install` from a vendored wheel, and the cache.

use std::path::Path;
use std::process::Command;

use nap_build::Detected;

use crate::util::{Fixture, shows};

/// Makes `tinydep-1.0-py3-none-any.whl` in `dir` (the script is shared with the end-to-end
/// tests of the deploy).
fn make_wheel(dir: &Path) {
    std::fs::create_dir_all(dir).expect("vendor dir");
    let script = include_str!("../../../tests/fixtures/make_wheel.py");
    let status = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(dir)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "the wheel is made");
}

/// A Python app whose requirements name the vendored package.
fn python_release(fx: &Fixture, requirements: &str) -> std::path::PathBuf {
    let release = fx.release(&[
        ("requirements.txt", requirements),
        ("app.py", "import tinydep\nprint(tinydep.GREETING)\n"),
    ]);
    make_wheel(&release.join("vendor"));
    release
}

/// pip must not look for an index: the test's config vars point it at the vendored wheel,
/// and its log (appended to on every run) shows whether it ran.
const PIP_ENV: [(&str, &str); 3] = [
    ("PIP_NO_INDEX", "1"),
    ("PIP_FIND_LINKS", "/app/vendor"),
    ("PIP_LOG", "/storage/pip.log"),
];

fn pip_log_len(fx: &Fixture) -> u64 {
    std::fs::metadata(fx.storage.join("pip.log")).map_or(0, |m| m.len())
}

#[tokio::test]
async fn a_python_app_gets_its_dependency_and_an_unchanged_one_comes_from_the_cache() {
    let fx = Fixture::new().await;
    let first = python_release(&fx, "tinydep\n");
    let (result, lines) = fx.build(&fx.request(&first, &PIP_ENV)).await;
    let built = result.unwrap_or_else(|error| panic!("{error}: {lines:#?}"));
    assert_eq!(built.detected, Detected::Python);
    assert!(!built.reused_cache, "{lines:#?}");
    assert_eq!(lines[0], "-----> Building (python)", "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("       Successfully installed tinydep-1.0")),
        "{lines:#?}"
    );
    let (code, out) = fx.run_in(&first, ".venv/bin/python app.py").await;
    assert_eq!(
        (code, out.last().map(String::as_str)),
        (0, Some("       hello from tinydep"))
    );
    let pip_ran = pip_log_len(&fx);
    assert!(pip_ran > 0, "pip logged its run");

    // The same requirements in a new tree: the cached virtualenv, and pip does not run.
    let second = python_release(&fx, "tinydep\n");
    let (result, lines) = fx.build(&fx.request(&second, &PIP_ENV)).await;
    let built = result.unwrap_or_else(|error| panic!("{error}: {lines:#?}"));
    assert!(built.reused_cache, "{lines:#?}");
    assert_eq!(
        lines,
        [
            "-----> Building (python)",
            "       using the cached dependencies (requirements.txt unchanged)"
        ]
    );
    assert_eq!(pip_log_len(&fx), pip_ran, "pip did not run");
    let (code, out) = fx.run_in(&second, ".venv/bin/python app.py").await;
    assert_eq!(
        (code, out.last().map(String::as_str)),
        (0, Some("       hello from tinydep"))
    );
    // The copy is the new release's own: the first release's tree is not shared with it.
    let inode = |release: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(release.join(".venv/pyvenv.cfg"))
            .expect("pyvenv.cfg")
            .ino()
    };
    assert_ne!(inode(&first), inode(&second));

    // Changed requirements: pip runs again.
    let third = python_release(&fx, "tinydep==1.0\n");
    let (result, lines) = fx.build(&fx.request(&third, &PIP_ENV)).await;
    let built = result.unwrap_or_else(|error| panic!("{error}: {lines:#?}"));
    assert!(!built.reused_cache, "{lines:#?}");
    assert!(!shows(
        &lines,
        "using the cached dependencies (requirements.txt unchanged)"
    ));
    assert!(
        pip_log_len(&fx) > pip_ran,
        "pip ran for the changed requirements"
    );
}

#[tokio::test]
async fn a_missing_package_fails_the_build_with_pips_last_lines() {
    let fx = Fixture::new().await;
    let release = python_release(&fx, "no-such-package-anywhere\n");
    let (result, lines) = fx.build(&fx.request(&release, &PIP_ENV)).await;
    let Err(nap_build::BuildError::Failed {
        code, last_lines, ..
    }) = result
    else {
        panic!("the build must fail: {result:?} {lines:#?}");
    };
    assert_ne!(code, 0);
    assert!(
        last_lines
            .iter()
            .any(|l| l.contains("no-such-package-anywhere")),
        "{last_lines:#?}"
    );
    // A failed build caches nothing.
    assert!(!fx.cache.join("deps/python.key").exists());
}
