//! Whom the app runs as: as root, the uid and gid it is given, no supplementary groups; else
//! the daemon's uid; in both cases a name that `getpwuid` knows.

use nap_sandbox::Identity;

use crate::both_modes;
use crate::util::{Fixture, STEP, is_root, is_unprivileged_rerun, self_command};

both_modes! {
    async fn it_runs_as_its_own_identity_with_a_name(fx: Fixture) {
        let (uid, gid) = match fx.identity {
            Identity::AppUser { uid, gid } => (uid, gid),
            Identity::DaemonUser => {
                (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw())
            }
        };
        let run = fx
            .sh("id -u; id -g; id -G; id -un; \
                 python3 -c 'import getpass, os, pwd; print(getpass.getuser()); \
                 print(pwd.getpwuid(os.getuid()).pw_dir)'")
            .await
            .ok();
        assert_eq!(run.stdout, format!("{uid}\n{gid}\n{gid}\napp\napp\n/tmp\n"), "{run:#?}");
        if let Identity::AppUser { uid, .. } = fx.identity {
            assert_ne!(uid, 0);
        }
    }
}

both_modes! {
    async fn the_host_users_are_not_listed(fx: Fixture) {
        let run = fx.sh("cat /etc/passwd; getent passwd root | cut -d: -f1").await.ok();
        let names: Vec<&str> = run
            .stdout
            .lines()
            .filter_map(|line| line.split(':').next())
            .collect();
        assert!(names.iter().all(|n| ["root", "app", "nobody"].contains(n)), "{run:#?}");
        let host = std::fs::read_to_string("/etc/passwd").expect("host passwd");
        assert!(host.lines().count() > 3, "the host has users the sandbox does not list");
    }
}

both_modes! {
    async fn user_lookups_load_no_name_service_module(fx: Fixture) {
        // A name that is nobody's, as setpriv's lookup of the app's uid as a name is: with
        // the host's nsswitch.conf (Debian's `files systemd`), the miss goes on to
        // libnss_systemd, which the loader then maps. The sandbox answers from its files.
        let run = fx
            .sh("LD_DEBUG=libs getent passwd no-such-user-here 2>&1; \
                 LD_DEBUG=libs getent group 4242 2>&1; \
                 grep -E '^(passwd|group|shadow):' /etc/nsswitch.conf")
            .await;
        let modules: Vec<&str> = run
            .stdout
            .lines()
            .filter(|line| line.contains("libnss_") && !line.contains("libnss_files"))
            .collect();
        assert!(modules.is_empty(), "modules loaded: {modules:#?}");
        assert!(
            run.stdout.ends_with("passwd: files\ngroup: files\nshadow: files\n"),
            "{run:#?}"
        );
    }
}

/// Set for the run of the test below with supplementary groups.
const WITH_GROUPS_VAR: &str = "NAP_SANDBOX_TEST_WITH_GROUPS";

#[tokio::test]
async fn the_daemons_supplementary_groups_are_dropped() {
    const NAME: &str = "identity::the_daemons_supplementary_groups_are_dropped";
    let groups = |status: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Groups:"))
            .map(|groups| groups.trim().to_owned())
            .expect("a Groups line")
    };
    if std::env::var_os(WITH_GROUPS_VAR).is_some() {
        let own = std::fs::read_to_string("/proc/self/status").expect("own status");
        assert_eq!(groups(&own), "4 27", "the re-run has supplementary groups");
        let fx = Fixture::new().await;
        let inside = fx.sh("cat /proc/self/status").await.ok();
        assert_eq!(groups(&inside.stdout), "", "{inside:#?}");
        return;
    }
    if !is_root() || is_unprivileged_rerun() {
        // An ordinary user's groups stay with its apps: a user namespace cannot drop them.
        eprintln!("skipped: only root can drop an app's supplementary groups");
        return;
    }
    // As root (uid 0) with groups 4 and 27 (adm, sudo on Debian), as a root daemon might be.
    let mut command = vec![
        "setpriv".to_owned(),
        "--groups=4,27".to_owned(),
        "--".to_owned(),
    ];
    command.extend(self_command(NAME));
    let output = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env(WITH_GROUPS_VAR, "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(STEP * 2, output)
        .await
        .expect("in time")
        .expect("setpriv runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
