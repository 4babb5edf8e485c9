//! The fleet API client's contract: every fact of `shared/FLEET.md`, run
//! against the in-repo fake, or against the fleetd that
//! `NAP_FLEET_ENDPOINT` names (same tests). Tests that cannot be done to a
//! real fleetd without harming it say so and do only their safe part.

use nap_fleet::fake::{FakeOptions, UNREGISTERED_MESSAGE};
use nap_fleet::{DesiredState, FleetError, RetryPolicy, StateFilter, TemplateChange, UnitOption};

use crate::harness::{FleetUnderTest, fleet_under_test, raw};

fn small_pages() -> FakeOptions {
    FakeOptions {
        page_size: 2,
        ..FakeOptions::default()
    }
}

/// A harmless unit: it sleeps.
fn sleeper() -> Vec<UnitOption> {
    vec![
        UnitOption::new("Unit", "Description", "nap contract test unit"),
        UnitOption::new("Service", "ExecStart", "/bin/sleep 600"),
    ]
}

async fn cleanup(fleet: &FleetUnderTest, names: &[String]) {
    let client = fleet.client();
    for name in names {
        let _ = client.destroy_unit(name).await;
    }
}

fn refused(error: &FleetError) -> (u16, &str) {
    match error {
        FleetError::Refused {
            status, message, ..
        } => (*status, message.as_str()),
        other => panic!("expected fleet to refuse, got {other}"),
    }
}

#[tokio::test]
async fn put_needs_content_type_application_json() {
    let fleet = fleet_under_test("ctype", FakeOptions::default()).await;
    let name = fleet.name("ctype");
    let body = serde_json::json!({"name": name, "options": sleeper(), "desiredState": "inactive"})
        .to_string();
    let path = format!("/fleet/v1/units/{name}");
    let without = raw(&fleet.endpoint, "PUT", &path, &[], &body).await;
    assert_eq!(without.status, 415, "{without:?}");
    assert_eq!(without.json()["error"]["code"], 415);
    let text = raw(
        &fleet.endpoint,
        "PUT",
        &path,
        &[("Content-Type", "text/plain")],
        &body,
    )
    .await;
    assert_eq!(text.status, 415, "{text:?}");
    assert_eq!(
        text.json()["error"]["message"],
        "only acceptable Content-Type is application/json"
    );
    // The client sends it, and a charset parameter is fine too.
    let with_charset = raw(
        &fleet.endpoint,
        "PUT",
        &path,
        &[("Content-Type", "application/json; charset=utf-8")],
        &body,
    )
    .await;
    assert_eq!(with_charset.status, 201, "{with_charset:?}");
    fleet
        .client()
        .create_unit(&name, &sleeper(), DesiredState::Inactive)
        .await
        .expect("same unit again");
    if let Some(fake) = &fleet.fake {
        let puts: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT")
            .collect();
        let last = puts.last().expect("the client's PUT");
        assert_eq!(last.content_types, vec!["application/json".to_owned()]);
    }
    cleanup(&fleet, &[name]).await;
}

#[tokio::test]
async fn a_new_unit_needs_options() {
    let fleet = fleet_under_test("noopts", FakeOptions::default()).await;
    let name = fleet.name("noopts");
    let error = fleet
        .client()
        .set_desired_state(&name, DesiredState::Launched)
        .await
        .expect_err("409");
    assert_eq!(
        refused(&error),
        (409, "unit does not exist and options field empty")
    );
    assert_eq!(
        fleet.client().unit(&name).await.expect("GET"),
        None,
        "nothing was made"
    );
}

#[tokio::test]
async fn desired_state_alone_updates_an_existing_unit() {
    let fleet = fleet_under_test("update", FakeOptions::default()).await;
    let client = fleet.client();
    let name = fleet.name("update");
    client
        .create_unit(&name, &sleeper(), DesiredState::Inactive)
        .await
        .expect("201");
    let body = serde_json::json!({"desiredState": "inactive"}).to_string();
    let reply = raw(
        &fleet.endpoint,
        "PUT",
        &format!("/fleet/v1/units/{name}"),
        &[("Content-Type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    client
        .set_desired_state(&name, DesiredState::Loaded)
        .await
        .expect("204");
    let unit = client.unit(&name).await.expect("GET").expect("exists");
    assert_eq!(unit.desired_state, Some(DesiredState::Loaded));
    assert_eq!(unit.options, sleeper());
    cleanup(&fleet, &[name]).await;
}

#[tokio::test]
async fn other_options_replace_the_unit() {
    let fleet = fleet_under_test("replace", FakeOptions::default()).await;
    let client = fleet.client();
    let name = fleet.name("replace");
    client
        .create_unit(&name, &sleeper(), DesiredState::Inactive)
        .await
        .expect("201");
    let mut other = sleeper();
    other[0].value = "nap contract test unit, second version".into();
    let body =
        serde_json::json!({"name": name, "options": other, "desiredState": "inactive"}).to_string();
    let reply = raw(
        &fleet.endpoint,
        "PUT",
        &format!("/fleet/v1/units/{name}"),
        &[("Content-Type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(
        client
            .unit(&name)
            .await
            .expect("GET")
            .expect("exists")
            .options,
        other
    );
    cleanup(&fleet, &[name]).await;
}

#[tokio::test]
async fn bad_requests_are_400() {
    let fleet = fleet_under_test("bad", FakeOptions::default()).await;
    let client = fleet.client();
    let name = fleet.name("bad");
    // A body name other than the URL's.
    let body = serde_json::json!({"name": "other.service", "options": sleeper(), "desiredState": "inactive"});
    let reply = raw(
        &fleet.endpoint,
        "PUT",
        &format!("/fleet/v1/units/{name}"),
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
    .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("differs"),
        "{reply:?}"
    );
    // Bad unit names.
    for bad in [
        format!("{}-x.nonsense", fleet.prefix),
        format!("{}-a%20b.service", fleet.prefix),
    ] {
        let error = client
            .create_unit(&bad, &sleeper(), DesiredState::Inactive)
            .await
            .expect_err("400");
        assert_eq!(refused(&error).0, 400, "{bad}: {error}");
    }
    // Requirements that cannot be met: a peer that it conflicts with.
    let mut impossible = sleeper();
    impossible.push(UnitOption::new("X-Fleet", "MachineOf", "peer@1.service"));
    impossible.push(UnitOption::new("X-Fleet", "Conflicts", "peer@*.service"));
    let error = client
        .create_unit(&name, &impossible, DesiredState::Inactive)
        .await
        .expect_err("400");
    let (status, message) = refused(&error);
    assert_eq!(status, 400);
    assert!(
        message.starts_with("unresolvable requirements"),
        "{message}"
    );
    assert_eq!(client.unit(&name).await.expect("GET"), None);
}

#[tokio::test]
async fn desired_state_is_validated_by_the_client() {
    let fleet = fleet_under_test("bogus", FakeOptions::default()).await;
    // The client cannot even express another state…
    let error = "bogus".parse::<DesiredState>().expect_err("not a state");
    assert_eq!(
        error.to_string(),
        "\"bogus\" is not a fleet unit state (inactive, loaded or launched)"
    );
    for state in ["inactive", "loaded", "launched"] {
        assert_eq!(
            state.parse::<DesiredState>().expect("valid").as_str(),
            state
        );
    }
    // …because fleet stores it and breaks the unit for good.
    let Some(fake) = &fleet.fake else {
        println!(
            "not sending a bogus desiredState to a real fleetd: the unit could never be deleted again"
        );
        return;
    };
    let client = fleet.client();
    let name = fleet.name("bogus");
    client
        .create_unit(&name, &sleeper(), DesiredState::Inactive)
        .await
        .expect("201");
    let path = format!("/fleet/v1/units/{name}");
    let json = [("Content-Type", "application/json")];
    let reply = raw(
        &fleet.endpoint,
        "PUT",
        &path,
        &json,
        r#"{"desiredState":"bogus"}"#,
    )
    .await;
    assert_eq!(reply.status, 204, "fleet takes it: {reply:?}");
    let get = raw(&fleet.endpoint, "GET", &path, &[], "").await;
    assert_eq!(
        (get.status, get.json()["error"]["message"].as_str()),
        (500, Some("")),
        "{get:?}"
    );
    let error = client.unit(&name).await.expect_err("500");
    assert_eq!(refused(&error), (500, ""));
    assert!(
        error.to_string().ends_with("500 (fleet gave no message)"),
        "{error}"
    );
    assert_eq!(
        refused(&client.destroy_unit(&name).await.expect_err("500")).0,
        500
    );
    assert_eq!(
        refused(
            &client
                .set_desired_state(&name, DesiredState::Inactive)
                .await
                .expect_err("500")
        )
        .0,
        500
    );
    // The client never sent anything but the three states.
    for request in fake
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && !r.body.contains("bogus"))
    {
        let body: serde_json::Value = serde_json::from_str(&request.body).expect("JSON");
        let state = body["desiredState"].as_str().expect("always sent");
        assert!(
            ["inactive", "loaded", "launched"].contains(&state),
            "{request:?}"
        );
    }
}

#[tokio::test]
async fn templates_are_expanded_by_the_client() {
    let fleet = fleet_under_test("template", FakeOptions::default()).await;
    let client = fleet.client();
    let template = format!("{}-web@.service", fleet.prefix);
    let instance = format!("{}-web@1.service", fleet.prefix);
    let mut options = sleeper();
    options.push(UnitOption::new(
        "X-Fleet",
        "Conflicts",
        &format!("{}-web@*.service", fleet.prefix),
    ));
    let error = client
        .launch_instance(&instance, DesiredState::Inactive)
        .await
        .expect_err("no template yet");
    assert!(matches!(error, FleetError::NoTemplate { .. }), "{error}");

    assert_eq!(
        client
            .submit_template(&template, &options)
            .await
            .expect("stored"),
        TemplateChange::Stored
    );
    assert_eq!(
        client
            .submit_template(&template, &options)
            .await
            .expect("same"),
        TemplateChange::Unchanged
    );
    let stored = client.unit(&template).await.expect("GET").expect("exists");
    assert_eq!(stored.desired_state, Some(DesiredState::Inactive));

    // Launching the template itself is refused.
    for state in [DesiredState::Launched, DesiredState::Loaded] {
        let error = client
            .set_desired_state(&template, state)
            .await
            .expect_err("400");
        assert_eq!(
            refused(&error),
            (
                400,
                format!("cannot activate template {template:?}").as_str()
            )
        );
    }

    // The instance is PUT with the template's options.
    let unit = client
        .launch_instance(&instance, DesiredState::Inactive)
        .await
        .expect("expanded");
    assert_eq!(unit.options, options);
    let read = client.unit(&instance).await.expect("GET").expect("exists");
    assert_eq!(read.options, options);
    if let Some(fake) = &fleet.fake {
        let requests = fake.requests();
        let get = requests
            .iter()
            .rposition(|r| r.method == "GET" && r.path.ends_with(&template));
        let put = requests
            .iter()
            .rposition(|r| r.method == "PUT" && r.path.ends_with(&instance));
        assert!(
            get.is_some() && get < put,
            "GET of the template, then PUT of the instance: {requests:?}"
        );
    }
    cleanup(&fleet, &[instance, template]).await;
}

#[tokio::test]
async fn delete_removes_and_404_means_already_gone() {
    let fleet = fleet_under_test("delete", FakeOptions::default()).await;
    let client = fleet.client();
    let name = fleet.name("delete");
    client
        .create_unit(&name, &sleeper(), DesiredState::Inactive)
        .await
        .expect("201");
    assert!(
        client.destroy_unit(&name).await.expect("204"),
        "it was there"
    );
    assert!(
        !client.destroy_unit(&name).await.expect("404 is fine"),
        "already gone"
    );
    assert_eq!(client.unit(&name).await.expect("GET"), None);
    let reply = raw(
        &fleet.endpoint,
        "DELETE",
        &format!("/fleet/v1/units/{name}"),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, 404);
    let error = reply.json();
    assert_eq!(error["error"]["code"], 404, "fleet's error body: {error}");
    assert!(error["error"]["message"].is_string(), "{error}");
}

#[tokio::test]
async fn pages_follow_tokens_to_the_empty_end() {
    // "0pages" sorts before the other tests' units, so their deletions do
    // not shift these pages.
    let fleet = fleet_under_test("0pages", small_pages()).await;
    let client = fleet.client();
    // An empty collection is `{}`: no unit has this name.
    let none = raw(
        &fleet.endpoint,
        "GET",
        &format!("/fleet/v1/state?unitName={}", fleet.name("none")),
        &[],
        "",
    )
    .await;
    assert_eq!((none.status, none.body.trim()), (200, "{}"));
    let filter = StateFilter {
        unit_name: Some(fleet.name("none")),
        machine_id: None,
    };
    assert_eq!(
        client.states(&filter).await.expect("empty is fine"),
        Vec::new()
    );
    if fleet.is_fake() {
        let units = raw(&fleet.endpoint, "GET", "/fleet/v1/units", &[], "").await;
        assert_eq!(units.body.trim(), "{}", "no units at all");
        assert_eq!(client.units().await.expect("none"), Vec::new());
    }

    // Two full pages of our own units (plus whatever else a real fleet has).
    let names: Vec<String> = (0..2 * fleet.page_size)
        .map(|i| fleet.name(&format!("page{i:04}")))
        .collect();
    for name in &names {
        client
            .create_unit(name, &sleeper(), DesiredState::Inactive)
            .await
            .expect("201");
    }
    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let path = match &token {
            Some(token) => format!("/fleet/v1/units?nextPageToken={token}"),
            None => "/fleet/v1/units".to_owned(),
        };
        let reply = raw(&fleet.endpoint, "GET", &path, &[], "").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let body = reply.json();
        let units = body
            .get("units")
            .and_then(|u| u.as_array())
            .cloned()
            .unwrap_or_default();
        pages += 1;
        seen.extend(
            units
                .iter()
                .filter_map(|u| u["name"].as_str().map(str::to_owned)),
        );
        match body.get("nextPageToken").and_then(|t| t.as_str()) {
            Some(next) => {
                assert_eq!(units.len(), fleet.page_size, "only full pages have a token");
                token = Some(next.to_owned());
            }
            None => {
                if units.is_empty() {
                    assert_eq!(
                        reply.body.trim(),
                        "{}",
                        "the page after a full last page is {{}}"
                    );
                }
                break;
            }
        }
    }
    for name in &names {
        assert!(seen.contains(name), "{name} on some page");
    }
    if fleet.is_fake() {
        assert_eq!(pages, 3, "2 full pages and {{}}");
    }
    let listed = client.units().await.expect("every page");
    assert_eq!(
        listed.iter().filter(|u| names.contains(&u.name)).count(),
        names.len()
    );
    // One more makes the last page partial: no token on it.
    let odd = fleet.name("page-odd");
    client
        .create_unit(&odd, &sleeper(), DesiredState::Inactive)
        .await
        .expect("201");
    let listed = client.units().await.expect("every page");
    assert!(listed.iter().any(|u| u.name == odd));
    if fleet.is_fake() {
        let third = client
            .units_page(Some(
                &client
                    .units_page(None)
                    .await
                    .expect("1")
                    .next_page_token
                    .expect("token"),
            ))
            .await
            .expect("2");
        let last = client
            .units_page(third.next_page_token.as_deref())
            .await
            .expect("3");
        assert_eq!((last.items.len(), last.next_page_token), (1, None));
    }
    // A token that fleet did not make is 400.
    let bad = raw(
        &fleet.endpoint,
        "GET",
        "/fleet/v1/units?nextPageToken=AAAAAA==",
        &[],
        "",
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    let mut all = names;
    all.push(odd);
    cleanup(&fleet, &all).await;
}

#[tokio::test]
async fn machines_and_unit_states() {
    let fleet = fleet_under_test("states", FakeOptions::default()).await;
    let client = fleet.client();
    let machines = client.machines().await.expect("machines");
    assert!(!machines.is_empty(), "a cluster has machines");
    for machine in &machines {
        assert!(
            !machine.id.is_empty() && !machine.primary_ip.is_empty(),
            "{machine:?}"
        );
    }
    let name = fleet.name("states");
    client
        .create_unit(&name, &sleeper(), DesiredState::Launched)
        .await
        .expect("201");
    let filter = StateFilter {
        unit_name: Some(name.clone()),
        machine_id: None,
    };
    let state = crate::harness::eventually(std::time::Duration::from_secs(30), || async {
        client
            .states(&filter)
            .await
            .ok()?
            .into_iter()
            .find(|s| s.systemd_active_state == "active")
    })
    .await
    .expect("the unit runs");
    assert!(
        machines.iter().any(|m| m.id == state.machine_id),
        "{state:?}"
    );
    assert_eq!(state.systemd_load_state, "loaded");
    let unit = client.unit(&name).await.expect("GET").expect("exists");
    assert_eq!(unit.machine_id.as_deref(), Some(state.machine_id.as_str()));
    assert_eq!(unit.current_state, Some(DesiredState::Launched));
    let on_machine = StateFilter {
        machine_id: Some(state.machine_id.clone()),
        unit_name: None,
    };
    assert!(
        client
            .states(&on_machine)
            .await
            .expect("states")
            .iter()
            .any(|s| s.name == name)
    );
    cleanup(&fleet, &[name]).await;
}

#[tokio::test]
async fn retries_while_fleet_answers_503() {
    let fleet = fleet_under_test("503", FakeOptions::default()).await;
    let Some(fake) = &fleet.fake else {
        println!(
            "a running fleetd cannot be made to answer 503; the retry is tested against the fake only"
        );
        return;
    };
    fake.unregister_for(3);
    let quick = RetryPolicy {
        attempts: 5,
        first_delay: std::time::Duration::from_millis(10),
        max_delay: std::time::Duration::from_millis(40),
    };
    let machines = fleet
        .client()
        .with_retry(quick)
        .machines()
        .await
        .expect("after 3 refusals");
    assert!(!machines.is_empty());
    fake.unregister_for(10);
    let error = fleet
        .client()
        .with_retry(RetryPolicy {
            attempts: 2,
            ..quick
        })
        .units()
        .await
        .expect_err("503");
    assert_eq!(error.status(), Some(503));
    assert_eq!(error.message(), Some(UNREGISTERED_MESSAGE));
    assert!(error.to_string().contains("after 2 attempts"), "{error}");
}

#[tokio::test]
async fn unix_socket_endpoints() {
    if std::env::var("NAP_FLEET_ENDPOINT").is_ok_and(|e| !e.is_empty()) {
        println!("fleet API: NAP_FLEET_ENDPOINT is set; the unix-socket fake is not needed");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("fleet.sock");
    let fake = nap_fleet::fake::FakeFleet::start_unix(&socket, FakeOptions::default())
        .await
        .expect("fake");
    println!(
        "fleet API: in-repo fake (no real fleetd here) on {}",
        fake.endpoint()
    );
    let client =
        nap_fleet::FleetClient::new(&format!("unix://{}", socket.display())).expect("endpoint");
    assert_eq!(client.machines().await.expect("machines").len(), 3);
    client
        .create_unit("unix-test.service", &sleeper(), DesiredState::Inactive)
        .await
        .expect("201");
    assert!(client.destroy_unit("unix-test.service").await.expect("204"));
}
