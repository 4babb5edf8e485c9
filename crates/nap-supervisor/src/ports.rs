//! The port pool: one port per live instance, out of the configured range.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;

/// Hands out ports from a range. A port is never given to two live instances; a port that
/// something else on the host is bound to is skipped.
///
/// Ports are handed out round-robin rather than lowest-first, so that a port freed by a stopped
/// instance is not reused at once: a client that still talks to the old instance then gets
/// "connection refused" instead of reaching a different app.
#[derive(Debug)]
pub(crate) struct PortPool {
    range: Range<u16>,
    in_use: HashSet<u16>,
    next: u16,
}

impl PortPool {
    pub(crate) fn new(range: Range<u16>) -> PortPool {
        let next = range.start;
        PortPool {
            range,
            in_use: HashSet::new(),
            next,
        }
    }

    /// A free port, now reserved, or `None` if every port of the range is taken.
    pub(crate) fn acquire(&mut self) -> Option<u16> {
        let start = u32::from(self.range.start);
        let len = u32::from(self.range.end).saturating_sub(start);
        let first = u32::from(self.next).saturating_sub(start);
        for offset in 0..len {
            let port = u16::try_from(start + (first + offset) % len)
                .expect("a port of a u16 range fits in u16");
            // Port 0 would mean "any port" to the app.
            if port == 0 || self.in_use.contains(&port) || !bindable(port) {
                continue;
            }
            self.in_use.insert(port);
            self.next = if u32::from(port) + 1 >= u32::from(self.range.end) {
                self.range.start
            } else {
                port + 1
            };
            return Some(port);
        }
        None
    }

    /// Makes `port` available again.
    pub(crate) fn release(&mut self, port: u16) {
        self.in_use.remove(&port);
    }
}

/// Whether nothing on this host holds `port` on 127.0.0.1 (or on all addresses).
fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A range of `len` ports that were all bindable a moment ago.
    fn free_range(len: u16) -> Range<u16> {
        for start in (42000..60000).step_by(usize::from(len)) {
            if (start..start + len).all(bindable) {
                return start..start + len;
            }
        }
        panic!("no free port range");
    }

    #[test]
    fn ports_are_distinct_until_released_and_then_reused_last() {
        let range = free_range(3);
        let mut pool = PortPool::new(range.clone());
        let mut got: Vec<u16> = (0..3).map(|_| pool.acquire().expect("free port")).collect();
        assert_eq!(pool.acquire(), None);
        got.sort_unstable();
        assert_eq!(got, range.clone().collect::<Vec<_>>());

        pool.release(range.start + 1);
        assert_eq!(pool.acquire(), Some(range.start + 1));
    }

    #[test]
    fn a_port_held_by_someone_else_is_skipped() {
        let range = free_range(2);
        let _held = TcpListener::bind((Ipv4Addr::LOCALHOST, range.start)).expect("bind");
        let mut pool = PortPool::new(range.clone());
        assert_eq!(pool.acquire(), Some(range.start + 1));
        assert_eq!(pool.acquire(), None);
    }
}
