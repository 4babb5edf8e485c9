//! The memory cgroup holds every process of the sandbox: the caller's outer shell joins it
//! before it execs bwrap, so bwrap, its init and the app are all in it, and its limit holds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::util::{
    Fixture, UNPRIVILEGED_UID, is_root, is_unprivileged_rerun, live_group_members,
    live_in_namespace, rerun_unprivileged,
};

/// Where an unprivileged re-run finds the cgroup made for it.
const CGROUP_VAR: &str = "NAP_SANDBOX_TEST_CGROUP";

/// The prelude the supervisor uses: join the instance's cgroup, or fail with 97.
fn join() -> String {
    nap_sandbox::join_cgroup(1, 97)
}

const LIMIT: u64 = 64 << 20;

#[tokio::test]
async fn every_process_is_in_the_cgroup_and_its_limit_holds() {
    if is_unprivileged_rerun() {
        let dir = PathBuf::from(std::env::var_os(CGROUP_VAR).expect("a cgroup from the parent"));
        check(&Fixture::new().await, &dir).await;
        return;
    }
    if !is_root() {
        eprintln!("skipped: only root can make memory cgroups here");
        return;
    }
    let as_root = TestCgroup::new();
    check(&Fixture::new().await, &as_root.dir).await;
    // A cgroup delegated to the unprivileged user, as a non-root nap would have one.
    let delegated = TestCgroup::new();
    for file in ["", "cgroup.procs", "tasks"] {
        if !delegated.dir.join(file).exists() {
            continue;
        }
        std::os::unix::fs::chown(delegated.dir.join(file), Some(UNPRIVILEGED_UID), None)
            .expect("delegate the cgroup");
    }
    let dir = delegated.dir.display().to_string();
    rerun_unprivileged(
        "cgroup::every_process_is_in_the_cgroup_and_its_limit_holds",
        &[(CGROUP_VAR, &dir)],
    )
    .await;
}

async fn check(fx: &Fixture, cgroup: &Path) {
    let policy = fx.policy(&[]);
    let mut running = fx
        .start_after(
            &policy,
            &["/bin/sh", "-c", "sleep 300 & sleep 300 & echo ready; wait"],
            &join(),
            &[cgroup],
        )
        .await;
    assert_eq!(running.line().await, "ready");
    let procs = cgroup_procs(cgroup);
    let members = live_group_members(running.pgid);
    let namespace = members
        .iter()
        .find_map(|p| {
            (p.pid != running.pid())
                .then(|| p.pid_namespace.clone())
                .flatten()
        })
        .expect("the sandbox's namespace");
    let mut sandbox: Vec<i32> = members.iter().map(|p| p.pid).collect();
    sandbox.extend(live_in_namespace(&namespace).iter().map(|p| p.pid));
    sandbox.sort_unstable();
    sandbox.dedup();
    // bwrap, its init, the shell and its two sleeps.
    assert!(sandbox.len() >= 5, "{sandbox:?}");
    for pid in &sandbox {
        assert!(
            procs.contains(pid),
            "pid {pid} is not in {}: {procs:?}",
            cgroup.display()
        );
    }
    running.kill().await;

    let hog = fx
        .start_after(
            &policy,
            &[
                "/usr/bin/python3",
                "-c",
                "x = bytearray(512 << 20); print('survived')",
            ],
            &join(),
            &[cgroup],
        )
        .await
        .finish()
        .await;
    assert_eq!(hog.code(), 128 + 9, "the kernel killed the hog: {hog:#?}");
    assert!(!hog.stdout.contains("survived"));
}

impl Fixture {}

/// A memory cgroup with a limit, under this process's own, removed at the end.
struct TestCgroup {
    dir: PathBuf,
}

impl TestCgroup {
    fn new() -> TestCgroup {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "nap-sandbox-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let membership = std::fs::read_to_string("/proc/self/cgroup").expect("own cgroups");
        let v1 = membership.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')))
        });
        let (parent, limit_files): (PathBuf, &[&str]) = match v1 {
            Some(parent) => (
                parent,
                &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
            ),
            None => {
                let path = membership
                    .lines()
                    .find_map(|line| line.strip_prefix("0::"))
                    .expect("a cgroup v2 membership");
                (
                    PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/')),
                    &["memory.max", "memory.swap.max"],
                )
            }
        };
        let dir = parent.join(name);
        std::fs::create_dir(&dir).expect("make a test cgroup");
        let cgroup = TestCgroup { dir };
        for (i, file) in limit_files.iter().enumerate() {
            let value = if file.ends_with("swap.max") {
                "0".to_owned()
            } else {
                LIMIT.to_string()
            };
            let written = std::fs::write(cgroup.dir.join(file), value);
            // The memory limit itself must be set; swap accounting may be off.
            if i == 0 {
                written.expect("set the memory limit");
            }
        }
        cgroup
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Its processes are gone by now, but the kernel may need a moment to let go of them.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        eprintln!("could not remove {}", self.dir.display());
    }
}

fn cgroup_procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .expect("read cgroup.procs")
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}
