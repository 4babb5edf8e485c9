//! Generated input at the daemon's two command doors, against one real
//! daemon: SSH command lines from a non-admin, and raw lines on the control
//! socket. Every one ends with a status (a refusal with a message), the
//! daemon keeps answering, and nothing of it panics.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::harness::{Nap, text};

/// A word of a command line: the commands, their flags, and what a shell
/// or a parser might trip on. No `--from` and no git service: those reach
/// the network or create apps, and have tests of their own.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "apps",
            "ps",
            "scale",
            "logs",
            "restart",
            "releases",
            "rollback",
            "config",
            "config:set",
            "config:unset",
            "destroy",
            "clone",
            "help",
            "keys",
            "--json",
            "--force",
            "-n",
            "-f",
            "-i",
            "--help",
            "web",
            "+3",
            "-1",
            "v0",
            "v99999999999",
            "A=B",
            "=",
            "'",
            "\"",
            "\\",
            "$(id)",
            "`id`",
            ";",
            "|",
            "&&",
            ">",
            "../../etc",
            "~",
            "*",
            "\t",
            "é",
            "🦀",
            "99999999999999999999",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,12}",
    ]
}

fn command_line() -> impl Strategy<Value = String> {
    prop::collection::vec(word(), 0..6).prop_map(|words| words.join(" "))
}

/// A line for the control socket: a command request with generated words,
/// or junk.
fn control_line() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(word(), 0..5).prop_map(|args| {
            serde_json::json!({"command": {"args": args, "stdin": null}}).to_string()
        }),
        prop::sample::select(vec![
            "",
            "{}",
            "null",
            "[]",
            r#"{"command":{}}"#,
            r#"{"command":{"args":"apps"}}"#,
            r#"{"hook":{}}"#,
            r#"{"hook":null}"#,
            r#"{"command":{"args":[1]}}"#,
            "{\"command\"",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,80}",
    ]
}

/// Sends one line and reads the whole answer: its frames, parsed.
fn control(nap: &Nap, line: &str) -> Vec<serde_json::Value> {
    let mut stream = UnixStream::connect(nap.data.join("nap.sock")).expect("the control socket");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("a timeout");
    stream.write_all(line.as_bytes()).expect("sent");
    stream.write_all(b"\n").expect("sent");
    BufReader::new(stream)
        .lines()
        .map(|l| serde_json::from_str(&l.expect("a line")).expect("a JSON frame"))
        .collect()
}

#[test]
fn generated_command_lines_and_control_lines_end_in_a_status() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);

    // Each case is an ssh connection: few of them.
    let mut runner = TestRunner::new(Config::with_cases(24));
    runner
        .run(&command_line(), |line| {
            let output = alice.ssh(&[&line]);
            let (_, stderr) = text(&output);
            let status = output.status.code();
            prop_assert!(status.is_some(), "{line:?}: no status");
            if status != Some(0) {
                prop_assert!(
                    !stderr.trim().is_empty(),
                    "{line:?}: refused without a word"
                );
            }
            Ok(())
        })
        .expect("every line ends in a status");

    let mut runner = TestRunner::new(Config::with_cases(128));
    runner
        .run(&control_line(), |line| {
            let frames = control(&nap, &line);
            let last = frames.last();
            prop_assert!(
                last.and_then(|f| f.get("exit"))
                    .and_then(|e| e.as_u64())
                    .is_some(),
                "{line:?}: {frames:?}"
            );
            let exits = frames.iter().filter(|f| f.get("exit").is_some()).count();
            prop_assert_eq!(exits, 1, "{:?}: {:?}", line, frames);
            if last.and_then(|f| f.get("exit")).and_then(|e| e.as_u64()) != Some(0) {
                prop_assert!(
                    frames.iter().any(|f| f.get("err").is_some()),
                    "{line:?}: refused without a word: {frames:?}"
                );
            }
            Ok(())
        })
        .expect("every control line ends in one status");

    // Still answering, nothing made, nothing panicked.
    let output = alice.ssh(&["apps"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let made: Vec<_> = std::fs::read_dir(nap.data.join("apps"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(made.is_empty(), "{made:?}");
    assert!(!nap.log_text().contains("panicked"), "{}", nap.log_text());
}
