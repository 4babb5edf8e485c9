//! The membership the router serves from: a snapshot of every app and the addresses of
//! its instances that are up, and of the custom hosts that lead to them, published as a
//! whole whenever it changes.

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
///
/// Besides `APP.<domain>`, an app may be reached at custom hosts
/// ([`Routes::insert_host`]), which are routed exactly like its own name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    apps: HashMap<String, Vec<SocketAddr>>,
    hosts: HashMap<String, HostRoute>,
}

/// Where a custom host leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    /// The app (its lower-case name).
    pub app: String,
    /// Whether plain-HTTP requests for the host are redirected to HTTPS (308). The router
    /// redirects only when it has an HTTPS listener.
    pub https_redirect: bool,
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

    /// Routes requests for `host` (a DNS name, matched without regard to case, without a
    /// port) to `app`, redirecting plain HTTP to HTTPS if `https_redirect`. A host that
    /// has the form `APP.<domain>` of an app in the snapshot leads to that app instead.
    pub fn insert_host(&mut self, host: &str, app: &str, https_redirect: bool) {
        self.hosts.insert(
            host.to_ascii_lowercase(),
            HostRoute {
                app: app.to_ascii_lowercase(),
                https_redirect,
            },
        );
    }

    /// Where the custom host `host` (lower case) leads, if anywhere.
    pub fn host(&self, host: &str) -> Option<&HostRoute> {
        self.hosts.get(host)
    }

    /// Every custom host (lower case) and where it leads, in no particular order.
    pub fn hosts(&self) -> impl Iterator<Item = (&str, &HostRoute)> {
        self.hosts
            .iter()
            .map(|(host, route)| (host.as_str(), route))
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

    #[test]
    fn custom_hosts_are_lower_case() {
        let mut routes = Routes::new();
        routes.insert_host("WWW.Example.com", "Web", true);
        let route = routes.host("www.example.com").expect("the host");
        assert_eq!(route.app, "web");
        assert!(route.https_redirect);
        assert!(
            routes.host("WWW.Example.com").is_none(),
            "lookups take lower case"
        );
        assert_eq!(routes.hosts().count(), 1);
    }
}
