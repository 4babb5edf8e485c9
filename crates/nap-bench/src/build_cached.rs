//! The `build` figure: what a build whose dependencies all come from the app's cache adds to
//! a push + deploy. Two apps that differ only in a `requirements.txt` (one vendored wheel,
//! installed offline): each run commits a one-line change to both and pushes them one after
//! the other; the first push of each (a full pip install for the Python app) is not counted.

use std::path::Path;
use std::time::Duration;

use crate::figures::{Outcome, ms, nap_deploy};
use crate::report::{Measure, Unit, median};
use crate::repos::git;
use crate::servers::{NapServer, run_ok};

/// Both apps serve with `busybox httpd`, which listens within milliseconds: the figure
/// measures nap's build step, not the app's start.
const PROFILE: &str = "command: busybox httpd -f -p 127.0.0.1:$PORT\nscale: 1\n";

/// pip's options come from the requirements file: the vendored wheel, no index.
const REQUIREMENTS: &str = "--no-index\n--find-links vendor/\ntinydep\n";

/// The wheel the tests install too.
const MAKE_WHEEL: &str = include_str!("../../../tests/fixtures/make_wheel.py");

/// Makes a repository in `dir`: the profile and an index page, plus the Python dependency
/// when `python`.
fn make_repo(dir: &Path, python: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    run_ok(git(dir).args(["init", "-q", "-b", "master"]))?;
    std::fs::write(dir.join("profile"), PROFILE)?;
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>build</title>\n",
    )?;
    if python {
        std::fs::write(dir.join("requirements.txt"), REQUIREMENTS)?;
        let vendor = dir.join("vendor");
        std::fs::create_dir_all(&vendor)?;
        run_ok(
            std::process::Command::new("/usr/bin/python3")
                .args(["-c", MAKE_WHEEL])
                .arg(&vendor),
        )?;
    }
    run_ok(git(dir).args(["add", "-A"]))?;
    run_ok(git(dir).args(["commit", "-qm", "first"]))?;
    Ok(())
}

/// One more commit that changes no dependency.
fn touch(dir: &Path, run: usize) -> anyhow::Result<()> {
    std::fs::write(dir.join("run.txt"), format!("{run}\n"))?;
    run_ok(git(dir).args(["add", "-A"]))?;
    run_ok(git(dir).args(["commit", "-qm", &format!("run {run}")]))?;
    Ok(())
}

/// Runs the figure with `runs` measured runs, repositories under `root`.
pub(crate) fn figure(nap: &NapServer, runs: usize, root: &Path) -> Outcome {
    let (built, plain) = (root.join("built"), root.join("plain"));
    make_repo(&built, true)?;
    make_repo(&plain, false)?;
    let (built_app, plain_app) = ("build-cached", "build-none");
    let mut with_build = Measure::new(Unit::Seconds);
    let mut without = Measure::new(Unit::Seconds);
    let mut differences = Vec::new();
    for run in 0..=runs {
        if run > 0 {
            touch(&built, run)?;
            touch(&plain, run)?;
        }
        let (cached, _) = nap_deploy(nap, &built, built_app, 1)?;
        let (none, _) = nap_deploy(nap, &plain, plain_app, 1)?;
        eprintln!(
            "nap-bench: build run {run}: with a cached build {}, without a build {}{}",
            ms(cached.as_secs_f64()),
            ms(none.as_secs_f64()),
            if run == 0 {
                " (warm-up: the full build)"
            } else {
                ""
            }
        );
        if run > 0 {
            with_build.push_duration(cached);
            without.push_duration(none);
            differences.push(cached.as_secs_f64() - none.as_secs_f64());
        }
    }
    nap.destroy(built_app)?;
    nap.destroy(plain_app)?;
    let difference = median(&differences);
    let notes = vec![
        format!(
            "a cached build adds {} to push + deploy (median of the per-run differences; goal: at most {})",
            ms(difference),
            ms(Duration::from_millis(100).as_secs_f64())
        ),
        "both apps: `busybox httpd`, scale 1; the Python app's requirements.txt names one vendored wheel; \
         one warm-up push of each first (the full build), not counted"
            .to_owned(),
    ];
    Ok((with_build, Some(without), notes))
}
