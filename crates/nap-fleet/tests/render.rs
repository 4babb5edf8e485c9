//! The templates of `deploy/fleet/` as nap renders them.

use nap_fleet::render::{RenderInput, Tarball, Templates, render};
use nap_fleet::unit::{option_values, unit_file_text};

fn input() -> RenderInput {
    RenderInput {
        app: "web".into(),
        release: "v3".into(),
        generation: 1,
        command: "python3 -m http.server $PORT".into(),
        env: vec![("GREETING".into(), "say \"hi\" at 100% \\o/".into())],
        memory: Some(268_435_456),
        tarball: Tarball {
            url: "http://10.0.0.1:8080/api/apps/web/releases/v3/tarball".into(),
            token: "s3cret".into(),
        },
        user: "nap".into(),
        work_dir: "/var/lib/nap/instances".into(),
        node_env_file: "/etc/nap/node.env".into(),
        etcd_endpoints: vec!["http://10.0.0.1:2379".into(), "http://10.0.0.2:2379".into()],
        etcd_api: "/v3".into(),
        etcd_ttl_secs: 60,
        etcd_refresh_secs: 20,
    }
}

/// Renders `input` and checks that each `(section, name, value)` is among
/// the instance unit's options (`"!"` as value: the option is absent).
fn check(input: RenderInput, expected: &[(&str, &str, &str)]) {
    let rendered = render(&Templates::default(), &input).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rendered.instance.name, format!("{}@.service", input.app));
    for (section, name, value) in expected {
        let values = option_values(&rendered.instance.options, section, name);
        if *value == "!" {
            assert!(
                values.is_empty(),
                "[{section}] {name} should be absent: {values:?}"
            );
        } else {
            assert!(
                values.contains(value),
                "[{section}] {name}={value} not in {values:?}\n{}",
                rendered.instance.text
            );
        }
    }
}

#[test]
fn instance_unit() {
    check(
        input(),
        &[
            ("Unit", "Description", "nap app web v3, instance %i"),
            ("Service", "DynamicUser", "yes"),
            ("Service", "User", "nap-web"),
            ("Service", "StateDirectory", "nap-storage/web"),
            (
                "Service",
                "Environment",
                r#""NAP_CONFIG_GREETING=say \"hi\" at 100%% \\o/""#,
            ),
            ("Service", "Environment", r#""NAP_CONFIG=GREETING""#),
            (
                "Service",
                "Environment",
                r#""NAP_APP=web" "NAP_RELEASE=v3" "NAP_UNIT_INSTANCE=%i""#,
            ),
            (
                "Service",
                "Environment",
                r#""NAP_STORAGE=%S/nap-storage/web""#,
            ),
            (
                "Service",
                "Environment",
                r#""NAP_INSTANCE_DIR=%S/nap-releases/web/%i""#,
            ),
            (
                "Service",
                "BindReadOnlyPaths",
                "-%S/nap-releases/web/%i/tree:%t/nap-app",
            ),
            (
                "Service",
                "Environment",
                r#""NAP_TARBALL_URL=http://10.0.0.1:8080/api/apps/web/releases/v3/tarball""#,
            ),
            ("Service", "Environment", r#""NAP_TARBALL_TOKEN=s3cret""#),
            (
                "Service",
                "Environment",
                r#""NAP_COMMAND=python3 -m http.server $PORT""#,
            ),
            ("Service", "MemoryMax", "268435456"),
            ("Service", "MemoryLimit", "268435456"),
            ("Service", "Restart", "on-failure"),
            ("X-Fleet", "Conflicts", "web@v3-*.service"),
            ("Install", "WantedBy", "!"),
        ],
    );
}

#[test]
fn later_sets_conflict_among_themselves() {
    check(
        RenderInput {
            generation: 2,
            ..input()
        },
        &[("X-Fleet", "Conflicts", "web@v3.2-*.service")],
    );
}

#[test]
fn no_memory_limit_is_infinity_and_nap_variables_stay_naps() {
    let env = vec![
        ("PORT".into(), "1".into()),
        ("NAP_APP".into(), "evil".into()),
        ("OK".into(), "1".into()),
    ];
    check(
        RenderInput {
            memory: None,
            env,
            ..input()
        },
        &[
            ("Service", "MemoryMax", "infinity"),
            ("Service", "MemoryLimit", "infinity"),
            ("Service", "Environment", r#""NAP_CONFIG_OK=1""#),
            ("Service", "Environment", r#""NAP_CONFIG=OK""#),
            (
                "Service",
                "Environment",
                r#""NAP_APP=web" "NAP_RELEASE=v3" "NAP_UNIT_INSTANCE=%i""#,
            ),
        ],
    );
    let rendered = render(
        &Templates::default(),
        &RenderInput {
            env: vec![
                ("PORT".into(), "1".into()),
                ("NAP_APP".into(), "evil".into()),
            ],
            ..input()
        },
    )
    .expect("renders");
    assert!(
        !rendered.instance.text.contains("evil") && !rendered.instance.text.contains("PORT=1\"")
    );
}

#[test]
fn no_config_var_reaches_the_commands_that_run_as_root() {
    // Every variable of the unit is seen by every command of it, also by
    // those prefixed with `+`: the app's names must not be among them.
    let rendered = render(
        &Templates::default(),
        &RenderInput {
            env: vec![
                ("LD_PRELOAD".into(), "/tmp/evil.so".into()),
                ("PATH".into(), "/tmp/bin".into()),
            ],
            ..input()
        },
    )
    .expect("renders");
    let names: Vec<String> = option_values(&rendered.instance.options, "Service", "Environment")
        .iter()
        .flat_map(|line| line.split("\" \""))
        .map(|assignment| {
            assignment
                .trim_matches('"')
                .split_once('=')
                .map_or(String::new(), |(name, _)| name.to_owned())
        })
        .collect();
    assert!(
        names.iter().all(|name| name.starts_with("NAP_")),
        "{names:?}"
    );
    assert!(names.contains(&"NAP_CONFIG_LD_PRELOAD".to_owned()));
    assert!(
        option_values(&rendered.instance.options, "Service", "Environment")
            .contains(&r#""NAP_CONFIG=LD_PRELOAD PATH""#)
    );
}

#[test]
fn discovery_sidekick() {
    let rendered = render(&Templates::default(), &input()).expect("renders");
    let sidekick = rendered.discovery.expect("etcd is configured");
    assert_eq!(sidekick.name, "web_discovery@.service");
    let values = |section: &str, name: &str| -> Vec<String> {
        option_values(&sidekick.options, section, name)
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(values("Unit", "BindsTo"), ["web@%i.service"]);
    assert_eq!(values("Unit", "After"), ["web@%i.service"]);
    assert_eq!(values("X-Fleet", "MachineOf"), ["web@%i.service"]);
    assert!(
        values("Service", "Environment").contains(
            &r#""NAP_ETCD_ENDPOINTS=http://10.0.0.1:2379,http://10.0.0.2:2379" "NAP_ETCD_API=/v3""#
                .to_owned()
        )
    );
    assert!(values("Service", "Environment").contains(&"'NAP_ETCD_GRANT={\"TTL\":60}'".to_owned()));
    assert_eq!(values("Service", "EnvironmentFile"), ["-/etc/nap/node.env"]);
    assert_eq!(
        values("Service", "ExecStart").len(),
        1,
        "continuation lines are one option"
    );
    assert!(values("Service", "ExecStop")[0].contains("kv/deleterange"));
    assert!(
        sidekick
            .options
            .iter()
            .all(|o| !o.value.contains('\n') && o.section != "Install")
    );
    // Without etcd there is no sidekick.
    let alone = render(
        &Templates::default(),
        &RenderInput {
            etcd_endpoints: Vec::new(),
            ..input()
        },
    )
    .expect("renders");
    assert!(alone.discovery.is_none());
}

#[test]
fn text_and_options_agree() {
    let rendered = render(&Templates::default(), &input()).expect("renders");
    for unit in [rendered.instance, rendered.discovery.expect("sidekick")] {
        let again =
            nap_fleet::unit::parse_unit_file(&unit_file_text(&unit.options)).expect("parses");
        assert_eq!(again, unit.options, "{}", unit.name);
        let code = unit
            .text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'));
        assert!(
            code.clone().all(|l| !l.contains("{{")),
            "every placeholder filled in {}",
            unit.name
        );
    }
}

#[test]
fn refused_inputs() {
    for (bad, why) in [
        (
            RenderInput {
                app: "Web".into(),
                ..input()
            },
            "DNS label",
        ),
        (
            RenderInput {
                release: "v3-x".into(),
                ..input()
            },
            "letters and digits",
        ),
        (
            RenderInput {
                command: " ".into(),
                ..input()
            },
            "command is empty",
        ),
        (
            RenderInput {
                user: "root; rm".into(),
                ..input()
            },
            "login name",
        ),
        (
            RenderInput {
                work_dir: "relative".into(),
                ..input()
            },
            "absolute path",
        ),
        (
            RenderInput {
                work_dir: "/a b".into(),
                ..input()
            },
            "absolute path",
        ),
        (
            RenderInput {
                etcd_endpoints: vec!["http://x:1\" y".into()],
                ..input()
            },
            "etcd endpoint",
        ),
        (
            RenderInput {
                etcd_api: "/v2".into(),
                ..input()
            },
            "API prefix",
        ),
        (
            RenderInput {
                etcd_refresh_secs: 60,
                ..input()
            },
            "shorter than the TTL",
        ),
        (
            RenderInput {
                env: vec![("A B".into(), "1".into())],
                ..input()
            },
            "config var",
        ),
        (
            RenderInput {
                tarball: Tarball {
                    url: String::new(),
                    token: "t".into(),
                },
                ..input()
            },
            "tarball",
        ),
    ] {
        let error = render(&Templates::default(), &bad)
            .expect_err(why)
            .to_string();
        assert!(error.contains(why), "{error} (wanted {why:?})");
    }
    let with_install = Templates {
        instance: format!(
            "{}\n[Install]\nWantedBy=multi-user.target\n",
            nap_fleet::render::INSTANCE_TEMPLATE
        ),
        ..Templates::default()
    };
    let error = render(&with_install, &input())
        .expect_err("[Install]")
        .to_string();
    assert!(error.contains("[Install]"), "{error}");
    let unknown = Templates {
        instance: "[Unit]\nDescription={{NOPE}}\n".into(),
        ..Templates::default()
    };
    assert!(
        render(&unknown, &input())
            .expect_err("unknown")
            .to_string()
            .contains("unknown placeholder {{NOPE}}")
    );
}

#[test]
fn templates_on_disk_are_the_built_in_ones() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/fleet");
    assert_eq!(
        Templates::load(&dir).expect("deploy/fleet"),
        Templates::default()
    );
}
