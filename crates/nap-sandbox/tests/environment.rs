//! The app's environment: exactly the policy's, never on a command line, and never seen by a
//! process that runs as root.

use std::collections::BTreeMap;

use crate::both_modes;
use crate::util::{Fixture, cmdline_words, host_processes, live_group_members};

/// A config value with everything a shell could trip on.
const AWKWARD: &str = "s3cr3t 'quoted' \"double\" $HOME `id` \\ ; \n second line";

both_modes! {
    async fn the_app_gets_exactly_its_environment(fx: Fixture) {
        let policy = fx.policy(&[
            ("PORT", "20001"),
            ("NAP_APP", "myapp"),
            ("DATABASE_URL", AWKWARD),
            ("LANG", "C.UTF-8"),
        ]);
        let run = fx
            .start(&policy, &["/usr/bin/env", "-0"])
            .await
            .finish()
            .await
            .ok();
        let env: BTreeMap<&str, &str> = run
            .stdout
            .split('\0')
            .filter(|entry| !entry.is_empty())
            .filter_map(|entry| entry.split_once('='))
            .collect();
        let expected: BTreeMap<&str, &str> = [
            ("PORT", "20001"),
            ("NAP_APP", "myapp"),
            ("DATABASE_URL", AWKWARD),
            ("LANG", "C.UTF-8"),
            ("HOME", "/tmp"),
            ("PATH", nap_sandbox::DEFAULT_PATH),
            ("NAP_STORAGE", "/storage"),
            ("PWD", "/app"),
        ]
        .into();
        assert_eq!(env, expected);
    }
}

both_modes! {
    async fn no_value_and_no_host_path_is_on_a_command_line(fx: Fixture) {
        // A value of this run alone: the host-wide scan below must not find some other
        // process that merely mentions a fixed token (a developer's grep for it, say).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .subsec_nanos();
        let token = format!("tok-{}-{nanos}", std::process::id());
        let policy = fx.policy(&[("API_TOKEN", token.as_str())]);
        let app = ["/bin/sh", "-c", "echo ready; exec sleep 300"];
        let mut running = fx.start(&policy, &app).await;
        assert_eq!(running.line().await, "ready");
        let members = live_group_members(running.pgid);
        assert!(members.len() >= 3, "bwrap, its init and the app: {members:#?}");
        let data_dir = fx.data_dir.display().to_string();
        for process in &members {
            let cmdline = String::from_utf8_lossy(&process.cmdline);
            assert!(!cmdline.contains(&token), "{cmdline}");
            assert!(!cmdline.contains(&data_dir), "{cmdline}");
            // A process that exits between the scan and this read has no command line left
            // (its memory is gone), and nothing of it to leak.
            let words = cmdline_words(&process.cmdline);
            let Some(program) = words.first() else { continue };
            // The app itself may hold its environment: that is its shell until it has run
            // `exec`, which it may not have done yet when "ready" arrives, and `sleep` after.
            // Its script starts with the sandbox's renaming line, then the app's own.
            let app_shell = words.len() == 3
                && words[..2] == app[..2]
                && words[2].to_string_lossy().ends_with(app[2]);
            if program == "sleep" || app_shell {
                continue;
            }
            // bwrap's processes started with nothing but PATH (the app has its own).
            let environ = std::fs::read(format!("/proc/{}/environ", process.pid))
                .unwrap_or_default();
            assert!(!String::from_utf8_lossy(&environ).contains(&token), "{cmdline}");
        }
        let leaks: Vec<String> = host_processes()
            .iter()
            .map(|p| String::from_utf8_lossy(&p.cmdline).into_owned())
            .filter(|cmdline| cmdline.contains(&token))
            .collect();
        assert!(leaks.is_empty(), "the value is on these command lines: {leaks:#?}");
        drop(running);
    }
}

both_modes! {
    async fn loader_variables_reach_only_the_app(fx: Fixture) {
        // The dynamic loader obeys LD_DEBUG (as it would LD_PRELOAD) in every process that
        // gets it: only the app's own program may print, never bwrap or setpriv (which start
        // as root).
        let policy = fx.policy(&[("LD_DEBUG", "files")]);
        let run = fx
            .start(&policy, &["/usr/bin/true"])
            .await
            .finish()
            .await
            .ok();
        assert!(run.stderr.contains("needed by /usr/bin/true"), "{run:#?}");
        for privileged in ["bwrap", "setpriv", "/bin/sh"] {
            assert!(!run.stderr.contains(privileged), "{privileged} loaded with it: {run:#?}");
        }
    }
}
