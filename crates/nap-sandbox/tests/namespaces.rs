//! What an app is: its own PID, IPC, UTS, mount and cgroup namespaces (the host's network),
//! no privileges, a minimal /dev, nothing open but stdio.

use std::collections::BTreeSet;

use nap_sandbox::Identity;

use crate::both_modes;
use crate::util::{Fixture, live_group_members};

both_modes! {
    async fn it_sees_only_its_own_processes(fx: Fixture) {
        // Another app's instance, running meanwhile.
        let policy = fx.policy(&[]);
        let mut other = fx
            .start(
                &policy,
                &["/usr/bin/python3", "-c",
                  "import time; print('ready', flush=True); time.sleep(300)",
                  "ZZ-OTHER-APP-MARKER"],
            )
            .await;
        assert_eq!(other.line().await, "ready");
        let other_pids: Vec<i32> = live_group_members(other.pgid).iter().map(|p| p.pid).collect();
        let list = fx
            .sh("for p in /proc/[0-9]*; do printf '%s ' \"${p#/proc/}\"; \
                 tr '\\0' ' ' < $p/cmdline; echo; done; cat /proc/1/comm")
            .await
            .ok();
        assert!(!list.stdout.contains("ZZ-OTHER-APP-MARKER"), "{list:#?}");
        // Nor can it signal them (nor the daemon) by their pids on the host.
        let mut script = String::new();
        for pid in other_pids.iter().copied().chain([std::process::id() as i32]) {
            script.push_str(&format!("kill -0 {pid} 2>/dev/null && echo 'signalled {pid}'; "));
        }
        script.push_str("true");
        let kills = fx.sh(&script).await.ok();
        assert_eq!(kills.stdout, "", "{kills:#?}");
        let run = list;
        let exe = std::env::current_exe().expect("exe").display().to_string();
        assert!(!run.stdout.contains(&exe), "the daemon is visible: {run:#?}");
        let pids: Vec<i32> = run
            .stdout
            .lines()
            .filter_map(|line| line.split(' ').next()?.parse().ok())
            .collect();
        // bwrap's init, the shell, and what the shell runs.
        assert!(pids.contains(&1) && pids.len() <= 4, "{run:#?}");
        assert!(run.stdout.ends_with("bwrap\n"), "pid 1 is bwrap's init: {run:#?}");
        drop(other);
    }
}

both_modes! {
    async fn it_has_namespaces_of_its_own_but_the_network(fx: Fixture) {
        let kinds = ["pid", "ipc", "uts", "mnt", "cgroup", "net", "user"];
        let script: String = kinds
            .iter()
            .map(|kind| format!("readlink /proc/self/ns/{kind}; "))
            .collect();
        let run = fx.sh(&script).await.ok();
        let inside: Vec<&str> = run.stdout.lines().collect();
        for (kind, inside) in kinds.iter().zip(inside) {
            let host = std::fs::read_link(format!("/proc/self/ns/{kind}"))
                .expect("own namespace")
                .display()
                .to_string();
            let shared = match *kind {
                "net" => true,
                "user" => fx.identity != Identity::DaemonUser,
                _ => false,
            };
            assert_eq!(inside == host, shared, "{kind}: inside {inside}, host {host}");
        }
    }
}

both_modes! {
    async fn it_has_no_privileges(fx: Fixture) {
        let run = fx
            .sh("grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Groups):' /proc/self/status")
            .await
            .ok();
        let status: Vec<(String, String)> = run
            .stdout
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect();
        for (key, value) in &status {
            let expected = match key.as_str() {
                "NoNewPrivs" => "1",
                "Groups" => "",
                _ => "0000000000000000",
            };
            assert_eq!(value, expected, "{key}");
        }
        assert_eq!(status.len(), 7, "{run:#?}");
        if fx.identity == Identity::DaemonUser {
            let nested = fx.sh("unshare -U true 2>/dev/null; echo $?").await.ok();
            assert_ne!(nested.stdout, "0\n", "made a nested user namespace");
        }
    }
}

both_modes! {
    async fn dev_is_minimal_and_tty_is_null(fx: Fixture) {
        let run = fx.sh("ls -A /dev; echo ---; stat -L -c '%t,%T' /dev/tty /dev/null").await.ok();
        let (listing, numbers) = run.stdout.split_once("---\n").expect("two parts");
        let listing: BTreeSet<&str> = listing.lines().collect();
        let expected: BTreeSet<&str> = [
            "core", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
            "stdout", "tty", "urandom", "zero",
        ]
        .into();
        assert_eq!(listing, expected);
        assert_eq!(numbers, "1,3\n1,3\n", "/dev/tty is /dev/null");
    }
}

both_modes! {
    async fn it_starts_with_nothing_open_but_stdio(fx: Fixture) {
        // A descriptor this process holds without close-on-exec, as one leaked by whoever
        // started nap would be: a directory outside the sandbox, from which `openat` could
        // walk the host.
        let leaked = std::fs::File::open(&fx.data_dir).expect("open the data dir");
        nix::fcntl::fcntl(&leaked, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
            .expect("clear close-on-exec");
        // The shell's own descriptors, listed by a child (whose own would differ).
        let run = fx.sh("ls /proc/$$/fd; readlink /proc/$$/fd/0").await.ok();
        assert_eq!(run.stdout, "0\n1\n2\n/dev/null\n", "{run:#?}");
        drop(leaked);
    }
}
