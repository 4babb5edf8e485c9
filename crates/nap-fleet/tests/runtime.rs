//! `FleetRuntime` end to end against the fake fleet (and a real etcd where
//! discovery matters): what the deployer sees.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nap_fleet::fake::{FAKE, FakeFleet, FakeMachine, FakeOptions};
use nap_fleet::{FleetConfig, FleetOptions, FleetRuntime, InstanceName, Runtime};
use nap_runtime::{InstanceId, InstanceSpec, InstanceState, Started};

use crate::harness::Etcd;

struct Cluster {
    fake: FakeFleet,
    etcd: Option<Etcd>,
}

impl Cluster {
    async fn start(with_etcd: bool) -> Cluster {
        // The machines are 127.0.0.1-3 (all loopback on Linux), so that the runtime's probes
        // of their ports stay on this machine.
        let machines = (1..=3)
            .map(|i| FakeMachine::new(&format!("{i:0>32}"), &format!("127.0.0.{i}")))
            .collect();
        let options = FakeOptions {
            machines,
            ..FakeOptions::default()
        };
        let fake = FakeFleet::start(options).await.expect("fake");
        println!("fleet API: in-repo fake (no real fleetd here): {FAKE}, 3 machines");
        let etcd = with_etcd.then(Etcd::start);
        Cluster { fake, etcd }
    }

    fn runtime(&self) -> Arc<FleetRuntime> {
        let config = FleetConfig {
            fleet_endpoint: self.fake.endpoint().to_owned(),
            etcd_endpoints: self.etcd.iter().map(|e| e.endpoint.clone()).collect(),
            nap_url: "http://10.0.0.100:8080".to_owned(),
            tarballs: Arc::new(|app: &str, release: &str| Ok(format!("token-{app}-{release}"))),
        };
        let options = FleetOptions {
            poll_interval: Duration::from_millis(20),
            schedule_timeout: Duration::from_secs(2),
            activation_timeout: Duration::from_secs(2),
            stop_timeout: Duration::from_secs(2),
            ..FleetOptions::default()
        };
        Arc::new(FleetRuntime::new(config, options).expect("runtime"))
    }

    /// Plays the sidekick: puts the instance's address where the router
    /// looks.
    async fn register(&self, started: &Started, host: &str) {
        let etcd = self.etcd.as_ref().expect("etcd").client();
        let name = InstanceName::parse_unit(&started.id.key).expect("ours");
        etcd.put(&name.etcd_key(), &format!("{host}:{}", name.port), None)
            .await
            .expect("put");
    }
}

fn spec(app: &str, release: &str, index: u32) -> InstanceSpec {
    InstanceSpec {
        app: app.to_owned(),
        index,
        release: release.to_owned(),
        command: "python3 -m http.server $PORT".to_owned(),
        cwd: "/nowhere/on/the/machines".into(),
        env: vec![("GREETING".to_owned(), "hello".to_owned())],
        memory: Some(256 << 20),
        // What the local runtime sandboxes with; fleet's machines have their own.
        local: Default::default(),
    }
}

async fn start_all(
    runtime: &Arc<FleetRuntime>,
    app: &str,
    release: &str,
    indexes: &[u32],
) -> Vec<Started> {
    let mut starts = tokio::task::JoinSet::new();
    for &index in indexes {
        let runtime = runtime.clone();
        let spec = spec(app, release, index);
        starts.spawn(async move { runtime.start(spec).await });
    }
    let mut started = Vec::new();
    while let Some(joined) = starts.join_next().await {
        started.push(joined.expect("task").expect("started"));
    }
    started.sort_by_key(|s| s.id.index);
    started
}

#[tokio::test]
async fn scale_three_spreads_over_three_machines_and_stops_the_highest() {
    let cluster = Cluster::start(true).await;
    let runtime = cluster.runtime();
    let started = start_all(&runtime, "web", "v1", &[1, 2, 3]).await;

    let template = cluster.fake.unit("web@.service").expect("template stored");
    assert_eq!(template.1, "inactive");
    let discovery_template = cluster
        .fake
        .unit("web_discovery@.service")
        .expect("sidekick template stored");
    let mut machines = HashSet::new();
    let mut ports = HashSet::new();
    for s in &started {
        let name = InstanceName::parse_unit(&s.id.key).expect("an instance unit");
        assert_eq!(
            (name.app.as_str(), name.release.as_str(), name.index),
            ("web", "v1", s.id.index)
        );
        assert_eq!(
            s.id.key,
            format!("web@v1-{}-{}.service", s.id.index, name.port)
        );
        let (options, desired, machine) = cluster.fake.unit(&name.unit()).expect("instance unit");
        assert_eq!(
            options, template.0,
            "the instance has the template's options"
        );
        assert_eq!(desired, "launched");
        let machine = machine.expect("placed");
        let (sidekick_options, sidekick_desired, sidekick_machine) =
            cluster.fake.unit(&name.discovery_unit()).expect("sidekick");
        assert_eq!(sidekick_options, discovery_template.0);
        assert_eq!(sidekick_desired, "launched");
        assert_eq!(
            sidekick_machine.as_ref(),
            Some(&machine),
            "MachineOf its instance"
        );
        let index: u8 = machine
            .trim_start_matches('0')
            .parse()
            .expect("fake ids end in the number");
        assert_eq!(
            s.address,
            SocketAddr::from(([127, 0, 0, index], name.port)),
            "the machine's address"
        );
        machines.insert(machine);
        ports.insert(name.port);
    }
    assert_eq!(machines.len(), 3, "Conflicts spread the three instances");
    assert_eq!(ports.len(), 3);
    let options_text = nap_fleet::unit::unit_file_text(&template.0);
    assert!(
        options_text.contains("Conflicts=web@v1-*.service"),
        "{options_text}"
    );
    assert!(options_text.contains("token-web-v1"), "{options_text}");
    assert!(
        options_text.contains("http://10.0.0.100:8080/api/apps/web/releases/v1/tarball"),
        "{options_text}"
    );

    // Healthy once fleet says active and the sidekick has registered.
    for s in &started {
        cluster.register(s, "192.0.2.7").await;
        runtime
            .wait_healthy(&s.id, Duration::from_millis(50).into())
            .await
            .expect("healthy");
    }
    let listed = runtime.list().await;
    assert_eq!(listed.len(), 3);
    for instance in &listed {
        assert_eq!(instance.state, InstanceState::Up);
        assert_eq!(
            instance.address.ip().to_string(),
            "192.0.2.7",
            "etcd's address wins"
        );
        assert_eq!(instance.memory_limit, Some(256 << 20));
        assert!(
            instance.location.contains("(127.0.0."),
            "{}",
            instance.location
        );
    }
    let router_view = cluster
        .etcd
        .as_ref()
        .expect("etcd")
        .client()
        .instances("web")
        .await
        .expect("etcd");
    assert_eq!(router_view.len(), 3);
    // The router's snapshot was read again after the health checks: etcd's addresses.
    let pushed = runtime.up_addresses();
    let web = pushed.borrow().get("web").cloned().unwrap_or_default();
    assert_eq!(web.len(), 3, "{web:?}");
    assert!(
        web.iter().all(|a| a.ip().to_string() == "192.0.2.7"),
        "{web:?}"
    );

    // Scale to 1: the caller stops the highest first.
    let before = cluster.fake.requests().len();
    for s in started.iter().rev().take(2) {
        runtime.stop(&s.id).await.expect("stopped");
    }
    let deletes: Vec<String> = cluster.fake.requests()[before..]
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.clone())
        .collect();
    let expected: Vec<String> = [&started[2], &started[1]]
        .iter()
        .flat_map(|s| {
            let name = InstanceName::parse_unit(&s.id.key).expect("ours");
            [
                format!("/fleet/v1/units/{}", name.discovery_unit()),
                format!("/fleet/v1/units/{}", name.unit()),
            ]
        })
        .collect();
    assert_eq!(
        deletes, expected,
        "sidekick first, then the instance; 3 before 2"
    );
    let left = runtime.list().await;
    assert_eq!(left.iter().map(|i| i.id.index).collect::<Vec<_>>(), vec![1]);
    assert_eq!(
        cluster
            .etcd
            .as_ref()
            .expect("etcd")
            .client()
            .instances("web")
            .await
            .expect("etcd")
            .len(),
        1
    );
    // The stops took the two out of the router's view at once.
    assert_eq!(pushed.borrow().get("web").map(Vec::len), Some(1));
    // Stopping again is fine: already gone.
    runtime.stop(&started[2].id).await.expect("idempotent");
}

#[tokio::test]
async fn failures_say_where_to_look() {
    let cluster = Cluster::start(true).await;
    let runtime = cluster.runtime();
    let started = start_all(&runtime, "api", "v4", &[1, 2, 3]).await;

    // A unit that fails on its machine.
    cluster.fake.fail_unit(&started[0].id.key);
    let unhealthy = runtime
        .wait_healthy(&started[0].id, Duration::ZERO.into())
        .await
        .expect_err("failed");
    let reason = &unhealthy.reason;
    assert!(reason.contains("failed on machine"), "{reason}");
    assert!(
        reason.contains(&format!("journalctl -u {}", started[0].id.key)),
        "{reason}"
    );
    assert!(
        reason.contains("(127.0.0."),
        "names the machine's address: {reason}"
    );

    // One that crashes and is being restarted by systemd.
    cluster
        .fake
        .set_systemd_state(&started[1].id.key, "activating", "auto-restart");
    let unhealthy = runtime
        .wait_healthy(&started[1].id, Duration::ZERO.into())
        .await
        .expect_err("crashing");
    assert!(
        unhealthy.reason.contains("activating/auto-restart"),
        "{}",
        unhealthy.reason
    );
    assert_eq!(
        runtime
            .list()
            .await
            .iter()
            .find(|i| i.id == started[1].id)
            .map(|i| i.state),
        Some(InstanceState::Backoff)
    );

    // Active, but its sidekick never registered.
    let unhealthy = runtime
        .wait_healthy(&started[2].id, Duration::ZERO.into())
        .await
        .expect_err("no discovery key");
    let name = InstanceName::parse_unit(&started[2].id.key).expect("ours");
    assert!(
        unhealthy
            .reason
            .contains(&format!("journalctl -u {}", name.discovery_unit())),
        "{}",
        unhealthy.reason
    );

    // A fourth instance of the release finds no machine: it is refused at
    // once, with the numbers, before anything is submitted.
    let submitted = cluster.fake.requests().len();
    let error = runtime
        .start(spec("api", "v4", 4))
        .await
        .expect_err("no machine")
        .to_string();
    assert_eq!(
        error,
        "api@4 v4 cannot be placed: the instances of a release run one per machine \
         (Conflicts=api@v4-*.service), so 4 of them need 4 machines, and fleet has 3; \
         scale api to at most 3, or add machines"
    );
    assert!(
        !cluster.fake.requests()[submitted..]
            .iter()
            .any(|r| r.method == "PUT"),
        "nothing was submitted"
    );
    let names = cluster.fake.unit_names();
    assert!(!names.iter().any(|n| n.contains("@v4-4-")), "{names:?}");

    // An instance that is gone.
    let gone = InstanceId {
        key: "api@v4-9-29999.service".into(),
        ..started[0].id.clone()
    };
    let unhealthy = runtime
        .wait_healthy(&gone, Duration::ZERO.into())
        .await
        .expect_err("gone");
    assert!(
        unhealthy.reason.contains("gone from fleet"),
        "{}",
        unhealthy.reason
    );
}

#[tokio::test]
async fn rolling_deploys_and_restarts_fit_on_n_machines() {
    let cluster = Cluster::start(false).await;
    let runtime = cluster.runtime();
    let v1 = start_all(&runtime, "shop", "v1", &[1, 2, 3]).await;
    // A deploy: v2 comes up beside v1 on the same three machines.
    let v2 = start_all(&runtime, "shop", "v2", &[1, 2, 3]).await;
    let ports: HashSet<u16> = v1.iter().chain(&v2).map(|s| s.address.port()).collect();
    assert_eq!(ports.len(), 6, "ports are unique across the cluster");
    for s in &v1 {
        runtime.stop(&s.id).await.expect("old release stopped");
    }
    // A rolling restart of v2, one instance at a time, as `restart` does.
    for s in &v2 {
        let fresh = runtime
            .start(spec("shop", "v2", s.id.index))
            .await
            .expect("fits beside the old one");
        assert!(
            fresh
                .id
                .key
                .starts_with(&format!("shop@v2.2-{}-", s.id.index)),
            "{}",
            fresh.id.key
        );
        runtime
            .wait_healthy(&fresh.id, Duration::ZERO.into())
            .await
            .expect("healthy");
        runtime.stop(&s.id).await.expect("old one stopped");
    }
    // Without etcd the router's view comes from fleet's active units: the three of v2.2, at
    // their machines' addresses.
    let mut view = runtime
        .up_addresses()
        .borrow()
        .get("shop")
        .cloned()
        .unwrap_or_default();
    view.sort();
    let mut expected: Vec<SocketAddr> = runtime.list().await.iter().map(|i| i.address).collect();
    expected.sort();
    assert_eq!(view, expected);
    assert!(view.iter().all(|a| a.ip().is_loopback()), "{view:?}");
    let listed = runtime.list().await;
    let machines: HashSet<String> = listed.iter().map(|i| i.location.clone()).collect();
    assert_eq!(
        (listed.len(), machines.len()),
        (3, 3),
        "the new set is spread too: {listed:?}"
    );
    let template = cluster.fake.unit("shop@.service").expect("template");
    assert!(nap_fleet::unit::unit_file_text(&template.0).contains("Conflicts=shop@v2.2-*.service"));
    assert!(
        cluster.fake.unit("shop_discovery@.service").is_none(),
        "no etcd, no sidekick"
    );
}

#[tokio::test]
async fn a_restarted_nap_adopts_what_runs() {
    let cluster = Cluster::start(false).await;
    let first = cluster.runtime();
    let started = start_all(&first, "blog", "v7", &[1, 2]).await;
    first.shutdown().await;
    assert_eq!(
        cluster
            .fake
            .unit_names()
            .iter()
            .filter(|n| n.starts_with("blog@v7"))
            .count(),
        2,
        "left running"
    );

    let second = cluster.runtime();
    assert_eq!(second.list().await.len(), 2);
    let puts_before = cluster
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    let again = second.start(spec("blog", "v7", 1)).await.expect("adopted");
    assert_eq!(again.id, started[0].id, "the same unit");
    assert_eq!(again.address, started[0].address);
    let puts_after = cluster
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert_eq!(puts_before, puts_after, "nothing submitted");
    // A second start of instance 1 by this nap is a restart: a new unit.
    let restarted = second.start(spec("blog", "v7", 1)).await.expect("new set");
    assert_ne!(restarted.id, started[0].id);
    assert!(
        restarted.id.key.starts_with("blog@v7.2-1-"),
        "{}",
        restarted.id.key
    );
}

#[tokio::test]
async fn bad_specs_and_settings_are_refused() {
    let cluster = Cluster::start(false).await;
    let runtime = cluster.runtime();
    let mut bad = spec("web", "v1", 1);
    bad.release = "v1-hotfix".into();
    assert!(
        runtime
            .start(bad)
            .await
            .expect_err("release")
            .to_string()
            .contains("letters and digits")
    );
    let mut bad = spec("Web", "v1", 1);
    bad.app = "Web".into();
    assert!(
        runtime
            .start(bad)
            .await
            .expect_err("app")
            .to_string()
            .contains("cannot name a fleet unit")
    );
    let mut bad = spec("web", "v1", 1);
    bad.env.push(("BAD-NAME".into(), "x".into()));
    assert!(
        runtime
            .start(bad)
            .await
            .expect_err("env")
            .to_string()
            .contains("config var")
    );
    assert!(
        cluster
            .fake
            .unit_names()
            .iter()
            .all(|n| n.ends_with("@.service")),
        "no instance left"
    );

    let config = |endpoint: &str| FleetConfig {
        fleet_endpoint: endpoint.to_owned(),
        etcd_endpoints: Vec::new(),
        nap_url: "http://nap:8080".to_owned(),
        tarballs: Arc::new(|_: &str, _: &str| Ok("t".to_owned())),
    };
    assert!(FleetRuntime::new(config("fleet:1"), FleetOptions::default()).is_err());
    let no_ports = FleetOptions {
        ports: 20000..20000,
        ..FleetOptions::default()
    };
    assert!(FleetRuntime::new(config("unix:///var/run/fleet.sock"), no_ports).is_err());
    let bad_user = FleetOptions {
        run_as: "no body".into(),
        ..FleetOptions::default()
    };
    let error = FleetRuntime::new(config("unix:///var/run/fleet.sock"), bad_user)
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("not a Unix login name"),
        "{error}"
    );
    let fine = FleetRuntime::new(
        config("unix:///var/run/fleet.sock"),
        FleetOptions::default(),
    )
    .expect("ok");
    assert_eq!(fine.name(), "fleet");
}

#[tokio::test]
async fn the_templates_go_with_the_last_instance_of_an_app() {
    let cluster = Cluster::start(true).await;
    let runtime = cluster.runtime();
    let templates = ["tpl@.service", "tpl_discovery@.service"];
    let present = || {
        let names = cluster.fake.unit_names();
        templates
            .iter()
            .filter(|t| names.iter().any(|n| n == *t))
            .count()
    };
    let started = start_all(&runtime, "tpl", "v1", &[1, 2]).await;
    // Another app's templates are not this one's to remove.
    let other = start_all(&runtime, "other", "v1", &[1]).await;
    assert_eq!(present(), 2);
    runtime.stop(&started[1].id).await.expect("stopped");
    assert_eq!(present(), 2, "an instance is left: the templates stay");
    runtime.stop(&started[0].id).await.expect("stopped");
    let names = cluster.fake.unit_names();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("tpl@") || n.starts_with("tpl_discovery@")),
        "nothing of the app is left in fleet: {names:?}"
    );
    assert!(names.iter().any(|n| n == "other@.service"), "{names:?}");
    // A later start submits them again.
    let again = start_all(&runtime, "tpl", "v2", &[1]).await;
    assert_eq!(present(), 2);
    runtime.stop(&again[0].id).await.expect("stopped");
    runtime.stop(&other[0].id).await.expect("stopped");
}
