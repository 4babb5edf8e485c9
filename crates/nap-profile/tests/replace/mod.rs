//! `replace_command`: only the command's value changes.

use nap_profile::{Limits, parse, replace_command};

/// Replaces the command of `input` with `new_command` and compares the new
/// text (or the error's Display) with `expected`. On success the result must
/// also parse back to exactly `new_command`.
fn check(input: &str, new_command: &str, expected: &str) {
    let actual = match replace_command("profile", input, new_command) {
        Ok(text) => {
            let parsed = parse("profile", &text, &Limits::default())
                .unwrap_or_else(|error| panic!("result does not parse: {error}\n{text}"));
            assert_eq!(parsed.profile.command, new_command, "{text}");
            text
        }
        Err(error) => error.to_string(),
    };
    assert_eq!(actual, expected, "input: {input:?}");
}

#[test]
fn keeps_everything_else() {
    check(
        "# web\nscale: 3   # three\n\ncommand: python3 app.py   # the server\nmemory: 256M\n",
        "python3 -m http.server $PORT",
        "# web\nscale: 3   # three\n\ncommand: python3 -m http.server $PORT   # the server\nmemory: 256M\n",
    );
    check(
        "command: ./old\r\nscale: 2\r\n",
        "./new",
        "command: ./new\r\nscale: 2\r\n",
    );
    check("command: ./old", "./new", "command: ./new");
    check(
        "command: 'single quoted'  # c\n",
        "./new",
        "command: ./new  # c\n",
    );
    check(
        "command: \"two\n  lines\"\nscale: 1\n",
        "./new",
        "command: ./new\nscale: 1\n",
    );
    check(
        "command: plain that\n  goes on\n  # a comment\nscale: 1\n",
        "./new",
        "command: ./new\n  # a comment\nscale: 1\n",
    );
    check(
        "command: &c ./old\nnote: *c\n",
        "./new",
        "command: &c ./new\nnote: *c\n",
    );
}

#[test]
fn replaces_block_scalars_and_continuations() {
    check(
        "command: |\n  cd web\n  exec ./server\nscale: 1 # one\n",
        "./new",
        "command: ./new\nscale: 1 # one\n",
    );
    check(
        "command: >-  # folded\n  python3 -m\n  http.server\n\n\nscale: 1\n",
        "./new",
        "command: ./new\n\n\nscale: 1\n",
    );
    check("command: |\n  a\n  b\n", "./new", "command: ./new\n");
    check(
        "scale: 1\ncommand:\n  python3\n  app.py\nmemory: 1G\n",
        "./new",
        "scale: 1\ncommand: ./new\nmemory: 1G\n",
    );
    check(
        "command:\n  - python3\n  - app.py\n\nscale: 1\n",
        "./new",
        "command: ./new\n\nscale: 1\n",
    );
    check(
        "command: [python3,\n  app.py]  # list\nscale: 1\n",
        "./new",
        "command: ./new\nscale: 1\n",
    );
    check(
        "command:   # to do\nscale: 1\n",
        "./new",
        "command: ./new   # to do\nscale: 1\n",
    );
    check("command: ~\n", "./new", "command: ./new\n");
}

#[test]
fn appends_a_missing_command() {
    check("scale: 2\n", "./run", "scale: 2\ncommand: ./run\n");
    check("scale: 2", "./run", "scale: 2\ncommand: ./run\n");
    check("scale: 2\r\n", "./run", "scale: 2\r\ncommand: ./run\r\n");
    check("", "./run", "command: ./run\n");
    check("# to do\n", "./run", "# to do\ncommand: ./run\n");
}

#[test]
fn special_characters_round_trip() {
    for (new_command, written) in [
        (
            "python3 -m http.server $PORT",
            "python3 -m http.server $PORT",
        ),
        (
            "gunicorn app:app -b 0.0.0.0:$PORT",
            "\"gunicorn app:app -b 0.0.0.0:$PORT\"",
        ),
        ("echo 'hi' # not a comment", "\"echo 'hi' # not a comment\""),
        ("echo \"$PORT\" \\ done", "echo \"$PORT\" \\ done"),
        (
            "sh -c \"exec x\"; echo a:b",
            "\"sh -c \\\"exec x\\\"; echo a:b\"",
        ),
        ("- dash", "\"- dash\""),
        ("[x]", "\"[x]\""),
        ("*alias", "\"*alias\""),
        ("null", "\"null\""),
        ("~", "\"~\""),
        ("true", "true"),
        ("5", "5"),
        ("cd web\nexec ./server\n", "\"cd web\\nexec ./server\\n\""),
        ("echo\ttab", "\"echo\\ttab\""),
        (" leading space", "\" leading space\""),
        ("trailing space ", "\"trailing space \""),
        ("échec $PORT", "\"échec $PORT\""),
        ("a\u{7}b", "\"a\\u0007b\""),
    ] {
        check(
            "command: ./old  # c\nscale: 1\n",
            new_command,
            &format!("command: {written}  # c\nscale: 1\n"),
        );
    }
}

#[test]
fn refuses_what_would_not_parse() {
    check(
        "command: ./old\n",
        "",
        "profile:1:10: command: expected the shell command that starts one instance, found an empty string",
    );
    check(
        "command: ./old\n",
        "   ",
        "profile:1:10: command: expected the shell command that starts one instance, found only whitespace '   '",
    );
    check(
        "scale: 1\n",
        "echo \0",
        "profile:2:10: command: contains a NUL character, which a shell command cannot hold",
    );
    check(
        "command: ./old\n",
        &"x".repeat(4097),
        "profile:1:10: command: is 4097 bytes long; the limit is 4096 bytes",
    );
    check(
        "command: [old",
        "./new",
        "profile:1:10: malformed YAML: unclosed bracket '['",
    );
    check(
        "- a\n",
        "./new",
        "profile:1:1: expected 'key: value' lines like 'command: ...', found a list",
    );
    check(
        "command: ./old\nscale: lots\n",
        "./new",
        "profile:2:8: scale: expected a whole number from 0 to 4294967295, found 'lots'",
    );
    check(
        "command: ./a\ncommand: ./b\n",
        "./new",
        "profile:2:1: duplicate key 'command' (first given on line 1)",
    );
    check(
        "  command: ./old\n",
        "./new",
        "profile:1:3: key 'command' must start at the beginning of the line",
    );
}

#[test]
fn a_scale_above_the_default_maximum_is_kept() {
    let text = replace_command("profile", "command: a\nscale: 500\n", "b").unwrap();
    assert_eq!(text, "command: b\nscale: 500\n");
}
