//! Stopping an instance as the supervisor does: SIGTERM to the process group reaches the app
//! (which may shut down gracefully), and SIGKILL to the group leaves nothing running, not
//! even a process that left the group.

use nix::sys::signal::Signal;

use crate::both_modes;
use crate::util::{Fixture, live_group_members, live_in_namespace};

/// An app that, on SIGTERM, writes down that it stopped cleanly and exits.
const GRACEFUL_APP: &str = "
import signal, sys, time
def stop(*_):
    with open('/storage/stopped', 'w') as f:
        f.write('graceful\\n')
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print('ready', flush=True)
time.sleep(300)
";

both_modes! {
    async fn sigterm_to_the_group_lets_the_app_shut_down_gracefully(fx: Fixture) {
        let mut running = fx
            .start(
                &fx.policy(&[]),
                &["/usr/bin/python3", "-c", GRACEFUL_APP],
            )
            .await;
        assert_eq!(running.line().await, "ready");
        running.signal_group(Signal::SIGTERM);
        // Every process of the sandbox has gone once the output pipes close.
        let finished = running.finish().await;
        assert_eq!(
            std::fs::read_to_string(fx.storage.join("stopped")).ok().as_deref(),
            Some("graceful\n"),
            "{finished:#?}"
        );
    }
}

both_modes! {
    async fn sigkill_to_the_group_leaves_nothing_running(fx: Fixture) {
        // Children, a grandchild, and one that leaves the process group.
        let mut running = fx
            .start(
                &fx.policy(&[]),
                &["/bin/sh", "-c",
                  "sleep 300 & (sleep 300 & wait) & \
                   setsid /bin/sh -c 'echo escaped; exec sleep 300' </dev/null & wait"],
            )
            .await;
        assert_eq!(running.line().await, "escaped");
        let members = live_group_members(running.pgid);
        let namespace = members
            .iter()
            .find(|p| p.pid != running.pid())
            .and_then(|p| p.pid_namespace.clone())
            .expect("the sandbox's PID namespace");
        let escaped: Vec<_> = live_in_namespace(&namespace)
            .into_iter()
            .filter(|p| p.pgrp != running.pgid)
            .collect();
        assert_eq!(escaped.len(), 1, "one process left the group: {escaped:#?}");
        running.signal_group(Signal::SIGKILL);
        running.finish().await;
        // Killing bwrap's init kills its whole namespace. Nothing signals the end of a process
        // that is not our child, so /proc is read until they are gone (briefly: the kernel
        // kills them as init dies).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let left = live_in_namespace(&namespace);
            if left.is_empty() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "still running: {left:#?}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

both_modes! {
    async fn the_exit_status_is_the_apps(fx: Fixture) {
        assert_eq!(fx.sh("exit 3").await.code(), 3);
        assert_eq!(fx.sh("kill -KILL $$").await.code(), 128 + 9);
    }
}
