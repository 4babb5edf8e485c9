//! Whom the app runs as: as root, the uid and gid it is given, no supplementary groups; else
//! the daemon's uid; in both cases a name that `getpwuid` knows.

use nap_sandbox::Identity;

use crate::both_modes;
use crate::util::Fixture;

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
