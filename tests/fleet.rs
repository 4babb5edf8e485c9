//! The fleet backend end to end: the real daemon deploys through its fleet
//! runtime.
//!
//! Without `NAP_FLEET_ENDPOINT` it runs against nap-fleet's in-repo fake of
//! fleet's API v1 (fleet itself cannot run here: no registry ships it), with
//! three machines at 127.0.0.1 that run what fleet hands them: each unit's
//! `ExecStartPre` fetches the release from this nap with the unit's own URL
//! and token, and its `ExecStart` runs the app. With
//! `NAP_FLEET_ENDPOINT=http://host:port` (or `unix:///path`) it runs
//! against that fleetd, whose machines must reach this host's 127.0.0.1 (a
//! one-host cluster, as in issue 17).
//!
//! The assertions follow the machines the fleet reports: the instances of
//! one release conflict (`Conflicts=APP@vN-*.service`, one per machine), so
//! on N machines a push asks for min(3, N) instances and expects each on a
//! machine of its own.

use std::collections::HashSet;

use nap_fleet::fake::{FAKE, FakeFleet, FakeMachine, FakeOptions, RUNS_UNITS};

use crate::harness::{Nap, SERVER_PY, http, server_profile, text};

/// The fleet the test runs against.
struct Fleet {
    endpoint: String,
    fake: Option<FakeFleet>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn start() -> Fleet {
        let runtime = tokio::runtime::Runtime::new().expect("tokio");
        let dir = tempfile::tempdir().expect("temp dir");
        if let Ok(endpoint) = std::env::var("NAP_FLEET_ENDPOINT")
            && !endpoint.is_empty()
        {
            println!(
                "fleet API: the fleetd at {endpoint} named by NAP_FLEET_ENDPOINT (not the fake)"
            );
            return Fleet {
                endpoint,
                fake: None,
                runtime,
                _dir: dir,
            };
        }
        let options = FakeOptions {
            machines: (1..=3)
                .map(|n| FakeMachine::new(&format!("{n:x}").repeat(32), "127.0.0.1"))
                .collect(),
            run_units_in: Some(dir.path().join("machines")),
            ..Default::default()
        };
        let fake = runtime
            .block_on(FakeFleet::start(options))
            .expect("the fake starts");
        println!(
            "fleet API: {FAKE} at {}, 3 machines at 127.0.0.1; {RUNS_UNITS}",
            fake.endpoint()
        );
        Fleet {
            endpoint: fake.endpoint().to_owned(),
            fake: Some(fake),
            runtime,
            _dir: dir,
        }
    }

    fn client(&self) -> nap_fleet::FleetClient {
        nap_fleet::FleetClient::new(&self.endpoint).expect("a valid endpoint")
    }

    fn units(&self, app: &str) -> Vec<nap_fleet::Unit> {
        let mut units: Vec<nap_fleet::Unit> = self
            .runtime
            .block_on(self.client().units())
            .expect("fleet lists its units")
            .into_iter()
            .filter(|u| u.name.starts_with(&format!("{app}@v")))
            .collect();
        units.sort_by(|a, b| a.name.cmp(&b.name));
        units
    }
}

/// Removes every unit of the app from fleet when the test ends, however it
/// ends (the fake goes anyway; a real fleet keeps what it is not told to drop).
struct Cleanup<'a> {
    fleet: &'a Fleet,
    app: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let client = self.fleet.client();
        let ours = [format!("{}@", self.app), format!("{}_discovery@", self.app)];
        self.fleet.runtime.block_on(async {
            for unit in client.units().await.unwrap_or_default() {
                if ours.iter().any(|prefix| unit.name.starts_with(prefix)) {
                    let _ = client.destroy_unit(&unit.name).await;
                }
            }
        });
    }
}

/// A value of the unit's `Environment=` lines.
fn unit_env(unit: &nap_fleet::Unit, key: &str) -> Option<String> {
    unit.options
        .iter()
        .filter(|o| o.section == "Service" && o.name == "Environment")
        .flat_map(|o| o.value.split("\" \""))
        .find_map(|assignment| {
            let assignment = assignment.trim_matches('"');
            assignment
                .strip_prefix(&format!("{key}="))
                .map(str::to_owned)
        })
}

fn option<'a>(unit: &'a nap_fleet::Unit, name: &str) -> Option<&'a str> {
    unit.options
        .iter()
        .find(|o| o.name == name)
        .map(|o| o.value.as_str())
}

fn fetch(nap: &Nap, app: &str, release: &str, token: &str) -> u16 {
    let path = format!("/api/apps/{app}/releases/{release}/tarball");
    let bearer = format!("Bearer {token}");
    http(
        nap.http_port,
        "GET",
        &path,
        &[("Authorization", &bearer)],
        "",
    )
    .map(|(status, _)| status)
    .unwrap_or(0)
}

#[test]
fn a_push_is_fetched_and_run_by_the_machines_and_scale_deletes_the_highest() {
    let fleet = Fleet::start();
    let machines = fleet
        .runtime
        .block_on(fleet.client().machines())
        .expect("fleet lists its machines");
    assert!(!machines.is_empty(), "the fleet reports no machine");
    let scale = machines.len().min(3);
    println!(
        "{} machine(s): a push of scale {scale} must land on {scale} machine(s)",
        machines.len()
    );

    let http_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("nap.yaml");
    std::fs::write(
        &config,
        format!(
            "runtime: fleet\nfleet_endpoint: {}\nfleet_nap_url: http://127.0.0.1:{http_port}\nboot_timeout_secs: 10\n",
            fleet.endpoint
        ),
    )
    .expect("config");
    let nap = Nap::start_on(http_port, &["--config", config.to_str().expect("utf-8")]);
    let app = format!("fleet-e2e-{}", std::process::id());
    let _cleanup = Cleanup {
        fleet: &fleet,
        app: app.clone(),
    };
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.app_repo(
        &app,
        &server_profile(&format!("scale: {scale}\nmemory: 128M\n")),
    );
    let output = alice.push(&repo, &app);
    let (_, pushed) = text(&output);
    let journals = || match &fleet.fake {
        Some(fake) => fleet
            .units(&app)
            .iter()
            .map(|u| format!("--- {}:\n{}", u.name, fake.journal(&u.name)))
            .collect::<Vec<_>>()
            .join("\n"),
        None => String::new(),
    };
    assert!(
        output.status.success() && pushed.contains(&format!("{app} v1 deployed")),
        "{pushed}\n{}",
        journals()
    );

    let units = fleet.units(&app);
    assert_eq!(units.len(), scale, "{units:?}");
    let placed: HashSet<&str> = units
        .iter()
        .filter_map(|u| u.machine_id.as_deref())
        .collect();
    assert_eq!(
        placed.len(),
        scale,
        "Conflicts put each on a machine of its own"
    );
    let first = &units[0];
    assert_eq!(
        unit_env(first, "NAP_COMMAND").as_deref(),
        Some("python3 server.py")
    );
    assert!(
        option(first, "Conflicts").is_some_and(|c| c.starts_with(&format!("{app}@v1-"))),
        "{:?}",
        first.options
    );
    assert_eq!(option(first, "MemoryMax"), Some("134217728"));
    assert_eq!(option(first, "DynamicUser"), Some("yes"), "sandboxed");
    assert_eq!(nap.ps(&app).len(), scale);

    if let Some(fake) = &fleet.fake {
        // Each machine fetched the tree with its unit's token and runs it.
        for unit in &units {
            let machine = unit.machine_id.as_deref().expect("placed");
            let instance = unit
                .name
                .strip_prefix(&format!("{app}@"))
                .and_then(|n| n.strip_suffix(".service"))
                .expect("an instance unit");
            let server = fake
                .machine_root(machine)
                .expect("machines run units")
                .join(format!(
                    "var/lib/nap-releases/{app}/{instance}/tree/server.py"
                ));
            assert_eq!(
                std::fs::read_to_string(&server).ok().as_deref(),
                Some(SERVER_PY),
                "{} has the release\n{}",
                server.display(),
                fake.journal(&unit.name)
            );
        }
        assert!(
            !pushed.contains("not listening"),
            "the app runs on the machines:\n{pushed}"
        );
        let host = format!("{app}.localhost");
        let (status, body) =
            http(nap.router_port, "GET", "/", &[("Host", &host)], "").expect("router answers");
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with(&format!("{app}@")), "{body}");
    }

    // The tarball, as a machine fetches it: with the release's token only,
    // while the release deploys or runs.
    let token = unit_env(first, "NAP_TARBALL_TOKEN").expect("a tarball token");
    assert_eq!(fetch(&nap, &app, "v1", &token), 200);
    assert_eq!(fetch(&nap, &app, "v1", "nope"), 401);
    assert_eq!(
        fetch(&nap, &app, "v2", &token),
        404,
        "a release never started"
    );
    assert_eq!(fetch(&nap, "other", "v1", &token), 404, "another app");

    // A second release replaces the first, whose token then opens nothing.
    alice.commit(&repo, &[("NEWS", "v2\n")], "v2");
    let pushed = alice.deploy(&repo, &app);
    assert!(pushed.contains(&format!("{app} v2 deployed")), "{pushed}");
    let units = fleet.units(&app);
    assert!(
        units
            .iter()
            .all(|u| u.name.starts_with(&format!("{app}@v2-"))),
        "{units:?}"
    );
    let token_v2 = unit_env(&units[0], "NAP_TARBALL_TOKEN").expect("a tarball token");
    assert_eq!(fetch(&nap, &app, "v2", &token_v2), 200);
    assert_eq!(fetch(&nap, &app, "v1", &token), 404, "a retired release");
    assert_eq!(fetch(&nap, &app, "v2", &token), 401, "v1's token");

    if let Some(fake) = &fleet.fake {
        // A release whose app dies at once: the deploy fails, and the token
        // its units were given opens nothing afterwards.
        alice.commit(
            &repo,
            &[("profile", &format!("command: exit 3\nscale: {scale}\n"))],
            "v3",
        );
        let output = alice.push(&repo, &app);
        let (_, said) = text(&output);
        assert!(!output.status.success(), "{said}");
        assert!(
            said.contains("deploy of") && said.contains("failed"),
            "{said}"
        );
        let token_v3 = fake
            .requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.body.contains("NAP_RELEASE=v3"))
            .find_map(|r| {
                let (_, rest) = r.body.split_once("NAP_TARBALL_TOKEN=")?;
                Some(rest.split(['\\', '"']).next()?.to_owned())
            })
            .expect("v3's template was submitted");
        assert_eq!(fetch(&nap, &app, "v3", &token_v3), 404, "a failed release");
        assert_eq!(fetch(&nap, &app, "v2", &token_v2), 200, "v2 still runs");
    }

    let output = alice.ssh(&["scale", &app, "1"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let left: Vec<String> = fleet.units(&app).into_iter().map(|u| u.name).collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with(&format!("{app}@v2-1-")),
        "the highest instances were deleted: {left:?}"
    );

    // `ps` says where each instance runs.
    let output = nap.cli(&["ps", &app]);
    let (listed, _) = text(&output);
    let header = listed.lines().next().unwrap_or_default();
    assert!(
        header.contains("MACHINE") && !header.contains("PID"),
        "{listed}"
    );
    let machine = fleet.units(&app)[0].machine_id.clone().expect("placed");
    assert!(
        listed
            .lines()
            .nth(1)
            .is_some_and(|row| row.contains(&machine[..8])),
        "the row names machine {machine}: {listed}"
    );

    // More instances of a release than machines: refused at once, with
    // the numbers, and nothing changes.
    let too_many = machines.len() + 1;
    let output = alice.ssh(&["scale", &app, &too_many.to_string()]);
    let (_, said) = text(&output);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "so {too_many} of them need {too_many} machines, and fleet has {}",
            machines.len()
        )),
        "{said}"
    );
    let after: Vec<String> = fleet.units(&app).into_iter().map(|u| u.name).collect();
    assert_eq!(after, left, "the refused scale changed nothing");

    let output = alice.ssh(&["logs", &app]);
    assert!(
        text(&output).1.contains("journalctl"),
        "{:?}",
        text(&output)
    );

    // destroy leaves nothing of the app in fleet, templates included.
    let output = alice.ssh(&["destroy", &app, "--force"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let ours = [format!("{app}@"), format!("{app}_discovery@")];
    let left: Vec<String> = fleet
        .runtime
        .block_on(fleet.client().units())
        .expect("fleet lists its units")
        .into_iter()
        .map(|u| u.name)
        .filter(|name| ours.iter().any(|prefix| name.starts_with(prefix)))
        .collect();
    assert!(left.is_empty(), "left in fleet: {left:?}");
}
