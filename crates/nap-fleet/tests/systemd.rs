//! The rendered units, run for real: a systemd user manager starts
//! `hello@v1-1-PORT.service` and its sidekick, the instance fetches its
//! release from a tarball server and serves it on its port, the sidekick
//! keeps its address in a real etcd and removes it when the instance stops.
//! This is what a fleet machine does with the units fleet hands it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nap_fleet::render::{RenderInput, Rendered, Tarball, Templates, render};

use crate::harness::{
    Etcd, SystemdUser, TarballServer, eventually, free_port, http_get, run, tarball_of,
};

const TOKEN: &str = "t0ken-of-hello-v1";
const GREETING: &str = r#"say "hi" at 100% \o/ $HOME"#;

// Multi-threaded: the tarball server must answer while this test blocks
// on `systemctl start`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_units_run_under_systemd_with_etcd_discovery() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();

    // The release: a static site, and a command that shows its environment.
    let release = root.join("release");
    std::fs::create_dir_all(&release).expect("dir");
    std::fs::write(release.join("index.html"), "hello from nap v1\n").expect("write");
    let path = "/api/apps/hello/releases/v1/tarball";
    let server = TarballServer::start(path, TOKEN, tarball_of(&release)).await;

    let port = free_port();
    let etcd_client = etcd.client();
    let node_env = root.join("node.env");
    std::fs::write(&node_env, "NAP_NODE_HOST=127.0.0.1\n").expect("write");
    let work = root.join("work");
    let input = RenderInput {
        app: "hello".into(),
        release: "v1".into(),
        generation: 1,
        command: "env > env.txt; exec python3 -m http.server $PORT --bind 127.0.0.1".into(),
        env: vec![("GREETING".into(), GREETING.into())],
        memory: Some(256 << 20),
        tarball: Tarball {
            url: format!("{}{path}", server.url),
            token: TOKEN.into(),
        },
        user: "root".into(),
        work_dir: work.display().to_string(),
        node_env_file: node_env.display().to_string(),
        etcd_endpoints: vec![etcd.endpoint.clone()],
        etcd_api: etcd_client.api_prefix().await.expect("gateway"),
        etcd_ttl_secs: 3,
        etcd_refresh_secs: 1,
    };
    let rendered = render(&Templates::default(), &input).expect("renders");
    let units = root.join("units");
    write_units(&units, &rendered);
    let instance = format!("hello@v1-1-{port}.service");
    let sidekick = format!("hello_discovery@v1-1-{port}.service");

    verify(&units, &[&instance, &sidekick]);

    let manager = SystemdUser::start();
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).expect("dir");
    for template in ["hello@.service", "hello_discovery@.service"] {
        manager.systemctl_ok(&[
            "link",
            "--runtime",
            &units.join(template).display().to_string(),
        ]);
        // Only for this test's diagnostics: no journald runs here.
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
    manager.systemctl_ok(&["daemon-reload"]);
    let diagnose = || {
        let status = manager.systemctl(&["status", &instance, &sidekick]);
        let mut text = String::from_utf8_lossy(&status.stdout).into_owned();
        for template in ["hello@.service", "hello_discovery@.service"] {
            let log =
                std::fs::read_to_string(logs.join(format!("{template}.log"))).unwrap_or_default();
            text.push_str(&format!("\n--- output of {template} units:\n{log}"));
        }
        text
    };

    let started = manager.systemctl(&["start", &instance, &sidekick]);
    assert!(
        started.status.success(),
        "systemctl --user start failed: {}\n{}",
        String::from_utf8_lossy(&started.stderr),
        diagnose()
    );

    // The instance fetched its release with the token and serves it on PORT.
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let page = eventually(Duration::from_secs(30), || async {
        http_get(address, "/index.html")
    })
    .await;
    assert_eq!(
        page,
        Some((200, "hello from nap v1\n".to_owned())),
        "{}",
        diagnose()
    );
    let seen = server.seen.lock().expect("lock").clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|r| r.path == path),
        "{seen:?}"
    );
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    // With nap's variables and the config var, byte for byte, and nothing of
    // the unit's own plumbing.
    let (_, env) = http_get(address, "/env.txt").expect("env.txt");
    for line in [
        format!("PORT={port}"),
        "NAP_APP=hello".into(),
        "NAP_INSTANCE=1".into(),
        "NAP_RELEASE=v1".into(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in\n{env}");
    }
    assert!(
        env.lines().any(|l| l == format!("GREETING={GREETING}")),
        "GREETING in\n{env}"
    );
    assert!(
        !env.contains("NAP_TARBALL_TOKEN") && !env.contains(TOKEN) && !env.contains("NAP_COMMAND"),
        "{env}"
    );

    let memory = manager.systemctl_ok(&["show", "-p", "MemoryMax", "--value", &instance]);
    assert_eq!(memory.trim(), (256u64 << 20).to_string());

    // The sidekick registered HOST:PORT, and keeps it past its 3 s lease.
    let key = format!("/nap/apps/hello/instances/v1-1-{port}");
    let registered = eventually(Duration::from_secs(20), || async {
        etcd_client.get(&key).await.ok().flatten()
    })
    .await;
    let registered = registered.unwrap_or_else(|| panic!("no {key} in etcd\n{}", diagnose()));
    assert_eq!(registered.value, format!("127.0.0.1:{port}"));
    assert!(registered.lease.is_some(), "on a lease");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        etcd_client.instances("hello").await.expect("etcd"),
        vec![address],
        "kept alive\n{}",
        diagnose()
    );

    // Stopping the instance stops the sidekick (BindsTo), which deletes the key.
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
        diagnose()
    );
    let state = manager.systemctl(&["is-active", &sidekick]);
    assert_eq!(
        String::from_utf8_lossy(&state.stdout).trim(),
        "inactive",
        "{}",
        diagnose()
    );
    assert_eq!(
        http_get(address, "/index.html"),
        None,
        "nothing serves on the port anymore"
    );
    assert!(
        !work.join("hello").join(format!("v1-1-{port}")).exists(),
        "a clean stop removes the release tree"
    );
    println!("systemd ran {instance} and {sidekick}; etcd saw {key} come and go");
}

fn write_units(dir: &Path, rendered: &Rendered) {
    std::fs::create_dir_all(dir).expect("dir");
    let discovery = rendered.discovery.as_ref().expect("etcd is configured");
    for unit in [&rendered.instance, discovery] {
        std::fs::write(dir.join(&unit.name), &unit.text).expect("write unit");
    }
}

/// `systemd-analyze verify` on the instances, with the rendered templates
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
