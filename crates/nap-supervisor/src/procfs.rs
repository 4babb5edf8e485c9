//! What `/proc` says about processes: process groups, start times, memory and listening
//! sockets. Every function here reads a snapshot and tolerates processes vanishing mid-read.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;

/// The fields of `/proc/PID/stat` the supervisor needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) pid: i32,
    /// `R`, `S`, `Z`, ...
    pub(crate) state: char,
    pub(crate) pgrp: i32,
    /// Field 22: clock ticks after boot. With the pid it names one process for good, because
    /// a reused pid gets a later start time.
    pub(crate) start_time: u64,
}

impl Stat {
    /// Zombies (and dead tasks) hold no resources and cannot be signalled away; they wait for
    /// their parent (or init) to reap them.
    pub(crate) fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) may contain spaces and
/// parentheses, so the fields are counted from its last `)`.
pub(crate) fn parse_stat(pid: i32, text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 of the man page, so field N is fields[N - 3].
    Some(Stat {
        pid,
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The stat of one process, or `None` if it does not exist (any more).
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

/// Every process's stat.
fn all_stats() -> Vec<Stat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// The members of process group `pgid` that are not zombies.
pub(crate) fn live_group_members(pgid: i32) -> Vec<Stat> {
    all_stats()
        .into_iter()
        .filter(|stat| stat.pgrp == pgid && stat.is_live())
        .collect()
}

/// The resident set of a process in bytes (`VmRSS`; kernel threads have none).
fn rss_bytes(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The summed resident set of the given processes, or `None` if none could be read.
pub(crate) fn total_rss_bytes(pids: &[i32]) -> Option<u64> {
    pids.iter()
        .filter_map(|&pid| rss_bytes(pid))
        .fold(None, |sum, rss| Some(sum.unwrap_or(0) + rss))
}

/// The TCP ports on which the given processes have listening sockets.
///
/// `/proc/net/tcp{,6}` lists the sockets of this network namespace with their inodes; a
/// process owns a socket when one of its `/proc/PID/fd/*` links reads `socket:[INODE]`.
pub(crate) fn listening_ports(pids: &[i32]) -> BTreeSet<u16> {
    let mut port_of_inode = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            port_of_inode.extend(parse_listening_sockets(&text));
        }
    }
    let mut ports = BTreeSet::new();
    for pid in pids {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Some(inode) = socket_inode(&fd.path())
                && let Some(&port) = port_of_inode.get(&inode)
            {
                ports.insert(port);
            }
        }
    }
    ports
}

/// Parses a `/proc/net/tcp` or `/proc/net/tcp6` table into `inode → local port` for the
/// sockets in state `0A` (LISTEN).
pub(crate) fn parse_listening_sockets(table: &str) -> Vec<(u64, u16)> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            if *fields.get(3)? != LISTEN {
                return None;
            }
            let (_, port_hex) = fields.get(1)?.rsplit_once(':')?;
            let port = u16::from_str_radix(port_hex, 16).ok()?;
            let inode: u64 = fields.get(9)?.parse().ok()?;
            Some((inode, port))
        })
        .collect()
}

/// The inode of an fd link that reads `socket:[INODE]`.
fn socket_inode(link: &Path) -> Option<u64> {
    let target = fs::read_link(link).ok()?;
    let target = target.to_str()?;
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let text = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 \
                    987654 1000 10 18446744073709551615";
        assert_eq!(
            parse_stat(4242, text),
            Some(Stat {
                pid: 4242,
                state: 'S',
                pgrp: 4242,
                start_time: 987654
            })
        );
    }

    #[test]
    fn only_listening_sockets_are_taken_from_the_tcp_tables() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D431 0100007F:1388 01 00000000:00000000 00:00000000 00000000     0        0 31338 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(parse_listening_sockets(table), vec![(31337, 5000)]);
        let table6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:4E21 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(parse_listening_sockets(table6), vec![(4242, 20001)]);
    }

    #[test]
    fn this_process_is_seen_in_its_own_group() {
        let me = i32::try_from(std::process::id()).expect("pids fit in i32");
        let mine = stat(me).expect("this process has a stat");
        assert!(live_group_members(mine.pgrp).iter().any(|s| s.pid == me));
        assert!(total_rss_bytes(&[me]).is_some_and(|rss| rss > 0));
    }

    #[test]
    fn a_listening_socket_of_this_process_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let me = i32::try_from(std::process::id()).expect("pids fit in i32");
        assert!(listening_ports(&[me]).contains(&port));
    }
}
