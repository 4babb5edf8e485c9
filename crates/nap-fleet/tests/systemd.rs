//! The rendered units, run for real, the way a fleet machine runs them: a
//! systemd user manager (as root) gets each unit as an instance file that
//! is linked in, as fleet's agent writes them. The instance fetches its
//! release from a tarball server into a tree only root can write, runs
//! sandboxed as a user systemd makes up, and serves the tree on its port;
//! the sidekick keeps its address in a real etcd and removes it when the
//! instance stops. Stopped instances leave no tree behind, also when fleet
//! removes the unit file while systemd is still stopping it.
//!
//! DynamicUser= and the other sandbox options work in a user manager that
//! runs as root; `sandbox.rs` rates the same units with the system-level
//! analyzer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nap_fleet::render::{RenderInput, Rendered, RenderedUnit, Tarball, Templates, render};

use crate::harness::{
    Etcd, SystemdUser, TarballServer, eventually, free_instance_port, http_get, run, tarball_of,
};

const TOKEN: &str = "t0ken-of-hello-v1";
const TOKEN_V2: &str = "t0ken-of-hello-v2";
const GREETING: &str = r#"say "hi" at 100% \o/ $HOME"#;
/// A config var that would break the fetch if the commands that run as
/// root saw it: curl would send the request to a proxy that is not there.
const PROXY: &str = "http://127.0.0.1:9";

/// What the app checks about its sandbox, written to its storage.
const PROBE: &str = r#"#!/bin/sh
S=${NAP_STORAGE%/nap-storage/*}
{
  echo "uid=$(id -u)"
  if touch ./written 2>/dev/null; then echo "tree: writable"; else echo "tree: read-only"; fi
  if echo kept > "$NAP_STORAGE/from-v1"; then echo "storage: writable"; fi
  if touch /tmp/written; then echo "tmp: writable"; fi
  if ls "$S/nap-releases" >/dev/null 2>&1; then echo "trees: visible"; else echo "trees: hidden"; fi
  if ls /home >/dev/null 2>&1; then echo "home: visible"; else echo "home: hidden"; fi
  if test -e "/proc/$MANAGERPID"; then echo "manager: visible"; else echo "manager: hidden"; fi
  echo "--- env"
  env
} > "$NAP_STORAGE/probe.txt" 2>&1
"#;

/// A worker that stops only once the test allows it, so that the test
/// can change the unit under systemd while it is stopping, as fleet does.
const SLOW_STOP: &str = r#"test -e "$NAP_STORAGE/from-v1" && echo yes > "$NAP_STORAGE/v2-saw-v1"; trap 'while [ ! -e "$NAP_STORAGE/release-me" ]; do sleep 0.1; done; exit 0' TERM; while :; do sleep 0.2; done"#;

// Multi-threaded: the tarball servers must answer while this test blocks
// on `systemctl start`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_units_run_sandboxed_under_systemd_with_etcd_discovery() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();

    // Release v1: a static site and the probe; v2: a worker.
    let release = root.join("release");
    std::fs::create_dir_all(&release).expect("dir");
    std::fs::write(release.join("index.html"), "hello from nap v1\n").expect("write");
    std::fs::write(release.join("probe.sh"), PROBE).expect("write");
    let path = "/api/apps/hello/releases/v1/tarball";
    let server = TarballServer::start(path, TOKEN, tarball_of(&release)).await;
    let path_v2 = "/api/apps/hello/releases/v2/tarball";
    let server_v2 = TarballServer::start(path_v2, TOKEN_V2, tarball_of(&release)).await;

    let etcd_client = etcd.client();
    let node_env = root.join("node.env");
    std::fs::write(&node_env, "NAP_NODE_HOST=127.0.0.1\n").expect("write");
    let input = RenderInput {
        app: "hello".into(),
        release: "v1".into(),
        generation: 1,
        command: "sh probe.sh; exec python3 -m http.server $PORT --bind 127.0.0.1".into(),
        env: vec![
            ("GREETING".into(), GREETING.into()),
            ("http_proxy".into(), PROXY.into()),
        ],
        memory: Some(256 << 20),
        tarball: Tarball {
            url: format!("{}{path}", server.url),
            token: TOKEN.into(),
        },
        user: "root".into(),
        work_dir: "/unused".into(),
        node_env_file: node_env.display().to_string(),
        etcd_endpoints: vec![etcd.endpoint.clone()],
        etcd_api: etcd_client.api_prefix().await.expect("gateway"),
        etcd_ttl_secs: 3,
        etcd_refresh_secs: 1,
    };
    let rendered = render(&Templates::default(), &input).expect("renders");
    let v2 = render(
        &Templates::default(),
        &RenderInput {
            release: "v2".into(),
            command: SLOW_STOP.into(),
            tarball: Tarball {
                url: format!("{}{path_v2}", server_v2.url),
                token: TOKEN_V2.into(),
            },
            etcd_endpoints: Vec::new(),
            ..input.clone()
        },
    )
    .expect("renders");
    let units = root.join("units");
    std::fs::create_dir_all(&units).expect("dir");
    let port = free_instance_port();
    let instance = format!("hello@v1-1-{port}.service");
    let sidekick = format!("hello_discovery@v1-1-{port}.service");
    write_instance(&units, &rendered.instance, &instance);
    write_instance(&units, sidekick_of(&rendered), &sidekick);
    verify(&units, &[&instance, &sidekick]);

    let manager = SystemdUser::start();
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).expect("dir");
    for template in ["hello@.service", "hello_discovery@.service"] {
        // Only for this test's diagnostics: no journald runs here. Drop-ins
        // of a template apply to its instances.
        let dropin = manager
            .runtime_dir
            .join(format!("systemd/user/{template}.d"));
        std::fs::create_dir_all(&dropin).expect("drop-in dir");
        let log = logs.join(format!("{template}.log"));
        std::fs::write(
            dropin.join("log.conf"),
            format!(
                "[Service]\nStandardOutput=append:{0}\nStandardError=append:{0}\n",
                log.display()
            ),
        )
        .expect("drop-in");
    }
    let diagnose = |units: &[&str]| {
        let status = manager.systemctl(&[&["status"], units].concat());
        let mut text = String::from_utf8_lossy(&status.stdout).into_owned();
        for template in ["hello@.service", "hello_discovery@.service"] {
            let log =
                std::fs::read_to_string(logs.join(format!("{template}.log"))).unwrap_or_default();
            text.push_str(&format!("\n--- output of {template} units:\n{log}"));
        }
        text
    };

    launch(&manager, &units, &[&instance, &sidekick]);
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let page = eventually(Duration::from_secs(30), || async {
        http_get(address, "/index.html")
    })
    .await;
    assert_eq!(
        page,
        Some((200, "hello from nap v1\n".to_owned())),
        "{}",
        diagnose(&[&instance, &sidekick])
    );
    let seen = server.seen.lock().expect("lock").clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|r| r.path == path),
        "{seen:?}"
    );
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str()),
        "fetched with the token, and not through the app's http_proxy"
    );

    // The sandbox, as the app saw it.
    let storage = unit_env(&manager, &instance, "NAP_STORAGE");
    let probe = std::fs::read_to_string(storage.join("probe.txt"))
        .unwrap_or_else(|e| panic!("no probe.txt ({e})\n{}", diagnose(&[&instance])));
    let (checks, env) = probe.split_once("--- env\n").expect("probe output");
    let uid = checks
        .lines()
        .find_map(|l| l.strip_prefix("uid="))
        .and_then(|uid| uid.parse::<u32>().ok());
    assert!(
        uid.is_some_and(|uid| uid != 0),
        "a user systemd made up: {checks}"
    );
    for expected in [
        "tree: read-only",
        "storage: writable",
        "tmp: writable",
        "trees: hidden",
        "home: hidden",
        "manager: hidden",
    ] {
        assert!(
            checks.lines().any(|l| l == expected),
            "{expected}:\n{checks}"
        );
    }
    println!("the app's sandbox: {}", checks.trim().replace('\n', ", "));

    // nap's variables and the config vars, byte for byte, and nothing of
    // the unit's own plumbing.
    for line in [
        format!("PORT={port}"),
        "NAP_APP=hello".into(),
        "NAP_INSTANCE=1".into(),
        "NAP_RELEASE=v1".into(),
        format!("NAP_STORAGE={}", storage.display()),
        "HOME=/tmp".into(),
        format!("GREETING={GREETING}"),
        format!("http_proxy={PROXY}"),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in\n{env}");
    }
    for plumbing in [
        "NAP_TARBALL_TOKEN",
        TOKEN,
        "NAP_COMMAND",
        "NAP_CONFIG",
        "NAP_INSTANCE_DIR",
    ] {
        assert!(!env.contains(plumbing), "{plumbing} in\n{env}");
    }

    let memory = manager.systemctl_ok(&["show", "-p", "MemoryMax", "--value", &instance]);
    assert_eq!(memory.trim(), (256u64 << 20).to_string());

    // The sidekick registered HOST:PORT, and keeps it past its 3 s lease.
    let key = format!("/nap/apps/hello/instances/v1-1-{port}");
    let registered = eventually(Duration::from_secs(20), || async {
        etcd_client.get(&key).await.ok().flatten()
    })
    .await;
    let registered = registered
        .unwrap_or_else(|| panic!("no {key} in etcd\n{}", diagnose(&[&instance, &sidekick])));
    assert_eq!(registered.value, format!("127.0.0.1:{port}"));
    assert!(registered.lease.is_some(), "on a lease");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        etcd_client.instances("hello").await.expect("etcd"),
        vec![address],
        "kept alive\n{}",
        diagnose(&[&sidekick])
    );

    // Stopping the instance stops the sidekick (BindsTo), which deletes the
    // key, and removes the release tree.
    let tree_v1_1 = unit_env(&manager, &instance, "NAP_INSTANCE_DIR");
    assert!(tree_v1_1.join("tree/index.html").exists());
    manager.systemctl_ok(&["stop", &instance]);
    let gone = eventually(Duration::from_secs(10), || async {
        etcd_client
            .get(&key)
            .await
            .ok()
            .and_then(|found| found.is_none().then_some(()))
    })
    .await;
    assert!(
        gone.is_some(),
        "the key outlived the instance\n{}",
        diagnose(&[&sidekick])
    );
    let state = manager.systemctl(&["is-active", &sidekick]);
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "inactive");
    assert_eq!(
        http_get(address, "/index.html"),
        None,
        "nothing serves on the port anymore"
    );
    assert!(
        !tree_v1_1.exists(),
        "a clean stop removes the release tree {}",
        tree_v1_1.display()
    );

    // fleet's unload path: it asks systemd to stop the unit, removes the
    // unit file and reloads systemd without waiting for the stop, so the
    // unit's ExecStopPost is gone by the time the stop ends. Instance 2 of
    // v1 keeps running meanwhile.
    let running = format!("hello@v1-2-{}.service", free_instance_port());
    write_instance(&units, &rendered.instance, &running);
    launch(&manager, &units, &[&running]);
    let tree_running = unit_env(&manager, &running, "NAP_INSTANCE_DIR");
    let slow = format!("hello@v2-1-{}.service", free_instance_port());
    write_instance(&units, &v2.instance, &slow);
    launch(&manager, &units, &[&slow]);
    let tree_slow = unit_env(&manager, &slow, "NAP_INSTANCE_DIR");
    let saw = eventually(Duration::from_secs(10), || async {
        storage.join("v2-saw-v1").exists().then_some(())
    })
    .await;
    assert!(
        saw.is_some(),
        "the app's storage is kept across releases\n{}",
        diagnose(&[&slow])
    );
    manager.systemctl_ok(&["stop", "--no-block", &slow]);
    manager.systemctl_ok(&["disable", "--runtime", &slow]);
    std::fs::remove_file(units.join(&slow)).expect("unit file");
    manager.systemctl_ok(&["daemon-reload"]);
    std::fs::write(storage.join("release-me"), "").expect("let the worker stop");
    let stopped = eventually(Duration::from_secs(20), || async {
        let state = manager.systemctl(&["is-active", &slow]);
        let state = String::from_utf8_lossy(&state.stdout).trim().to_owned();
        (state == "inactive" || state == "failed").then_some(())
    })
    .await;
    assert!(
        stopped.is_some(),
        "{slow} did not stop\n{}",
        diagnose(&[&slow])
    );
    assert!(
        tree_slow.join("fetched").exists(),
        "fleet's unload path was expected to skip ExecStopPost and leave {}",
        tree_slow.display()
    );

    // The next start on the machine removes that tree, but not the one
    // the running instance holds, though both started minutes ago.
    for tree in [&tree_slow, &tree_running] {
        age(tree);
    }
    let next = format!("hello@v1-3-{}.service", free_instance_port());
    write_instance(&units, &rendered.instance, &next);
    launch(&manager, &units, &[&next]);
    assert!(
        !tree_slow.exists(),
        "the start of {next} left the tree of the stopped {slow}\n{}",
        diagnose(&[&next])
    );
    assert!(
        tree_running.join("tree/index.html").exists(),
        "the start of {next} removed the tree of the running {running}"
    );
    assert!(
        unit_env(&manager, &next, "NAP_INSTANCE_DIR")
            .join("fetched")
            .exists()
    );
    println!(
        "systemd ran {instance} and {sidekick}; etcd saw {key} come and go; the start of {next} \
         removed the tree {slow} left behind in fleet's unload path"
    );
}

fn sidekick_of(rendered: &Rendered) -> &RenderedUnit {
    rendered.discovery.as_ref().expect("etcd is configured")
}

/// Writes the template's text as the instance's unit file, as fleet's
/// agent does on the machine.
fn write_instance(dir: &Path, unit: &RenderedUnit, instance: &str) {
    std::fs::write(dir.join(instance), &unit.text).expect("write unit");
}

/// Links the unit files in, as fleet's agent does, and starts them.
fn launch(manager: &SystemdUser, dir: &Path, units: &[&str]) {
    for unit in units {
        manager.systemctl_ok(&["link", "--runtime", &dir.join(unit).display().to_string()]);
    }
    manager.systemctl_ok(&["daemon-reload"]);
    manager.systemctl_ok(&[&["start"], units].concat());
}

/// A variable of a unit's `Environment=`, with systemd's specifiers filled.
fn unit_env(manager: &SystemdUser, unit: &str, key: &str) -> PathBuf {
    let all = manager.systemctl_ok(&["show", "-p", "Environment", "--value", unit]);
    all.split_whitespace()
        .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no {key} in the environment of {unit}: {all}"))
}

/// Makes an instance look started two minutes ago.
fn age(instance_dir: &Path) {
    let output = run(Command::new("touch")
        .args(["-d", "2 minutes ago"])
        .arg(instance_dir));
    assert!(output.status.success(), "touch {}", instance_dir.display());
}

/// `systemd-analyze verify` on the instances, with the rendered units
/// first in the unit path. Its only complaint may be that `MemoryLimit=`
/// is deprecated: the templates keep it for cgroup v1 machines.
fn verify(dir: &Path, units: &[&str]) {
    let output = run(Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display())));
    let complaints = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "systemd-analyze verify failed:\n{complaints}"
    );
    for line in complaints.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.contains("MemoryLimit="),
            "systemd-analyze verify: {line}"
        );
    }
    println!("systemd-analyze verify: {} pass", units.join(", "));
}
