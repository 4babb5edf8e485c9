//! `parse`: each case is a profile and what a pusher would see.

use nap_profile::{Limits, parse};

/// Parses `input` as the file `profile` and compares a rendering of the
/// outcome with `expected`: on success `command=.. scale=.. memory=..`
/// (then `build=..`, `release=..`, `healthcheck=..`, `healthcheck_timeout=..`
/// for those that are given), followed by one `warning: ..` line per
/// warning, on failure the error's one-line Display.
fn check(input: &str, expected: &str) {
    check_with(&Limits::default(), input, expected);
}

fn check_with(limits: &Limits, input: &str, expected: &str) {
    let actual = match parse("profile", input, limits) {
        Ok(parsed) => {
            let profile = parsed.profile;
            let mut out = format!(
                "command={:?} scale={:?} memory={:?}",
                profile.command, profile.scale, profile.memory
            );
            if let Some(build) = &profile.build {
                out.push_str(&format!(" build={build:?}"));
            }
            if let Some(release) = &profile.release {
                out.push_str(&format!(" release={release:?}"));
            }
            if let Some(path) = &profile.healthcheck {
                out.push_str(&format!(" healthcheck={path:?}"));
            }
            if let Some(seconds) = profile.healthcheck_timeout {
                out.push_str(&format!(" healthcheck_timeout={seconds}"));
            }
            for warning in parsed.warnings {
                out.push_str(&format!("\nwarning: {warning}"));
            }
            out
        }
        Err(error) => {
            let rendered = error.to_string();
            assert!(!rendered.contains('\n'), "not one line: {rendered:?}");
            assert!(error.line() >= 1 && error.column() >= 1, "{rendered}");
            assert!(
                rendered.starts_with(&format!("profile:{}:{}: ", error.line(), error.column())),
                "{rendered}"
            );
            rendered
        }
    };
    assert_eq!(actual, expected, "input: {input:?}");
}

#[test]
fn valid_profiles() {
    let cases: &[(&str, &str)] = &[
        (
            "command: python3 -m http.server $PORT   # required\nscale: 3\nmemory: 256M\n",
            "command=\"python3 -m http.server $PORT\" scale=Some(3) memory=Some(268435456)",
        ),
        ("command: ./run", "command=\"./run\" scale=None memory=None"),
        (
            "# The web app.\n\ncommand: ./web   # starts one instance\n\n# Three of them.\nscale: 3 # more later\n",
            "command=\"./web\" scale=Some(3) memory=None",
        ),
        (
            "command: 'bundle exec puma -p $PORT'\nscale: \"2\"\nmemory: \"512M\"\n",
            "command=\"bundle exec puma -p $PORT\" scale=Some(2) memory=Some(536870912)",
        ),
        (
            "command: \"echo \\\"hi\\\" # not a comment: really\"\n",
            "command=\"echo \\\"hi\\\" # not a comment: really\" scale=None memory=None",
        ),
        (
            "command: x\nscale: 0\n",
            "command=\"x\" scale=Some(0) memory=None",
        ),
        (
            "command: x\nscale: 64\n",
            "command=\"x\" scale=Some(64) memory=None",
        ),
        (
            "command: x\nscale: 007\n",
            "command=\"x\" scale=Some(7) memory=None",
        ),
        // Null or nothing means "not given".
        (
            "command: x\nscale:\nmemory: ~\n",
            "command=\"x\" scale=None memory=None",
        ),
        (
            "command: x\nscale: null\nmemory:   # later\n",
            "command=\"x\" scale=None memory=None",
        ),
        // Memory forms.
        (
            "command: x\nmemory: 64m",
            "command=\"x\" scale=None memory=Some(67108864)",
        ),
        (
            "command: x\nmemory: 64MB",
            "command=\"x\" scale=None memory=Some(67108864)",
        ),
        (
            "command: x\nmemory: 64mib",
            "command=\"x\" scale=None memory=Some(67108864)",
        ),
        (
            "command: x\nmemory: 1g",
            "command=\"x\" scale=None memory=Some(1073741824)",
        ),
        (
            "command: x\nmemory: 1.5G",
            "command=\"x\" scale=None memory=Some(1610612736)",
        ),
        (
            "command: x\nmemory: 4096k",
            "command=\"x\" scale=None memory=Some(4194304)",
        ),
        (
            "command: x\nmemory: 4194304",
            "command=\"x\" scale=None memory=Some(4194304)",
        ),
        (
            "command: x\nmemory: 1T",
            "command=\"x\" scale=None memory=Some(1099511627776)",
        ),
        // Block scalars are kept as written.
        (
            "command: |\n  cd web\n  exec ./server\nscale: 1\n",
            "command=\"cd web\\nexec ./server\\n\" scale=Some(1) memory=None",
        ),
        (
            "command: >-\n  python3 -m\n  http.server $PORT\n",
            "command=\"python3 -m http.server $PORT\" scale=None memory=None",
        ),
        // Other scalars are commands as written.
        ("command: true", "command=\"true\" scale=None memory=None"),
        ("command: 5", "command=\"5\" scale=None memory=None"),
        // Document markers, CRLF line endings, anchors.
        (
            "%YAML 1.2\n---\ncommand: x\nscale: 2\n...\n",
            "command=\"x\" scale=Some(2) memory=None",
        ),
        (
            "command: ./run\r\nscale: 2\r\nmemory: 1G\r\n",
            "command=\"./run\" scale=Some(2) memory=Some(1073741824)",
        ),
        (
            "command: &cmd ./run\nscale: 1\nnote: *cmd\n",
            "command=\"./run\" scale=Some(1) memory=None\nwarning: profile:3:1: unknown key 'note' (known keys: command, scale, memory, build, release, healthcheck, healthcheck_timeout)",
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn unknown_keys_are_warnings() {
    let cases: &[(&str, &str)] = &[
        (
            "command: x\nscael: 3\n",
            "command=\"x\" scale=None memory=None\nwarning: profile:2:1: unknown key 'scael' (did you mean 'scale'?)",
        ),
        (
            "command: x\nmem: 1G\nfoo: bar\nMemory: 2G\n",
            "command=\"x\" scale=None memory=None\n\
             warning: profile:2:1: unknown key 'mem' (did you mean 'memory'?)\n\
             warning: profile:3:1: unknown key 'foo' (known keys: command, scale, memory, build, release, healthcheck, healthcheck_timeout)\n\
             warning: profile:4:1: unknown key 'Memory' (did you mean 'memory'?)",
        ),
        (
            "command: x\n5: five\nenv: {A: 1}\n",
            "command=\"x\" scale=None memory=None\n\
             warning: profile:2:1: unknown key '5' (known keys: command, scale, memory, build, release, healthcheck, healthcheck_timeout)\n\
             warning: profile:3:1: unknown key 'env' (known keys: command, scale, memory, build, release, healthcheck, healthcheck_timeout)",
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn invalid_profiles() {
    let cases: &[(&str, &str)] = &[
        // Malformed YAML.
        (
            "command: [unclosed",
            "profile:1:10: malformed YAML: unclosed bracket '['",
        ),
        (
            "command: \"open",
            "profile:1:10: malformed YAML: unclosed quote",
        ),
        (
            "command: a: b",
            "profile:1:11: malformed YAML: mapping values are not allowed in this context",
        ),
        (
            "command: a\n\tscale: 1\n",
            "profile:1:10: malformed YAML: while scanning a plain scalar, found a tab",
        ),
        (
            "command: x\n---\ncommand: y\n",
            "profile:3:1: malformed YAML: a profile is one YAML document, found a second one",
        ),
        (
            "base: &b {scale: 1}\n<<: *b\ncommand: x\n",
            "profile:2:1: malformed YAML: YAML merge keys are not allowed by configured policy",
        ),
        // The top level.
        (
            "",
            "profile:1:1: profile is empty; it needs at least 'command: <the shell command that starts one instance>'",
        ),
        (
            "# nothing yet\n",
            "profile:1:1: profile is empty; it needs at least 'command: <the shell command that starts one instance>'",
        ),
        (
            "- command: x\n- scale: 1\n",
            "profile:1:1: expected 'key: value' lines like 'command: ...', found a list",
        ),
        (
            "python3 -m http.server",
            "profile:1:1: expected 'key: value' lines like 'command: ...', found the single value 'python3 -m http.server'",
        ),
        (
            "\tcommand: x\n",
            "profile:1:2: key 'command' must start at the beginning of the line (YAML does not allow tabs for indentation)",
        ),
        (
            "  command: x\n  scale: 1\n",
            "profile:1:3: key 'command' must start at the beginning of the line",
        ),
        (
            "{command: x}",
            "profile:1:2: key 'command' must start at the beginning of the line",
        ),
        (
            "command: x\n? [a, b]\n: c\n",
            "profile:2:3: expected a key name like 'command', found a list",
        ),
        (
            "command: x\nscale: 1\nscale: 2\n",
            "profile:3:1: duplicate key 'scale' (first given on line 2)",
        ),
        (
            "command: x\nfoo: 1\nfoo: 2\n",
            "profile:3:1: duplicate key 'foo' (first given on line 2)",
        ),
        // command.
        (
            "scale: 1\nmemory: 1G\n",
            "profile:1:1: missing required key 'command' (the shell command that starts one instance)",
        ),
        (
            "scale: 1\ncomand: ./run\n",
            "profile:2:1: missing required key 'command' (the shell command that starts one instance); is 'comand' a misspelling of it?",
        ),
        (
            "command:\nscale: 1\n",
            "profile:1:8: command: expected the shell command that starts one instance, found nothing",
        ),
        (
            "command: ''\n",
            "profile:1:10: command: expected the shell command that starts one instance, found an empty string",
        ),
        (
            "command: \"  \\t\"\n",
            "profile:1:10: command: expected the shell command that starts one instance, found only whitespace '  \\t'",
        ),
        (
            "command: [python3, app.py]\n",
            "profile:1:10: command: expected the shell command that starts one instance, found a list",
        ),
        (
            "command:\n  run: x\n",
            "profile:2:3: command: expected the shell command that starts one instance, found a mapping",
        ),
        (
            "command: \"echo \\0\"\n",
            "profile:1:10: command: contains a NUL character, which a shell command cannot hold",
        ),
        // scale.
        (
            "command: x\nscale: -1",
            "profile:2:8: scale: expected a whole number from 0 to 64, found '-1'",
        ),
        (
            "command: x\nscale: lots",
            "profile:2:8: scale: expected a whole number from 0 to 64, found 'lots'",
        ),
        (
            "command: x\nscale: 1.5",
            "profile:2:8: scale: expected a whole number from 0 to 64, found '1.5'",
        ),
        (
            "command: x\nscale: 65",
            "profile:2:8: scale: expected a whole number from 0 to 64, found '65'",
        ),
        (
            "command: x\nscale: 99999999999",
            "profile:2:8: scale: expected a whole number from 0 to 64, found '99999999999'",
        ),
        (
            "command: x\nscale: 0x10",
            "profile:2:8: scale: expected a whole number from 0 to 64, found '0x10'",
        ),
        (
            "command: x\nscale: true",
            "profile:2:8: scale: expected a whole number from 0 to 64, found 'true'",
        ),
        (
            "command: x\nscale: ''",
            "profile:2:8: scale: expected a whole number from 0 to 64, found an empty string",
        ),
        (
            "command: x\nscale: [3]",
            "profile:2:8: scale: expected a whole number from 0 to 64, found a list",
        ),
        // memory.
        (
            "command: x\nscale: 1\nmemory: 12Q",
            "profile:3:9: memory: expected a size like 256M (K, M or G), found '12Q'",
        ),
        (
            "command: x\nmemory: 0",
            "profile:2:9: memory: '0' is too small to start a process; the minimum is 4M",
        ),
        (
            "command: x\nmemory: 1M",
            "profile:2:9: memory: '1M' is too small to start a process; the minimum is 4M",
        ),
        (
            "command: x\nmemory: -5M",
            "profile:2:9: memory: expected a size like 256M (K, M or G), found '-5M'",
        ),
        (
            "command: x\nmemory: 256 M",
            "profile:2:9: memory: expected a size like 256M (K, M or G), found '256 M'",
        ),
        (
            "command: x\nmemory: 2T",
            "profile:2:9: memory: '2T' is more than the maximum of 1T",
        ),
        (
            "command: x\nmemory: 99999999999999999999999G",
            "profile:2:9: memory: '99999999999999999999999G' is more than the maximum of 1T",
        ),
        (
            "command: x\nmemory: {limit: 1G}",
            "profile:2:9: memory: expected a size like 256M (K, M or G), found a mapping",
        ),
        // The first problem in file order wins.
        (
            "scale: lots\nmemory: 12Q\n",
            "profile:1:8: scale: expected a whole number from 0 to 64, found 'lots'",
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn max_scale_comes_from_the_limits() {
    let limits = Limits { max_scale: 200 };
    check_with(
        &limits,
        "command: x\nscale: 200",
        "command=\"x\" scale=Some(200) memory=None",
    );
    check_with(
        &limits,
        "command: x\nscale: 201",
        "profile:2:8: scale: expected a whole number from 0 to 200, found '201'",
    );
    let none = Limits { max_scale: 0 };
    check_with(
        &none,
        "command: x\nscale: 0",
        "command=\"x\" scale=Some(0) memory=None",
    );
    check_with(
        &none,
        "command: x\nscale: 1",
        "profile:2:8: scale: expected a whole number from 0 to 0, found '1'",
    );
}

#[test]
fn long_values_stay_on_one_short_line() {
    let long = "x".repeat(5000);
    check(
        &format!("command: {long}\n"),
        "profile:1:10: command: is 5000 bytes long; the limit is 4096 bytes",
    );
    check(
        &format!("command: x\nscale: {long}\n"),
        &format!(
            "profile:2:8: scale: expected a whole number from 0 to 64, found '{}...'",
            "x".repeat(60)
        ),
    );
    check(
        "command: x\nscale: |\n  line one\n  line two\n",
        "profile:3:3: scale: expected a whole number from 0 to 64, found 'line one\\nline two\\n'",
    );
}

#[test]
fn hostile_input_is_rejected_cheaply() {
    let huge = format!("command: x\n# {}\n", "a".repeat(64 * 1024));
    check(
        &huge,
        "profile:1:1: profile is larger than 64 KiB (65550 bytes)",
    );

    let deep = format!("command: x\nnested: {}{}\n", "[".repeat(40), "]".repeat(40));
    check(
        &deep,
        "profile:2:24: profile is too complex: lists and mappings nest deeper than 16 levels",
    );

    // "Billion laughs": each line expands to ten of the line before.
    let mut laughs =
        String::from("command: x\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let previous = format!("*a{}", level - 1);
        let list = [previous.as_str(); 10].join(", ");
        laughs.push_str(&format!("a{level}: &a{level} [{list}]\n"));
    }
    let error = parse("profile", &laughs, &Limits::default()).unwrap_err();
    assert!(
        error.to_string().contains("profile is too complex"),
        "{error}"
    );
}

#[test]
fn errors_name_their_key() {
    for (input, key) in [
        ("command: x\nscale: lots", Some("scale")),
        ("command: x\nmemory: 12Q", Some("memory")),
        ("scale: 1", Some("command")),
        ("command: ''", Some("command")),
        ("command: x\nscale: 1\nscale: 1", Some("scale")),
        ("command: [x", None),
        ("command: x\nbuild: [make]", Some("build")),
        ("command: x\nrelease: ''", Some("release")),
        ("command: x\nhealthcheck: up", Some("healthcheck")),
        (
            "command: x\nhealthcheck_timeout: soon",
            Some("healthcheck_timeout"),
        ),
    ] {
        let error = parse("profile", input, &Limits::default()).unwrap_err();
        assert_eq!(error.key(), key, "{error}");
    }
}

#[test]
fn pipeline_keys() {
    let cases: &[(&str, &str)] = &[
        (
            "command: ./web\nbuild: make assets\nrelease: python3 manage.py migrate\nhealthcheck: /healthz\nhealthcheck_timeout: 30s\n",
            "command=\"./web\" scale=None memory=None build=\"make assets\" release=\"python3 manage.py migrate\" healthcheck=\"/healthz\" healthcheck_timeout=30",
        ),
        (
            "command: ./web\nhealthcheck: /status?full=1\nhealthcheck_timeout: 600\n",
            "command=\"./web\" scale=None memory=None healthcheck=\"/status?full=1\" healthcheck_timeout=600",
        ),
        // `true` skips the detected build; null means "not given".
        (
            "command: ./web\nbuild: true\nrelease: ~\nhealthcheck:\n",
            "command=\"./web\" scale=None memory=None build=\"true\"",
        ),
        (
            "command: ./web\nhealthcheck_timeout: 5\n",
            "command=\"./web\" scale=None memory=None healthcheck_timeout=5\n\
             warning: profile:2:1: healthcheck_timeout has no effect without healthcheck",
        ),
        (
            "command: ./web\nhealthchek: /up\n",
            "command=\"./web\" scale=None memory=None\n\
             warning: profile:2:1: unknown key 'healthchek' (did you mean 'healthcheck'?)",
        ),
        (
            "command: ./web\nbuidl: make\n",
            "command=\"./web\" scale=None memory=None\n\
             warning: profile:2:1: unknown key 'buidl' (did you mean 'build'?)",
        ),
        (
            "command: ./web\nbuild: [make, assets]\n",
            "profile:2:8: build: expected a shell command, found a list",
        ),
        (
            "command: ./web\nrelease: '   '\n",
            "profile:2:10: release: expected a shell command, found only whitespace '   '",
        ),
        (
            "command: ./web\nhealthcheck: healthz\n",
            "profile:2:14: healthcheck: expected an HTTP path like /healthz (starting with '/', visible ASCII only, at most 1024 bytes), found 'healthz'",
        ),
        // A path must not be able to smuggle a header or a second request.
        (
            "command: ./web\nhealthcheck: \"/up HTTP/1.1\\r\\nHost: evil\"\n",
            "profile:2:14: healthcheck: expected an HTTP path like /healthz (starting with '/', visible ASCII only, at most 1024 bytes), found '/up HTTP/1.1\\r\\nHost: evil'",
        ),
        (
            "command: ./web\nhealthcheck: /caf\u{e9}\n",
            "profile:2:14: healthcheck: expected an HTTP path like /healthz (starting with '/', visible ASCII only, at most 1024 bytes), found '/caf\u{e9}'",
        ),
        (
            "command: ./web\nhealthcheck: /up\nhealthcheck_timeout: 0\n",
            "profile:3:22: healthcheck_timeout: expected whole seconds from 1 to 600 like 30 or 30s, found '0'",
        ),
        (
            "command: ./web\nhealthcheck: /up\nhealthcheck_timeout: 2m\n",
            "profile:3:22: healthcheck_timeout: expected whole seconds from 1 to 600 like 30 or 30s, found '2m'",
        ),
        (
            "command: ./web\nhealthcheck: /up\nhealthcheck_timeout: 601s\n",
            "profile:3:22: healthcheck_timeout: expected whole seconds from 1 to 600 like 30 or 30s, found '601s'",
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}
