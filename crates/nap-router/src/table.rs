//! The router's own view of a [`Routes`] snapshot: per app its round-robin turn, per
//! instance its idle connections and whether it refused one lately. Everything a
//! request touches is an atomic or a lock of one instance, never a lock of the router.
//!
//! Each worker thread has tables of its own, so that its connections to instances
//! are driven by its own runtime; only the round-robin turns are shared by all
//! workers ([`Turns`]), so that requests take turns over the whole router.
//!
//! A new snapshot gets a new [`Table`], but the state of apps and instances it still
//! lists carries over, so a membership change neither resets round robin nor drops the
//! connections kept open to instances that stay.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::buffer::Reader;
use crate::pool::{Connection, Pool};
use crate::routes::{Routes, RoutesReceiver};
use crate::traffic::{Presence, Traffic};

/// How long an instance that refused a connection goes to the back of the line: it is
/// still tried, but after the others.
const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// One instance as the router sees it.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    /// hyper's connections to it, kept alive between requests (HTTP/2 clients' requests).
    pub(crate) pool: Pool<Connection>,
    /// Raw TCP connections to it, kept alive between requests (HTTP/1.1 clients').
    pub(crate) raw: Pool<Reader<tokio::net::TcpStream>>,
    /// This worker's requests in flight to it, and whether it is out of rotation.
    pub(crate) presence: Arc<Presence>,
    /// When it last refused a connection, in milliseconds after `born`, plus one; zero
    /// when it has not (or answered since).
    refused_at: AtomicU64,
    born: Instant,
}

impl Upstream {
    fn new(addr: SocketAddr, traffic: &Traffic) -> Upstream {
        Upstream {
            addr,
            pool: Pool::default(),
            raw: Pool::default(),
            presence: traffic.presence(addr),
            refused_at: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    /// Whether it refused a connection in the last [`SUSPECT_FOR`].
    pub(crate) fn suspect(&self) -> bool {
        match self.refused_at.load(Ordering::Relaxed) {
            0 => false,
            at => self.born.elapsed().as_millis() < u128::from(at - 1) + SUSPECT_FOR.as_millis(),
        }
    }

    /// It could not be reached.
    pub(crate) fn refused(&self) {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.refused_at.store(now + 1, Ordering::Relaxed);
    }

    /// It answered: it goes back in line.
    pub(crate) fn answered(&self) {
        // A load first: in the common case nothing is written, and the cache line stays
        // shared between the cores.
        if self.refused_at.load(Ordering::Relaxed) != 0 {
            self.refused_at.store(0, Ordering::Relaxed);
        }
    }
}

/// One app: its instances and whose turn it is.
pub(crate) struct App {
    pub(crate) instances: Box<[Arc<Upstream>]>,
    turn: Arc<AtomicUsize>,
}

impl App {
    /// The next turn of round robin (wrapping).
    pub(crate) fn next_turn(&self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }
}

/// A custom host of one snapshot: which app it leads to.
pub(crate) struct CustomHost {
    /// The app's name, as its key in [`Table`].
    pub(crate) app: Box<str>,
    /// Redirect plain HTTP to HTTPS.
    pub(crate) https_redirect: bool,
}

/// Every app and custom host of one snapshot.
#[derive(Default)]
pub(crate) struct Table {
    apps: HashMap<Box<str>, App>,
    hosts: HashMap<Box<str>, CustomHost>,
}

impl Table {
    /// `app` (lower case); `None` if the snapshot has no such app.
    pub(crate) fn app(&self, app: &str) -> Option<&App> {
        self.apps.get(app)
    }

    /// The custom host `host` (lower case, no port) and its app; `None` if the snapshot
    /// has no such host, or its app is not in the snapshot.
    pub(crate) fn host(&self, host: &str) -> Option<(&CustomHost, &App)> {
        let custom = self.hosts.get(host)?;
        Some((custom, self.apps.get(&custom.app)?))
    }

    /// The table for `routes`, taking over `previous`'s state for the instances that
    /// are still there and each app's turn from `turns`. An address listed twice for
    /// an app is tried once. An instance that was retired is not taken over: if its
    /// address is listed again, it is a new instance there (or the same one, if the
    /// drain that retired it failed), with a fresh state.
    fn build(routes: &Routes, previous: &Table, turns: &Turns, traffic: &Traffic) -> Table {
        let mut turns = turns.0.lock().unwrap_or_else(PoisonError::into_inner);
        turns.retain(|app, _| routes.instances(app).is_some());
        let known: HashMap<SocketAddr, &Arc<Upstream>> = previous
            .apps
            .values()
            .flat_map(|app| app.instances.iter())
            .filter(|upstream| !upstream.presence.retired())
            .map(|upstream| (upstream.addr, upstream))
            .collect();
        let mut made: HashMap<SocketAddr, Arc<Upstream>> = HashMap::new();
        let apps = routes
            .apps()
            .map(|(name, addrs)| {
                let mut instances: Vec<Arc<Upstream>> = Vec::with_capacity(addrs.len());
                for &addr in addrs {
                    if instances.iter().any(|upstream| upstream.addr == addr) {
                        continue;
                    }
                    let upstream = made.entry(addr).or_insert_with(|| {
                        known.get(&addr).map_or_else(
                            || Arc::new(Upstream::new(addr, traffic)),
                            |&known| known.clone(),
                        )
                    });
                    instances.push(upstream.clone());
                }
                let turn = turns.entry(Box::from(name)).or_default().clone();
                let app = App {
                    instances: instances.into_boxed_slice(),
                    turn,
                };
                (Box::from(name), app)
            })
            .collect();
        let hosts = routes
            .hosts()
            .map(|(host, route)| {
                let custom = CustomHost {
                    app: Box::from(route.app.as_str()),
                    https_redirect: route.https_redirect,
                };
                (Box::from(host), custom)
            })
            .collect();
        Table { apps, hosts }
    }
}

/// Round robin's next turn per app, shared by every worker. Only building a table
/// looks here; requests touch the counters themselves.
#[derive(Default)]
pub(crate) struct Turns(Mutex<HashMap<Box<str>, Arc<AtomicUsize>>>);

/// The table of the newest snapshot any connection of a worker has seen, shared by
/// all of them so that a snapshot is turned into a table once, not once per
/// connection.
struct Built {
    routes: Option<Arc<Routes>>,
    table: Arc<Table>,
    turns: Arc<Turns>,
    traffic: Traffic,
}

/// What one client connection (or the accept loop) holds: its own receiver, and the
/// table of the snapshot it saw last.
#[derive(Clone)]
pub(crate) struct RouteView {
    routes: RoutesReceiver,
    table: Arc<Table>,
    built: Arc<Mutex<Built>>,
}

impl RouteView {
    /// A worker's first view: tables of its own, turns and traffic shared with the
    /// others.
    pub(crate) fn new(
        mut routes: RoutesReceiver,
        turns: Arc<Turns>,
        traffic: Traffic,
    ) -> RouteView {
        let built = Arc::new(Mutex::new(Built {
            routes: None,
            table: Arc::default(),
            turns,
            traffic,
        }));
        let snapshot = routes.borrow_and_update().clone();
        let table = table_for(&built, &snapshot);
        RouteView {
            routes,
            table,
            built,
        }
    }

    /// The table of the newest snapshot. Costs an atomic load unless a new snapshot was
    /// published since the last call.
    pub(crate) fn current(&mut self) -> &Arc<Table> {
        // An error means the daemon dropped its sender (it is stopping): the last
        // snapshot stays.
        if self.routes.has_changed().unwrap_or(false) {
            let snapshot = self.routes.borrow_and_update().clone();
            self.table = table_for(&self.built, &snapshot);
        }
        &self.table
    }
}

fn table_for(built: &Mutex<Built>, routes: &Arc<Routes>) -> Arc<Table> {
    let mut built = built.lock().unwrap_or_else(PoisonError::into_inner);
    if !built
        .routes
        .as_ref()
        .is_some_and(|seen| Arc::ptr_eq(seen, routes))
    {
        built.table = Arc::new(Table::build(
            routes,
            &built.table,
            &built.turns,
            &built.traffic,
        ));
        built.routes = Some(routes.clone());
    }
    built.table.clone()
}

#[cfg(test)]
mod tests {
    use tokio::sync::watch;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn state_carries_over_to_the_next_snapshot() {
        let first: Routes = [("web", vec![addr(1), addr(2), addr(1)])]
            .into_iter()
            .collect();
        let turns = Turns::default();
        let traffic = Traffic::new();
        let one = Table::build(&first, &Table::default(), &turns, &traffic);
        let web = one.app("web").expect("web");
        assert_eq!(web.instances.len(), 2, "a repeated address is tried once");
        assert_eq!(web.next_turn(), 0);
        web.instances[1].refused();

        let second: Routes = [("web", vec![addr(2), addr(3)]), ("api", vec![addr(2)])]
            .into_iter()
            .collect();
        let two = Table::build(&second, &one, &turns, &traffic);
        let web = two.app("web").expect("web");
        assert_eq!(web.next_turn(), 1, "round robin goes on");
        assert!(Arc::ptr_eq(
            &web.instances[0],
            &one.app("web").expect("web").instances[1]
        ));
        assert!(web.instances[0].suspect(), "the refusal is remembered");
        assert!(!web.instances[1].suspect());
        let api = two.app("api").expect("api");
        assert!(
            Arc::ptr_eq(&api.instances[0], &web.instances[0]),
            "one state per address"
        );
        assert_eq!(api.next_turn(), 0);
        web.instances[0].answered();
        assert!(!api.instances[0].suspect());
        assert!(two.app("ghost").is_none());

        // A retired instance is not carried over: its address, listed again, is a new
        // instance with a fresh state once the drain is over.
        traffic.retire(&[addr(3)]);
        traffic.forget(&[addr(3)]);
        let three = Table::build(&second, &two, &turns, &traffic);
        let web = three.app("web").expect("web");
        assert!(!Arc::ptr_eq(
            &web.instances[1],
            &two.app("web").expect("web").instances[1]
        ));
        assert!(!web.instances[1].presence.retired());
        assert!(Arc::ptr_eq(
            &web.instances[0],
            &two.app("web").expect("web").instances[0]
        ));
    }

    #[test]
    fn custom_hosts_lead_to_apps_of_the_snapshot() {
        let mut routes: Routes = [("web", vec![addr(1)])].into_iter().collect();
        routes.insert_host("www.example.com", "web", true);
        routes.insert_host("old.example.com", "gone", false);
        let table = Table::build(
            &routes,
            &Table::default(),
            &Turns::default(),
            &Traffic::new(),
        );
        let (custom, app) = table.host("www.example.com").expect("the host");
        assert!(custom.https_redirect);
        assert_eq!(app.instances[0].addr, addr(1));
        assert!(
            table.host("old.example.com").is_none(),
            "a host of an app that is not there"
        );
        assert!(table.host("web.example.com").is_none());
    }

    #[test]
    fn a_view_sees_a_new_snapshot() {
        let (publish, receiver) = watch::channel(Arc::new(Routes::new()));
        let turns = Arc::new(Turns::default());
        let mut view = RouteView::new(receiver, turns.clone(), Traffic::new());
        assert!(view.current().app("web").is_none());
        publish.send_replace(Arc::new([("web", vec![addr(1)])].into_iter().collect()));
        assert_eq!(view.current().app("web").expect("web").instances.len(), 1);
        let mut other = view.clone();
        assert!(Arc::ptr_eq(view.current(), other.current()), "built once");
        // Another worker: tables of its own, turns in common.
        let (_publish, receiver) = watch::channel(publish.borrow().clone());
        let mut worker = RouteView::new(receiver, turns, Traffic::new());
        assert!(!Arc::ptr_eq(view.current(), worker.current()));
        let (mine, theirs) = (
            view.current().app("web").expect("web"),
            worker.current().app("web").expect("web"),
        );
        assert_eq!((mine.next_turn(), theirs.next_turn()), (0, 1));
        drop(publish);
        assert!(
            view.current().app("web").is_some(),
            "the last snapshot stays"
        );
    }
}
