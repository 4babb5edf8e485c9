//! An app started by a nap that runs in a terminal cannot reach that terminal: bwrap's
//! /dev/tty would open the controlling terminal, where TIOCSTI pushes keystrokes into the
//! operator's shell (this kernel still allows that: dev.tty.legacy_tiocsti).

use crate::util::{Fixture, STEP, self_command};

/// Set for the run of this test under `script`, which gives it a controlling terminal.
const IN_TERMINAL_VAR: &str = "NAP_SANDBOX_TEST_IN_TERMINAL";

/// Tries to push a character into the controlling terminal; says what happened.
const INJECT: &str = "
import fcntl, termios
try:
    with open('/dev/tty', 'wb') as tty:
        fcntl.ioctl(tty, termios.TIOCSTI, b' ')
    print('injected')
except OSError as error:
    print('refused:', error.strerror)
";

#[tokio::test]
async fn the_operators_terminal_is_out_of_reach() {
    const NAME: &str = "terminal::the_operators_terminal_is_out_of_reach";
    if std::env::var_os(IN_TERMINAL_VAR).is_some() {
        // The same attempt outside the sandbox works: there is a terminal to protect.
        let outside = std::process::Command::new("python3")
            .args(["-c", INJECT])
            .output()
            .expect("python3 runs");
        assert_eq!(String::from_utf8_lossy(&outside.stdout), "injected\n");
        let fx = Fixture::new().await;
        let inside = fx
            .start(&fx.policy(&[]), &["/usr/bin/python3", "-c", INJECT])
            .await
            .finish()
            .await
            .ok();
        assert_eq!(
            inside.stdout, "refused: Inappropriate ioctl for device\n",
            "{inside:#?}"
        );
        return;
    }
    if std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").is_ok_and(|v| v.trim() == "0") {
        eprintln!("note: TIOCSTI is off on this kernel; checking /dev/tty all the same");
    }
    let command: Vec<String> = self_command(NAME)
        .iter()
        .map(|w| format!("'{w}'"))
        .collect();
    let output = tokio::process::Command::new("script")
        .args([
            "--quiet",
            "--return",
            "--command",
            &command.join(" "),
            "/dev/null",
        ])
        .env(IN_TERMINAL_VAR, "1")
        .env("SHELL", "/bin/sh")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(STEP * 2, output)
        .await
        .expect("in time")
        .expect("script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
