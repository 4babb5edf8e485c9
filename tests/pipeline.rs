//! The pipeline of a push (issue 14): checkout, build (with the per-app cache), release
//! phase, start, health path, switch; a rollback and a config change reuse the built tree.
//! Offline: the dependencies are shipped in the pushed repository (a wheel made here with
//! python3 itself, a Node `file:` package), and no registry is asked for anything.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Nap, SERVER_PY, User, http_get, text};

/// Sets `GREETING` from the installed dependency, then runs the fixture server.
const APP_PY: &str = "import os, runpy, tinydep\nos.environ['GREETING'] = tinydep.GREETING\nrunpy.run_path('server.py')\n";

/// pip reads its options from the requirements file: the vendored wheel and no index.
const REQUIREMENTS: &str = "--no-index\n--find-links vendor/\ntinydep\n";

const PYTHON_PROFILE: &str = "command: .venv/bin/python app.py\n";

/// A work tree of a Python app whose only dependency is the vendored wheel.
fn python_repo(user: &User, name: &str) -> PathBuf {
    let dir = user.repo(
        name,
        &[
            ("requirements.txt", REQUIREMENTS),
            ("app.py", APP_PY),
            ("server.py", SERVER_PY),
            ("profile", PYTHON_PROFILE),
        ],
    );
    let vendor = dir.join("vendor");
    std::fs::create_dir_all(&vendor).expect("vendor dir");
    let status = Command::new("/usr/bin/python3")
        .args(["-c", include_str!("fixtures/make_wheel.py")])
        .arg(&vendor)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "the wheel is made");
    user.commit(&dir, &[], "the vendored wheel");
    dir
}

/// The body an instance on `port` answers `/` with.
fn answer(port: u16) -> String {
    http_get(port, "/")
        .unwrap_or_else(|| panic!("nothing answers on {port}"))
        .trim()
        .to_owned()
}

/// The port of the app's first instance.
fn port_of(nap: &Nap, app: &str) -> u16 {
    nap.ps(app)[0].port
}

/// Pushes and expects a rejection whose output shows every one of `expected`.
fn rejected(user: &User, dir: &Path, app: &str, expected: &[&str]) {
    let output = user.push(dir, app);
    let (_, stderr) = text(&output);
    assert!(!output.status.success(), "the push went through:\n{stderr}");
    for expected in expected
        .iter()
        .chain(&["failed; the running release is unchanged"])
    {
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
}

/// The release trees on disk (`v1`, `v2`, ...), sorted.
fn trees(nap: &Nap, app: &str) -> Vec<String> {
    let mut trees: Vec<String> =
        std::fs::read_dir(nap.data.join("apps").join(app).join("releases"))
            .expect("releases")
            .filter_map(|entry| {
                let entry = entry.ok()?;
                entry
                    .file_type()
                    .ok()?
                    .is_dir()
                    .then(|| entry.file_name().to_string_lossy().into_owned())
            })
            .collect();
    trees.sort();
    trees
}

#[test]
fn a_python_app_is_built_cached_rejected_when_its_build_or_release_fails_and_rolled_back_unbuilt() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = python_repo(&alice, "web");

    let first = alice.deploy(&repo, "web");
    assert!(first.contains("-----> Building (python)"), "{first}");
    assert!(
        first.contains("       Successfully installed tinydep-1.0"),
        "{first}"
    );
    assert_eq!(answer(port_of(&nap, "web")), "web@1 v1 hello from tinydep");

    // Unchanged requirements: the dependencies come from the app's cache, pip does not run.
    alice.commit(
        &repo,
        &[("NOTES", "v2\n")],
        "a change that is not a dependency",
    );
    let second = alice.deploy(&repo, "web");
    assert!(
        second.contains("       using the cached dependencies (requirements.txt unchanged)"),
        "{second}"
    );
    assert!(!second.contains("Successfully installed"), "{second}");
    let port = port_of(&nap, "web");
    assert_eq!(answer(port), "web@1 v2 hello from tinydep");
    assert!(nap.data.join("cache/web").is_dir());

    // A failing build: its lines, the status, and v2 still answers; no tree is left.
    let broken = format!("{PYTHON_PROFILE}build: echo compiling; echo broken-build >&2; exit 3\n");
    alice.commit(&repo, &[("profile", &broken)], "a broken build");
    rejected(
        &alice,
        &repo,
        "web",
        &[
            "-----> Building (build command)",
            "       compiling",
            "failed with exit status 3",
            " !     last lines of the build:",
            "       broken-build",
        ],
    );
    assert_eq!(answer(port), "web@1 v2 hello from tinydep");
    assert_eq!(trees(&nap, "web"), ["v1", "v2"]);

    // A failing release phase: the same, and it ran after the build.
    let failing = format!("{PYTHON_PROFILE}release: echo migrating; exit 4\n");
    alice.commit(&repo, &[("profile", &failing)], "a failing migration");
    rejected(
        &alice,
        &repo,
        "web",
        &[
            "-----> Building (python)",
            "-----> Running the release command",
            "       migrating",
            " !     the release command of web failed with exit status 4",
        ],
    );
    assert_eq!(answer(port), "web@1 v2 hello from tinydep");
    assert_eq!(trees(&nap, "web"), ["v1", "v2"]);

    // A build that takes more than the profile's memory is killed by its cgroup.
    let hog = format!(
        "{PYTHON_PROFILE}memory: 64M\nbuild: python3 -c 'b = bytearray(512 << 20); print(len(b))'\n"
    );
    alice.commit(&repo, &[("profile", &hog)], "a build that eats memory");
    rejected(
        &alice,
        &repo,
        "web",
        &[
            "failed with exit status 137",
            " !     the build ran out of memory (the profile's memory: limit of web)",
        ],
    );
    assert_eq!(answer(port), "web@1 v2 hello from tinydep");
    assert_eq!(trees(&nap, "web"), ["v1", "v2"]);

    // A release phase that works writes to the app's storage, with the app's config.
    let output = alice.ssh(&["config:set", "web", "STAMP=from-config"]);
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("-----> Reusing the tree of v2 (not rebuilt)")
            && !stderr.contains("Building"),
        "a config change does not rebuild: {stderr}"
    );
    let migrating =
        format!("{PYTHON_PROFILE}release: echo $STAMP $NAP_RELEASE > $NAP_STORAGE/migrated\n");
    alice.commit(&repo, &[("profile", &migrating)], "a working migration");
    alice.deploy(&repo, "web");
    assert_eq!(
        std::fs::read_to_string(nap.data.join("storage/web/migrated")).expect("migrated"),
        "from-config v4\n"
    );

    // Rollback copies the built tree of v3: nothing is built, the dependency is there.
    let output = alice.ssh(&["rollback", "web", "v3"]);
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("-----> Reusing the tree of v3 (not rebuilt)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Building") && !stderr.contains("Running the release command"),
        "{stderr}"
    );
    assert_eq!(answer(port_of(&nap, "web")), "web@1 v5 hello from tinydep");
}

const NODE_PACKAGE: &str = r#"{ "name": "napp", "version": "1.0.0", "private": true,
  "dependencies": { "dep": "file:./dep" } }
"#;

/// Answers every GET with the dependency's greeting, `/healthz` with `HEALTH` (200).
const NODE_INDEX: &str = r#"const http = require("http");
const greeting = require("dep");
const health = Number(process.env.HEALTH || 200);
console.log(`node ${process.env.NAP_RELEASE} listening on ${process.env.PORT}`);
http.createServer((req, res) => {
  res.statusCode = req.url === "/healthz" ? health : 200;
  res.end(`${process.env.NAP_RELEASE} ${greeting}\n`);
}).listen(Number(process.env.PORT), "127.0.0.1");
"#;

/// Tries what a hostile build would: read nap's data and another app's files, write outside
/// its tree and cache. Each line says whether the kernel let it.
const HOSTILE_BUILD: &str = r#"D="$1"
try() { what="$1"; shift; if "$@" >/dev/null 2>&1; then echo "GOT $what"; else echo "denied $what"; fi; }
try users.json cat "$D/users.json"
try list-data ls "$D"
try victim-config cat "$D/apps/napp/config.json"
try victim-tree cat "$D/apps/napp/releases/v1/index.js"
try victim-storage ls "$D/storage/napp"
try victim-cache ls "$D/cache/napp"
try write-data touch "$D/evil-was-here"
try write-victim-cache touch "$D/cache/napp/evil"
try write-usr touch /usr/evil-was-here
try write-root touch /evil-was-here
try write-storage touch /storage/ok
try write-tree touch /app/ok
try write-cache touch /cache/ok
try home ls /root
"#;

#[test]
fn a_node_app_is_built_a_failing_health_path_rejects_and_a_hostile_build_reaches_nothing() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.repo(
        "napp",
        &[
            ("package.json", NODE_PACKAGE),
            (
                "dep/package.json",
                r#"{ "name": "dep", "version": "1.0.0", "main": "index.js" }"#,
            ),
            ("dep/index.js", "module.exports = 'hello from dep';\n"),
            ("index.js", NODE_INDEX),
            ("profile", "command: node index.js\nhealthcheck: /healthz\n"),
        ],
    );
    let output = alice.deploy(&repo, "napp");
    assert!(output.contains("-----> Building (node)"), "{output}");
    let port = port_of(&nap, "napp");
    assert_eq!(answer(port), "v1 hello from dep");

    // A health path answering 500: rejected with the status and the instance's lines.
    let output = alice.ssh(&["config:set", "napp", "SECRET=napps-own"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let port = port_of(&nap, "napp");
    alice.commit(
        &repo,
        &[(
            "profile",
            "command: HEALTH=500 node index.js\nhealthcheck: /healthz\nhealthcheck_timeout: 2\n",
        )],
        "sick",
    );
    rejected(
        &alice,
        &repo,
        "napp",
        &[
            "napp@1 failed: GET /healthz did not answer 2xx or 3xx within 2s (last seen: status 500)",
            " !     last lines of napp@1:",
            "node v3 listening on",
        ],
    );
    assert_eq!(answer(port), "v2 hello from dep", "the old release answers");
    assert_eq!(nap.ps("napp").len(), 1, "the new instance is stopped");

    // Another tenant's build command goes for nap's data and for napp's files.
    let mallory = nap.user("mallory", "ed25519", false);
    let data = nap.data.to_str().expect("utf-8");
    let evil = mallory.repo(
        "evil",
        &[
            ("hostile.sh", HOSTILE_BUILD),
            ("server.py", SERVER_PY),
            (
                "profile",
                &format!("command: python3 server.py\nbuild: sh hostile.sh {data}\n"),
            ),
        ],
    );
    // Everything it goes for is there on the host: a denial is the sandbox's doing.
    for target in [
        "users.json",
        "apps/napp/config.json",
        "apps/napp/releases/v1/index.js",
        "storage/napp",
        "cache/napp",
    ] {
        assert!(
            nap.data.join(target).exists(),
            "{target} exists on the host"
        );
    }
    let output = mallory.deploy(&evil, "evil");
    let mut got: Vec<&str> = output
        .lines()
        .filter_map(|line| line.split_once("       GOT ").map(|(_, what)| what.trim()))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        ["write-cache", "write-storage", "write-tree"],
        "only its own tree, cache and storage: {output}"
    );
    assert_eq!(output.matches("       denied ").count(), 11, "{output}");
    for untouched in ["evil-was-here", "cache/napp/evil"] {
        assert!(!nap.data.join(untouched).exists(), "{untouched}");
    }
    assert!(!Path::new("/usr/evil-was-here").exists());
    assert!(
        nap.data.join("cache/evil/ok").exists(),
        "the cache it may write"
    );
    assert_eq!(answer(port_of(&nap, "napp")), "v2 hello from dep");
}

#[test]
fn without_a_sandbox_build_and_release_are_refused_and_a_detected_runtime_runs_unbuilt() {
    let nap = Nap::start_with(&["--isolation", "none"]);
    let alice = nap.user("alice", "ed25519", false);
    let repo = python_repo(&alice, "web");
    // Refused before anything is made: no release, no tree.
    for key in ["build", "release"] {
        let profile = format!("command: python3 server.py\n{key}: echo hi\n");
        alice.commit(&repo, &[("profile", &profile)], key);
        let output = alice.push(&repo, "web");
        let (_, stderr) = text(&output);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                " !     profile: {key}: this server runs no build or release commands (isolation: none"
            )),
            "{stderr}"
        );
        assert!(!nap.data.join("apps/web/releases").exists(), "{stderr}");
    }
    // requirements.txt without build: deploys as pushed, and says it was not built.
    alice.commit(
        &repo,
        &[("profile", "command: python3 server.py\n")],
        "no build",
    );
    let output = alice.deploy(&repo, "web");
    assert!(
        output.contains(" !     warning: web looks like a python app, but it is not built"),
        "{output}"
    );
    assert!(!output.contains("-----> Building"), "{output}");
    assert!(answer(port_of(&nap, "web")).starts_with("web@1 v1 hello"));
}
