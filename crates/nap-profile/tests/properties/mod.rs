//! Properties of the profile parser over generated input: a profile is
//! whatever a user pushes, so no text makes it panic, and every rejection is
//! one error that points into the file.

use nap_profile::{Limits, parse, replace_command};
use proptest::prelude::*;

/// Cases per property: modest, so that CI stays quick.
const CASES: u32 = 256;

/// Pieces a hostile or confused profile is made of: the known keys, YAML's
/// special characters and forms (anchors, tags, flow collections, block
/// scalars, documents), and odd text.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "command",
            "scale",
            "memory",
            "build",
            "release",
            "healthcheck",
            "healthcheck_timeout",
            "web",
            "COMMAND",
            "scael",
        ])
        .prop_map(str::to_owned),
        prop::sample::select(vec![
            ": ",
            ":",
            " ",
            "  ",
            "\n",
            "\n  ",
            "- ",
            "#",
            "'",
            "\"",
            "\\",
            "&a ",
            "*a",
            "!!str ",
            "!!binary ",
            "<<: ",
            "|",
            ">-",
            "{",
            "}",
            "[",
            "]",
            ",",
            "---\n",
            "...\n",
            "%YAML 1.2\n",
            "? ",
            "\t",
            "\r\n",
            "\u{feff}",
            "\u{0}",
            "é",
            "🦀",
            "$PORT",
            "128M",
            "1e9",
            "-1",
            "0x10",
            "99999999999999999999",
            "~",
            "null",
            "true",
            "1.5G",
            "0",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9 ._$-]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

fn profile_text() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..40).prop_map(|pieces| pieces.concat())
}

/// The error points at a line and column of the text (1:1 for the whole
/// file), names the file, and says something.
fn check_rejection(text: &str, error: &nap_profile::ProfileError) -> Result<(), TestCaseError> {
    let lines = u32::try_from(text.split('\n').count()).unwrap_or(u32::MAX);
    prop_assert!(
        error.line >= 1 && error.line <= lines.saturating_add(1),
        "{error}"
    );
    prop_assert!(error.column >= 1, "{error}");
    let shown = error.to_string();
    prop_assert!(shown.starts_with("profile:"), "{shown}");
    prop_assert!(shown.len() > "profile:1:1: ".len(), "{shown}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_text_is_a_profile_or_one_clean_error(text in any::<String>()) {
        match parse("profile", &text, &Limits::default()) {
            Ok(parsed) => prop_assert!(!parsed.profile.command.is_empty()),
            Err(error) => check_rejection(&text, &error)?,
        }
    }

    #[test]
    fn yaml_like_text_is_a_profile_or_one_clean_error(text in profile_text()) {
        match parse("profile", &text, &Limits::default()) {
            Ok(parsed) => {
                prop_assert!(!parsed.profile.command.is_empty());
                let scale = parsed.profile.scale_or_default();
                prop_assert!((1..=Limits::default().max_scale).contains(&scale), "{scale}");
                for warning in &parsed.warnings {
                    prop_assert!(warning.starts_with("profile:"), "{warning}");
                }
            }
            Err(error) => check_rejection(&text, &error)?,
        }
    }

    /// A profile with a valid command is rewritten to exactly the new
    /// command, or refused with a clean error; it never panics.
    #[test]
    fn replacing_the_command_yields_exactly_it(
        rest in profile_text(),
        command in "[ -~]{1,40}",
    ) {
        let text = format!("command: python3 server.py\n{rest}");
        match replace_command("profile", &text, &command) {
            Ok(rewritten) => {
                let parsed = parse("profile", &rewritten, &Limits { max_scale: u32::MAX });
                prop_assert!(parsed.is_ok(), "{rewritten:?}: {parsed:?}");
                let parsed = parsed.unwrap();
                prop_assert_eq!(parsed.profile.command.as_str(), command.as_str());
            }
            Err(error) => check_rejection(&text, &error)?,
        }
    }
}
