//! Tenant isolation, tried as a hostile tenant would (issue 11): a non-admin pushes an app
//! that reaches for nap's data, another user's app and the daemon, over real ssh and git,
//! with the real bwrap. Each probe runs inside the app and reports what the kernel said.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::harness::{Nap, http_get, server_profile, text};
use crate::serve::serve_expecting_refusal_with;

/// The hostile app's source.
const ATTACKER_PY: &str = include_str!("fixtures/attacker.py");

/// A work tree of `user` with the hostile app.
fn attacker_repo(user: &crate::harness::User) -> std::path::PathBuf {
    user.repo(
        "probe",
        &[
            ("attacker.py", ATTACKER_PY),
            ("profile", "command: python3 attacker.py\n"),
        ],
    )
}

/// `GET path` on the app's instance, parsed.
fn ask(port: u16, path: &str) -> Value {
    let body = http_get(port, path).unwrap_or_else(|| panic!("the app answers {path}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// What the hostile app found, with nap's data at `data` and another app `victim`.
fn attack(port: u16, data: &Path, victim: &str, daemon_pid: u32, victim_pid: u32) -> Value {
    let data = data.to_str().expect("utf-8 path");
    assert!(
        data.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b)),
        "{data} needs no escaping in a query"
    );
    ask(
        port,
        &format!(
            "/attack?data={data}&victim={victim}&daemon_pid={daemon_pid}&victim_pid={victim_pid}"
        ),
    )
}

/// An app's record, as nap stored it.
fn record(nap: &Nap, app: &str) -> Value {
    let path = nap.data.join("apps").join(app).join("app.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("app record")).expect("json")
}

/// Whether the tests run as root (then every app has a uid of its own).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

#[test]
fn a_tenant_reaches_nothing_of_nap_or_of_another_app_and_keeps_its_storage() {
    let mut nap = Nap::start();
    let bob = nap.user("bob", "ed25519", false);
    let mallory = nap.user("mallory", "ed25519", false);

    // Bob's app, with a config value nobody else may read; it arrives in his sandbox.
    let vault = bob.app_repo("vault", &server_profile(""));
    bob.deploy(&vault, "vault");
    let output = bob.ssh(&["config:set", "vault", "CODE=bobs-secret"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let victim = &nap.ps("vault")[0];
    assert_eq!(
        http_get(victim.port, "/").expect("vault answers").trim(),
        "vault@1 v2 hello bobs-secret",
        "config vars reach the sandboxed app"
    );
    let victim_pid = victim.pid.expect("vault's pid");
    let daemon_pid = nap.pid().expect("the daemon runs");

    // Everything the attack goes for is there on the host: a denial is the sandbox's doing.
    for target in [
        "users.json",
        "host_key",
        "secret",
        "nap.sock",
        "apps/vault/config.json",
        "apps/vault/app.json",
        "repos/vault.git/HEAD",
        "apps/vault/releases/v1/server.py",
        "storage/vault",
    ] {
        assert!(
            nap.data.join(target).exists(),
            "{target} exists on the host"
        );
    }
    assert!(Path::new(&format!("/proc/{daemon_pid}/environ")).exists());

    mallory.deploy(&attacker_repo(&mallory), "probe");
    let port = nap.ps("probe")[0].port;
    let report = attack(port, &nap.data, "vault", daemon_pid, victim_pid);
    let attacks: BTreeMap<String, String> =
        serde_json::from_value(report["attacks"].clone()).expect("attacks");
    let got_through: Vec<_> = attacks
        .iter()
        .filter(|(what, result)| {
            let own = what.as_str() == "write own storage" || what.as_str() == "write /tmp";
            own != result.starts_with("allowed: ")
        })
        .collect();
    assert!(
        got_through.is_empty(),
        "these went the wrong way: {got_through:#?}\nwhole report: {report:#}"
    );
    assert!(attacks.len() > 20, "{report:#}");

    // Its own processes only: nothing of bob's app or of the daemon.
    let processes: BTreeMap<String, String> =
        serde_json::from_value(report["processes"].clone()).expect("processes");
    assert!(
        processes.len() <= 3
            && processes.values().any(|cmd| cmd.contains("attacker.py"))
            && !processes
                .values()
                .any(|cmd| cmd.contains("server.py") || cmd.contains(" serve ")),
        "{processes:#?}"
    );
    // Nothing of the daemon's environment (the harness gives it NAP_LOG, cargo CARGO_*).
    let environ: Vec<String> = serde_json::from_value(report["environ"].clone()).expect("env");
    assert!(
        !environ
            .iter()
            .any(|name| name == "NAP_LOG" || name.starts_with("CARGO")),
        "{environ:?}"
    );
    assert_eq!(report["storage"], "/storage", "{report:#}");
    assert!(
        http_get(victim.port, "/").is_some(),
        "bob's app is untouched"
    );

    // One uid per app, from app_uid_range, never shared; the app runs as its own.
    if is_root() {
        let (vault_uid, probe_uid) = (
            record(&nap, "vault")["uid"].clone(),
            record(&nap, "probe")["uid"].clone(),
        );
        let range = 200_000..=265_535;
        for uid in [&vault_uid, &probe_uid] {
            assert!(uid.as_u64().is_some_and(|u| range.contains(&u)), "{uid}");
        }
        assert_ne!(vault_uid, probe_uid, "two apps share a uid");
        assert_eq!(report["uid"], probe_uid, "the app runs as its own uid");
    } else {
        println!("not root: every app shares nap's uid (each in its own user namespace)");
    }

    // $NAP_STORAGE keeps a file across a redeploy and a daemon restart.
    assert_eq!(ask(port, "/keep?value=kept-1"), "kept");
    let kept = nap.data.join("storage/probe/kept");
    if is_root() {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(&kept).expect("kept file").uid();
        assert_eq!(
            Some(u64::from(owner)),
            record(&nap, "probe")["uid"].as_u64()
        );
    }
    let output = mallory.ssh(&["config:set", "probe", "GREETING=again"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let redeployed = &nap.ps("probe")[0];
    assert_eq!(redeployed.release, "v2");
    assert_eq!(
        ask(redeployed.port, "/"),
        "kept-1",
        "kept across a redeploy"
    );
    nap.restart();
    let restarted = &nap.ps("probe")[0];
    assert_eq!(ask(restarted.port, "/"), "kept-1", "kept across a restart");

    // destroy takes the storage with it, and only that app's.
    let output = mallory.ssh(&["destroy", "probe", "--force"]);
    assert!(output.status.success(), "{:?}", text(&output));
    assert!(
        !nap.data.join("storage/probe").exists(),
        "storage outlived destroy"
    );
    assert!(
        nap.data.join("storage/vault").exists(),
        "destroy took another app's storage"
    );
}

#[test]
fn without_bubblewrap_nap_refuses_to_start_unless_isolation_is_none_and_then_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("nap.yaml");
    std::fs::write(&config, "sandbox_bwrap: /nonexistent/bin/bwrap\n").expect("config");
    let config = config.to_str().expect("utf-8 path");

    let (started, stderr) =
        serve_expecting_refusal_with(&dir.path().join("data"), &["--config", config]);
    assert!(!started, "{stderr}");
    assert!(
        stderr.contains("bubblewrap is not installed")
            && stderr.contains("/nonexistent/bin/bwrap")
            && stderr.contains("apt-get install bubblewrap")
            && stderr.contains("isolation: none"),
        "{stderr}"
    );

    let nap = Nap::start_with(&["--config", config, "--isolation", "none"]);
    assert!(
        nap.log_text().contains("instances are not isolated"),
        "{}",
        nap.log_text()
    );
    let alice = nap.user("alice", "ed25519", false);
    let pushed = alice.deploy(&attacker_repo(&alice), "probe");
    assert!(
        pushed.contains("probe's instances are not isolated"),
        "{pushed}"
    );
    let ps = nap.cli(&["ps", "probe", "--json"]);
    let rows: Vec<Value> = serde_json::from_slice(&ps.stdout).expect("ps --json");
    assert_eq!(rows[0]["isolated"], false, "{rows:?}");
    let apps = nap.cli(&["apps", "--json"]);
    let rows: Vec<Value> = serde_json::from_slice(&apps.stdout).expect("apps --json");
    assert_eq!(rows[0]["isolated"], false, "{rows:?}");

    // What the sandbox prevents is really there without it: the same probe gets through.
    let daemon_pid = nap.pid().expect("runs");
    let port = nap.ps("probe")[0].port;
    let report = attack(port, &nap.data, "probe", daemon_pid, daemon_pid);
    let secret = format!("read {}/secret", nap.data.display());
    assert!(
        report["attacks"][&secret]
            .as_str()
            .is_some_and(|r| r.starts_with("allowed: ")),
        "{report:#}"
    );
}
