//! What a newcomer types first: `nap --version`, and `--help` of every command, as `nap`'s
//! own subcommands and as management commands over SSH and the control socket.

use std::process::Command;

use crate::harness::{Nap, nap_bin, run, text};

/// The command names `help` lists (the first word of each usage line).
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn version_and_the_binarys_own_help() {
    let output = run(Command::new(nap_bin()).arg("--version"));
    assert!(output.status.success(), "{:?}", text(&output));
    assert_eq!(
        text(&output).0.trim(),
        format!("nap {}", env!("CARGO_PKG_VERSION"))
    );
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "add", "--help"],
    ] {
        let output = run(Command::new(nap_bin()).args(&args));
        assert!(output.status.success(), "{args:?}: {:?}", text(&output));
        assert!(
            text(&output).0.contains("Usage: nap"),
            "{args:?}: {:?}",
            text(&output)
        );
    }
    let serve = text(&run(Command::new(nap_bin()).args(["serve", "--help"]))).0;
    for flag in [
        "--data", "--ssh", "--http", "--router", "--https", "--config",
    ] {
        assert!(serve.contains(flag), "{flag} in {serve}");
    }
}

#[test]
fn every_management_command_explains_itself() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let help = alice.ssh(&["help"]);
    assert!(help.status.success(), "{:?}", text(&help));
    let commands = listed_commands(&text(&help).0);
    assert!(commands.len() >= 19, "{commands:?}");
    assert!(commands.iter().any(|c| c == "keys:add"), "{commands:?}");
    for command in &commands {
        // Over SSH, as a user who may not even run it (keys:add): help needs no rights.
        for words in [vec![command.as_str(), "--help"], vec!["help", command]] {
            let output = alice.ssh(&words);
            let (stdout, stderr) = text(&output);
            assert!(output.status.success(), "{words:?}: {stderr}");
            let mut lines = stdout.lines();
            let usage = lines.next().unwrap_or_default();
            assert!(
                usage.starts_with(&format!("usage: {command}")),
                "{words:?}: {stdout}"
            );
            assert!(
                lines.next().is_some_and(|about| !about.is_empty()),
                "{words:?}: {stdout}"
            );
        }
        // On the host, through the daemon's socket; `nap keys` and `nap help` are the binary's
        // own (clap's) commands, checked above.
        if ["keys", "help"].contains(&command.as_str()) {
            continue;
        }
        let output = nap.cli(&[command, "--help"]);
        assert!(
            output.status.success(),
            "nap {command} --help: {:?}",
            text(&output)
        );
        assert!(
            text(&output).0.starts_with(&format!("usage: {command}")),
            "nap {command} --help: {:?}",
            text(&output)
        );
    }
    let output = alice.ssh(&["help", "frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("unknown command 'frobnicate'"));
}
