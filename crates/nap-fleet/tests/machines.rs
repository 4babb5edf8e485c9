//! The fake's machines run what fleet hands them: a launched unit fetches
//! its release with its own URL and token, and is active only if that
//! worked; the app then runs and serves the tree that arrived. The
//! tarball server is real, and so are curl, tar and the app.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nap_fleet::fake::{FAKE, FakeFleet, FakeMachine, FakeOptions, RUNS_UNITS};
use nap_fleet::{FleetConfig, FleetOptions, FleetRuntime, InstanceName, Runtime};
use nap_runtime::InstanceSpec;

use crate::harness::{TarballServer, eventually, http_get, tarball_of};

fn spec(release: &str, index: u32) -> InstanceSpec {
    InstanceSpec {
        app: "web".to_owned(),
        index,
        release: release.to_owned(),
        command: "exec python3 -m http.server $PORT --bind 127.0.0.1".to_owned(),
        cwd: "/nowhere/on/the/machines".into(),
        env: Vec::new(),
        memory: None,
        // What the local runtime sandboxes with; fleet's machines have their own.
        local: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_fetch_their_release_and_fail_as_systemd_would_when_they_cannot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).expect("dir");
    std::fs::write(tree.join("index.html"), "web v1 on a fake machine\n").expect("write");
    // v1 is served to its token; v2's token is refused; v3 is unknown.
    let server = TarballServer::start_releases(
        &[
            ("/api/apps/web/releases/v1/tarball", "token-web-v1"),
            ("/api/apps/web/releases/v2/tarball", "token-web-v2"),
        ],
        tarball_of(&tree),
    )
    .await;
    let machine = "1".repeat(32);
    let options = FakeOptions {
        machines: vec![FakeMachine::new(&machine, "127.0.0.1")],
        run_units_in: Some(dir.path().join("machines")),
        ..FakeOptions::default()
    };
    let fake = FakeFleet::start(options).await.expect("fake");
    println!("fleet API: {FAKE}, one machine at 127.0.0.1; {RUNS_UNITS}");
    let config = FleetConfig {
        fleet_endpoint: fake.endpoint().to_owned(),
        etcd_endpoints: Vec::new(),
        nap_url: server.url.clone(),
        tarballs: Arc::new(|app: &str, release: &str| {
            Ok(if release == "v2" {
                "a token nap never gave".to_owned()
            } else {
                format!("token-{app}-{release}")
            })
        }),
    };
    let runtime_options = FleetOptions {
        poll_interval: Duration::from_millis(50),
        schedule_timeout: Duration::from_secs(5),
        activation_timeout: Duration::from_secs(30),
        stop_timeout: Duration::from_secs(5),
        ..FleetOptions::default()
    };
    let runtime = FleetRuntime::new(config, runtime_options).expect("runtime");

    let started = runtime.start(spec("v1", 1)).await.expect("placed");
    runtime
        .wait_healthy(&started.id, Duration::from_millis(200).into())
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", e.reason, fake.journal(&started.id.key)));
    let name = InstanceName::parse_unit(&started.id.key).expect("ours");
    let fetched = fake
        .machine_root(&machine)
        .expect("machines run units")
        .join("var/lib/nap-releases/web")
        .join(name.instance())
        .join("tree/index.html");
    assert_eq!(
        std::fs::read_to_string(&fetched).ok().as_deref(),
        Some("web v1 on a fake machine\n"),
        "the tree arrived at {}\n{}",
        fetched.display(),
        fake.journal(&started.id.key)
    );
    let seen = server.seen.lock().expect("lock").clone();
    assert_eq!(
        seen.last().and_then(|r| r.authorization.as_deref()),
        Some("Bearer token-web-v1"),
        "the unit's own token"
    );
    let address = SocketAddr::from(([127, 0, 0, 1], name.port));
    let page = eventually(Duration::from_secs(20), || async {
        http_get(address, "/index.html")
    })
    .await;
    assert_eq!(
        page,
        Some((200, "web v1 on a fake machine\n".to_owned())),
        "the app serves the tree\n{}",
        fake.journal(&started.id.key)
    );

    // A refused token and an unknown release: the fetch fails, the unit
    // waits to restart, as systemd reports it, and the journal says why.
    for (release, status) in [("v2", "401"), ("v3", "404")] {
        let failing = runtime.start(spec(release, 1)).await.expect("placed");
        let unhealthy = runtime
            .wait_healthy(&failing.id, Duration::ZERO.into())
            .await
            .expect_err("the fetch fails");
        assert!(
            unhealthy.reason.contains("activating/auto-restart"),
            "{}",
            unhealthy.reason
        );
        let journal = fake.journal(&failing.id.key);
        assert!(
            journal.contains(&format!("returned error: {status}")),
            "curl says {status}:\n{journal}"
        );
        runtime.stop(&failing.id).await.expect("stopped");
    }

    // Deleting the unit kills the app.
    runtime.stop(&started.id).await.expect("stopped");
    let closed = eventually(Duration::from_secs(10), || async {
        http_get(address, "/index.html").is_none().then_some(())
    })
    .await;
    assert!(
        closed.is_some(),
        "the app still answers after its unit went"
    );
}
