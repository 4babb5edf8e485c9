//! The membership the router serves from: a snapshot of every app and the addresses of
//! its instances that are up, published as a whole whenever it changes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

/// Every app the router knows, with the addresses of its instances that are up.
///
/// An app present with an empty list exists but has nothing running (the router answers
/// 502); an app that is absent is no app at all (404). The order of an app's addresses
/// is the order round robin walks, so it should be stable from one snapshot to the next.
///
/// The daemon builds a new `Routes` whenever an instance comes up or goes down and
/// publishes it through a [`RoutesReceiver`]'s channel; the router never asks for
/// membership on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    apps: HashMap<String, Vec<SocketAddr>>,
}

/// The receiving end of the channel the daemon publishes [`Routes`] through: the router
/// keeps a clone per client connection and, per request, only checks whether a new
/// snapshot arrived (an atomic load); it takes the channel's lock only when one did.
pub type RoutesReceiver = watch::Receiver<Arc<Routes>>;

impl Routes {
    /// No apps at all: every request is answered 404.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Sets `app`'s instances, replacing any it had. App names are matched the way
    /// hosts are, without regard to case.
    pub fn insert(&mut self, app: &str, instances: Vec<SocketAddr>) {
        self.apps.insert(app.to_ascii_lowercase(), instances);
    }

    /// The addresses of `app`'s up instances; `None` if there is no such app.
    pub fn instances(&self, app: &str) -> Option<&[SocketAddr]> {
        self.apps.get(app).map(Vec::as_slice)
    }

    /// Every app (its lower-case name) and its instances, in no particular order.
    pub fn apps(&self) -> impl Iterator<Item = (&str, &[SocketAddr])> {
        self.apps
            .iter()
            .map(|(name, instances)| (name.as_str(), instances.as_slice()))
    }

    /// How many apps there are.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// Whether there are no apps.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }
}

impl<Name: AsRef<str>> FromIterator<(Name, Vec<SocketAddr>)> for Routes {
    fn from_iter<Apps: IntoIterator<Item = (Name, Vec<SocketAddr>)>>(apps: Apps) -> Routes {
        let mut routes = Routes::new();
        for (name, instances) in apps {
            routes.insert(name.as_ref(), instances);
        }
        routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_and_empty_apps_stay() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let routes: Routes = [("Web", vec![addr]), ("idle", vec![])]
            .into_iter()
            .collect();
        assert_eq!(routes.instances("web"), Some(&[addr][..]));
        assert_eq!(routes.instances("Web"), None, "lookups take lower case");
        assert_eq!(routes.instances("idle"), Some(&[][..]));
        assert_eq!(routes.instances("ghost"), None);
        assert_eq!(routes.len(), 2);
    }
}
