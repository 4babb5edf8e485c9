//! Memory limits through cgroups, where this machine lets the daemon create them.

use std::time::Duration;

use nap_supervisor::{CgroupMode, MemoryLimits};

use crate::util::Fixture;

const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn an_app_over_its_memory_limit_does_not_keep_running() {
    let fixture = Fixture::with(|config| config.backoff_min = Duration::from_secs(600)).await;
    if let MemoryLimits::NotEnforced { reason } = fixture.supervisor.memory_limits() {
        eprintln!("skipped: memory limits cannot be enforced here: {reason}");
        return;
    }
    fixture.write(
        "hog.py",
        "import time\n\
         hog = b'x' * (400 * 1024 * 1024)\n\
         print('allocated', flush=True)\n\
         time.sleep(300)\n",
    );
    let mut spec = fixture.spec("hog", 1, "echo before; python3 hog.py");
    spec.memory = Some(64 * MIB);
    let started = fixture.supervisor.start(spec).await.expect("start");
    let status = fixture.status(&started.id).await.expect("listed");
    assert_eq!(status.memory_limit, Some(64 * MIB));
    assert!(status.limit_enforced);

    let unhealthy = fixture
        .supervisor
        .wait_healthy(&started.id, Duration::from_secs(120))
        .await
        .expect_err("a process over its limit is killed");
    assert!(
        unhealthy.reason.ends_with("out of memory (limit 64 MiB)"),
        "{unhealthy:?}"
    );
    assert!(unhealthy.last_lines.contains(&"before".to_owned()));
    assert!(!unhealthy.last_lines.contains(&"allocated".to_owned()));
    fixture.supervisor.shutdown().await;
}

#[tokio::test]
async fn memory_use_is_reported_with_and_without_cgroups() {
    for mode in [CgroupMode::Auto, CgroupMode::Off] {
        let fixture = Fixture::with(|config| config.cgroups = mode).await;
        let enforced = matches!(
            fixture.supervisor.memory_limits(),
            MemoryLimits::Enforced { .. }
        );
        if mode == CgroupMode::Off {
            assert!(!enforced);
        }
        // An app name no other test uses: cgroups of all fixtures share one parent, named
        // after app, index and serial.
        let mut spec = fixture.spec("reported", 1, "sleep 300");
        spec.memory = Some(256 * MIB);
        let started = fixture.supervisor.start(spec).await.expect("start");
        let status = fixture.status(&started.id).await.expect("listed");
        assert_eq!(status.limit_enforced, enforced, "{mode:?}");
        assert_eq!(status.memory_limit, Some(256 * MIB));
        // The process enters its cgroup just after it starts; wait for its first pages.
        let status = fixture
            .wait_for_status(&started.id, "memory in use", |s| {
                s.memory_used.is_some_and(|used| used > 0)
            })
            .await;
        assert!(
            status.memory_used.is_some_and(|used| used < 256 * MIB),
            "{mode:?}: {status:?}"
        );
        fixture.supervisor.shutdown().await;
        if let MemoryLimits::Enforced { parent, .. } = fixture.supervisor.memory_limits() {
            let stem = format!("reported@1-{}", started.id.serial());
            assert!(!parent.join(stem).exists(), "the cgroup is removed on stop");
        }
    }
}
