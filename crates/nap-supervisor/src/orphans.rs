//! Pid records, and stopping what a previous daemon left running.
//!
//! Each running instance has a record `state_dir/APP@I-SERIAL.json`:
//!
//! ```json
//! {"app":"web","index":1,"release":"v3","serial":7,"pid":1234,"pgid":1234,
//!  "start_time":5501234,"cgroup":"/sys/fs/cgroup/memory/nap/web@1-7"}
//! ```
//!
//! `start_time` is field 22 of `/proc/PID/stat`; together with the pid it tells the process
//! apart from a later process that got the same pid. The record is rewritten at each restart
//! and deleted when the instance is stopped.
//!
//! A record that is still there when a daemon starts belongs to an instance whose daemon died.
//! nap stops such orphans rather than adopting them: their stdout and stderr were pipes to the
//! dead daemon, so their logs are lost and the next write may kill them with SIGPIPE anyway.
//! The new daemon then starts fresh instances to reach each app's desired state.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::group::Group;
use crate::procfs;

/// What a pid record holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) app: String,
    pub(crate) index: u32,
    pub(crate) release: String,
    pub(crate) serial: u64,
    pub(crate) pid: i32,
    pub(crate) pgid: i32,
    pub(crate) start_time: u64,
    pub(crate) cgroup: Option<PathBuf>,
}

/// `state_dir/STEM.json`.
pub(crate) fn record_path(state_dir: &Path, stem: &str) -> PathBuf {
    state_dir.join(format!("{stem}.json"))
}

/// Writes a record: a temporary file in the same directory, renamed over the record, so that
/// a reader never sees half of one. No fsync: a record only serves to stop orphans after the
/// daemon died, and one lost with the whole machine is harmless (its processes died too); an
/// unreadable one is skipped. The fsync was a millisecond or more per start, inside the
/// supervisor's loop.
pub(crate) fn write_record(path: &Path, record: &Record) -> io::Result<()> {
    let json = serde_json::to_vec(record).map_err(io::Error::other)?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = fs::File::create(&temporary)?;
    file.write_all(&json)?;
    file.write_all(b"\n")?;
    fs::rename(&temporary, path)
}

/// Deletes a record; one that is already gone is fine.
pub(crate) fn remove_record(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Stops every instance recorded in `state_dir` and deletes the records. Returns the highest
/// serial seen, so that the new daemon's serials do not repeat an old one.
///
/// All orphans get SIGTERM at once and share one grace period before SIGKILL.
pub(crate) async fn stop_orphans(state_dir: &Path, grace: Duration) -> u64 {
    let mut highest_serial = 0;
    let mut orphans = Vec::new();
    for (path, record) in read_records(state_dir) {
        highest_serial = highest_serial.max(record.serial);
        let group = orphan_group(&record);
        tracing::info!(
            app = %record.app, index = record.index, release = %record.release, pid = record.pid,
            running = group.is_some(),
            "stopping instance left by a previous daemon"
        );
        orphans.push((path, record, group));
    }

    let groups: Vec<&Group> = orphans.iter().filter_map(|(_, _, g)| g.as_ref()).collect();
    let deadline = tokio::time::Instant::now() + grace;
    for group in &groups {
        group.signal(nix::sys::signal::Signal::SIGTERM);
    }
    for group in &groups {
        if !group.wait_gone(deadline).await {
            group.kill_stragglers().await;
        }
    }

    for (path, record, _) in orphans {
        if let Some(dir) = record.cgroup
            && let Err(error) = Cgroup::existing(dir.clone()).remove()
        {
            tracing::warn!(dir = %dir.display(), %error, "cannot remove cgroup of old instance");
        }
        if let Err(error) = remove_record(&path) {
            tracing::warn!(path = %path.display(), %error, "cannot delete pid record");
        }
    }
    highest_serial
}

/// The records in `state_dir`. Unreadable ones are reported and deleted: nothing could act on
/// them.
fn read_records(state_dir: &Path) -> Vec<(PathBuf, Record)> {
    let Ok(entries) = fs::read_dir(state_dir) else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".json.tmp") {
            let _ = fs::remove_file(&path);
            continue;
        }
        if !name.ends_with(".json") || !name.contains('@') {
            continue;
        }
        match fs::read(&path).map(|bytes| serde_json::from_slice::<Record>(&bytes)) {
            Ok(Ok(record)) => records.push((path, record)),
            Ok(Err(error)) => {
                tracing::warn!(path = %path.display(), %error, "deleting unreadable pid record");
                let _ = fs::remove_file(&path);
            }
            Err(error) => tracing::warn!(path = %path.display(), %error, "cannot read pid record"),
        }
    }
    records
}

/// What of a recorded instance is still running, if anything.
///
/// The process group is the instance's when its leader is the recorded process (same pid,
/// same start time), or when the leader is gone but members remain: a group id cannot be
/// taken by a new group while the old one has members (the kernel frees a pid only once no
/// process uses it as its pid, process group or session). When the pid now belongs to
/// another process, the group is not ours; only the cgroup (named for this instance alone)
/// is.
///
/// The second case is the usual one for a sandboxed instance whose daemon died during a
/// stop: the recorded leader is bwrap's outer process, which dies of the stop's SIGTERM at
/// once and was reaped by that daemon, while bwrap's init and the app, still shutting down,
/// keep the group alive (and stay in the cgroup). Killing the group's members, then the
/// cgroup's, finds them (tested in `tests/sandbox.rs`).
fn orphan_group(record: &Record) -> Option<Group> {
    let cgroup = record
        .cgroup
        .clone()
        .filter(|dir| dir.is_dir())
        .map(Cgroup::existing);
    let pgid = match procfs::stat(record.pid) {
        Some(leader) if leader.start_time == record.start_time && leader.pgrp == record.pgid => {
            Some(record.pgid)
        }
        Some(_) => None,
        None if record.pid == record.pgid => Some(record.pgid),
        None => None,
    };
    let group = Group { pgid, cgroup };
    group.has_live_processes().then_some(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_their_json_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = Record {
            app: "web".into(),
            index: 1,
            release: "v3".into(),
            serial: 7,
            pid: 1234,
            pgid: 1234,
            start_time: 5501234,
            cgroup: None,
        };
        let path = record_path(dir.path(), "web@1-7");
        write_record(&path, &record).expect("write");
        let records = read_records(dir.path());
        assert_eq!(records, vec![(path.clone(), record)]);
        remove_record(&path).expect("remove");
        remove_record(&path).expect("removing twice is fine");
        assert!(read_records(dir.path()).is_empty());
    }
}
