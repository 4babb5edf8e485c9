//! Where an app may write: its storage (kept), the cache, a private /tmp (not kept); and the
//! release tree, read-only unless the policy is a build's.

use std::os::unix::fs::MetadataExt;

use nap_sandbox::Identity;

use crate::both_modes;
use crate::util::{Fixture, write};

both_modes! {
    async fn the_release_tree_is_the_read_only_working_directory(fx: Fixture) {
        // Even a tree that belongs to the app's uid (as one built by it does) is read-only.
        if let Identity::AppUser { uid, gid } = fx.identity {
            for path in [fx.release.clone(), fx.release.join("app.txt")] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown release");
            }
        }
        let run = fx
            .sh("pwd; cat app.txt; (echo x > /app/new) 2>&1; (echo x >> /app/app.txt) 2>&1; \
                 rm /app/app.txt 2>&1; true")
            .await
            .ok();
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines[0], "/app");
        assert_eq!(lines[1], "the app's own file");
        assert_eq!(run.stdout.matches("Read-only file system").count(), 3, "{run:#?}");
        assert!(!fx.release.join("new").exists());
        assert_eq!(
            std::fs::read_to_string(fx.release.join("app.txt")).expect("still there"),
            "the app's own file\n"
        );
    }
}

both_modes! {
    async fn a_build_may_write_its_release_tree_and_cache(fx: Fixture) {
        let cache = fx.root.path().join("cache");
        nap_sandbox::prepare_writable_dir(&cache, fx.identity).expect("cache dir");
        if let Identity::AppUser { uid, gid } = fx.identity {
            std::os::unix::fs::chown(&fx.release, Some(uid), Some(gid)).expect("chown release");
        }
        let mut policy = fx.policy(&[]);
        policy.release_writable = true;
        policy.cache = Some(cache.clone());
        fx.sh_with(&policy, "echo built > /app/built && echo cached > \"$NAP_CACHE/c\" \
                             && [ \"$NAP_CACHE\" = /cache ]")
            .await
            .ok();
        assert_eq!(std::fs::read_to_string(fx.release.join("built")).expect("built"), "built\n");
        assert_eq!(std::fs::read_to_string(cache.join("c")).expect("cached"), "cached\n");
    }
}

both_modes! {
    async fn storage_is_writable_and_kept_across_runs(fx: Fixture) {
        fx.sh("[ \"$NAP_STORAGE\" = /storage ] && echo kept > \"$NAP_STORAGE/file\"")
            .await
            .ok();
        let second = fx.sh("cat /storage/file").await.ok();
        assert_eq!(second.stdout, "kept\n");
        assert_eq!(
            std::fs::read_to_string(fx.storage.join("file")).expect("on the host"),
            "kept\n"
        );
    }
}

both_modes! {
    async fn tmp_is_private_empty_and_gone_after_each_run(fx: Fixture) {
        // Something in the host's /tmp that the sandbox must not see.
        let host_tmp = tempfile::Builder::new()
            .prefix("nap-sandbox-host-tmp.")
            .tempdir()
            .expect("host temp dir");
        write(&host_tmp.path().join("marker"), "host");
        let first = fx
            .sh("ls -A /tmp; stat -c %a /tmp; echo \"$HOME\"; echo here > /tmp/left; \
                 echo home > \"$HOME/.profile-like\" && echo wrote")
            .await
            .ok();
        assert_eq!(first.stdout, "1777\n/tmp\nwrote\n", "{first:#?}");
        let second = fx.sh("ls -A /tmp").await.ok();
        assert_eq!(second.stdout, "", "a second run starts with an empty /tmp");
        assert!(!std::path::Path::new("/tmp/left").exists(), "nothing reaches the host's /tmp");
    }
}

both_modes! {
    async fn writes_anywhere_else_fail(fx: Fixture) {
        let run = fx
            .sh("for d in / /usr /usr/local /bin /etc /dev /proc /app; do \
                   if touch \"$d/nap-probe\" 2>/dev/null || mkdir \"$d/nap-dir\" 2>/dev/null; \
                   then echo \"wrote in $d\"; fi; \
                 done; \
                 (echo x > /etc/passwd) 2>/dev/null && echo 'wrote /etc/passwd'; \
                 touch /dev/shm/ok /tmp/ok /storage/ok && echo x > /dev/null && echo fine")
            .await
            .ok();
        assert_eq!(run.stdout, "fine\n", "{run:#?}");
    }
}

both_modes! {
    async fn files_in_storage_belong_to_the_app_outside(fx: Fixture) {
        fx.sh("echo mine > /storage/owned; mkdir /storage/dir").await.ok();
        let expected = match fx.identity {
            Identity::AppUser { uid, gid } => (uid, gid),
            Identity::DaemonUser => (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()),
        };
        for name in ["owned", "dir"] {
            let meta = std::fs::metadata(fx.storage.join(name)).expect("on the host");
            assert_eq!((meta.uid(), meta.gid()), expected, "{name}");
        }
    }
}
