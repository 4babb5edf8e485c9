//! What the actor shows outside: the list `ps` reads, and where the instances that are up
//! serve, for the router.
//!
//! The router's snapshot is computed again after every message the actor handles (every state change
//! comes from one) and sent only when it differs, so receivers wake exactly when an instance
//! became up (health passed, or up for `stable_after`) or stopped being up (it exited, a stop
//! began, it is gone).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use nap_runtime::UpAddresses;

use super::{Actor, Instance, Snapshot};
use crate::{InstanceId, InstanceState, InstanceStatus};

impl Actor {
    /// The state `list` shows: a run that has been starting for `stable_after` is up (its
    /// `StableDue` event may still be on its way).
    pub(super) fn shown_state(&self, instance: &Instance) -> InstanceState {
        if instance.state == InstanceState::Starting
            && instance
                .run
                .as_ref()
                .is_some_and(|run| run.started.elapsed() >= self.config.stable_after)
        {
            InstanceState::Up
        } else {
            instance.state
        }
    }

    /// Publishes where the instances that are up serve, if that changed.
    pub(super) fn publish_up_addresses(&self) {
        let mut up: Vec<(&InstanceId, u16)> = self
            .instances
            .values()
            .filter(|instance| self.shown_state(instance) == InstanceState::Up)
            .map(|instance| (&instance.id, instance.port))
            .collect();
        up.sort();
        let mut book = UpAddresses::new();
        for (id, port) in up {
            book.entry(id.app.clone())
                .or_default()
                .push(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        }
        self.up_addresses.send_if_modified(|current| {
            if **current == book {
                false
            } else {
                *current = Arc::new(book);
                true
            }
        });
    }

    pub(super) fn snapshots(&self) -> Vec<Snapshot> {
        let mut snapshots: Vec<Snapshot> = self
            .instances
            .values()
            .map(|instance| {
                let state = self.shown_state(instance);
                let pid = instance.run.as_ref().map(|run| run.pid);
                Snapshot {
                    status: InstanceStatus {
                        id: instance.id.clone(),
                        app: instance.id.app.clone(),
                        index: instance.id.index,
                        release: instance.id.release.clone(),
                        state,
                        port: instance.port,
                        pid,
                        started_at: instance.started_at,
                        restarts: instance.restarts,
                        memory_used: None,
                        memory_limit: instance.spec.memory,
                        limit_enforced: instance.spec.memory.is_some() && instance.cgroup.is_some(),
                    },
                    pgid: pid.and_then(|pid| i32::try_from(pid).ok()),
                    cgroup: instance.cgroup.clone(),
                }
            })
            .collect();
        snapshots.sort_by(|a, b| a.status.id.cmp(&b.status.id));
        snapshots
    }
}
