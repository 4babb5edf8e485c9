//! The fleet backend end to end: the real daemon deploys through its fleet
//! runtime to nap-fleet's in-repo fake of fleet's API v1. fleet itself
//! cannot run here (no registry ships it); the fake reproduces its
//! documented behaviour, and this test says so in its output.

use crate::harness::{Nap, http, server_profile, text};

fn instance_units(units: &[nap_fleet::Unit], app: &str) -> Vec<String> {
    let mut names: Vec<String> = units
        .iter()
        .map(|u| u.name.clone())
        .filter(|n| n.starts_with(&format!("{app}@v")))
        .collect();
    names.sort();
    names
}

#[test]
fn a_push_launches_instance_units_and_scale_deletes_the_highest() {
    println!("fleet API: in-repo fake (no real fleetd here)");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let machines = (1..=3)
        .map(|n| nap_fleet::fake::FakeMachine::new(&format!("{n:032x}"), "127.0.0.1"))
        .collect();
    let options = nap_fleet::fake::FakeOptions {
        machines,
        ..Default::default()
    };
    let fake = runtime
        .block_on(nap_fleet::fake::FakeFleet::start(options))
        .unwrap();
    let client = nap_fleet::FleetClient::new(fake.endpoint()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nap.yaml");
    std::fs::write(
        &config,
        format!(
            "runtime: fleet\nfleet_endpoint: {}\nfleet_nap_url: http://127.0.0.1:1\nboot_timeout_secs: 1\n",
            fake.endpoint()
        ),
    )
    .unwrap();
    let nap = Nap::start_with(&["--config", config.to_str().unwrap()]);
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo("web", &server_profile("scale: 3\nmemory: 128M\n"));
    let output = alice.deploy(&repo, "web");
    assert!(output.contains("web v1 deployed"), "{output}");

    let units = runtime.block_on(client.units()).unwrap();
    let instances = instance_units(&units, "web");
    assert_eq!(instances.len(), 3, "{instances:?}");
    let machines: std::collections::HashSet<_> = units
        .iter()
        .filter(|u| u.name.starts_with("web@v"))
        .filter_map(|u| u.machine_id.clone())
        .collect();
    assert_eq!(machines.len(), 3, "Conflicts spread the instances");
    let first = units.iter().find(|u| u.name == instances[0]).unwrap();
    let option = |name: &str| {
        first
            .options
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.value.clone())
    };
    let env: Vec<&str> = first
        .options
        .iter()
        .filter(|o| o.name == "Environment")
        .map(|o| o.value.as_str())
        .collect();
    assert!(
        env.iter()
            .any(|e| e.contains("NAP_COMMAND=python3 server.py")),
        "{env:?}"
    );
    assert!(
        option("Conflicts")
            .unwrap_or_default()
            .starts_with("web@v1-"),
        "{:?}",
        first.options
    );
    assert!(option("MemoryMax").is_some());
    assert_eq!(nap.ps("web").len(), 3);

    // The tarball a machine fetches: with the release's token, and only with it.
    let token = env
        .iter()
        .find_map(|e| e.trim_matches('"').strip_prefix("NAP_TARBALL_TOKEN="))
        .unwrap_or_else(|| panic!("no tarball token in {env:?}"));
    let path = "/api/apps/web/releases/v1/tarball";
    let (status, _) = http(
        nap.http_port,
        "GET",
        path,
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    )
    .unwrap();
    assert_eq!(status, 200);
    let (status, _) = http(
        nap.http_port,
        "GET",
        path,
        &[("Authorization", "Bearer nope")],
        "",
    )
    .unwrap();
    assert_eq!(status, 401);
    let (status, _) = http(
        nap.http_port,
        "GET",
        "/api/apps/web/releases/v2/tarball",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    )
    .unwrap();
    assert_eq!(status, 401, "a token opens its own release only");

    let output = alice.ssh(&["scale", "web", "1"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let left = instance_units(&runtime.block_on(client.units()).unwrap(), "web");
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with("web@v1-1-"),
        "instances 2 and 3 were deleted: {left:?}"
    );

    let output = alice.ssh(&["logs", "web"]);
    assert!(
        text(&output).1.contains("journalctl"),
        "{:?}",
        text(&output)
    );
}
