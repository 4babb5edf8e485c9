//! What the fleet runtime needs ([`FleetConfig`]) and how it behaves
//! ([`FleetOptions`]).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{FleetError, RetryPolicy};
use crate::etcd::EtcdError;
use crate::render::Templates;

/// Hands machines the way to fetch a release: nap's HTTP API serves each
/// release as a tarball to whoever shows the release's token.
pub trait ReleaseTarballs: Send + Sync + 'static {
    /// The token a machine sends (`Authorization: Bearer TOKEN`) to fetch
    /// `release` of `app`. It must stay valid as long as the release may run:
    /// a machine fetches again when fleet moves an instance to it.
    fn token(&self, app: &str, release: &str) -> Result<String, nap_runtime::BackendError>;

    /// Where the tarball is; by default [`tarball_url`], nap's HTTP API.
    fn url(&self, nap_url: &str, app: &str, release: &str) -> String {
        tarball_url(nap_url, app, release)
    }
}

impl<F> ReleaseTarballs for F
where
    F: Fn(&str, &str) -> Result<String, nap_runtime::BackendError> + Send + Sync + 'static,
{
    fn token(&self, app: &str, release: &str) -> Result<String, nap_runtime::BackendError> {
        self(app, release)
    }
}

/// `NAP_URL/api/apps/APP/releases/RELEASE/tarball`: where nap's HTTP API
/// serves a release's tree as a gzipped tar.
pub fn tarball_url(nap_url: &str, app: &str, release: &str) -> String {
    format!(
        "{}/api/apps/{app}/releases/{release}/tarball",
        nap_url.trim_end_matches('/')
    )
}

/// What the fleet runtime needs.
#[derive(Clone)]
pub struct FleetConfig {
    /// fleet's API: `http://host:port` or `unix:///var/run/fleet.sock`.
    pub fleet_endpoint: String,
    /// etcd (`http://host:port`, any of the cluster's). Empty: no discovery
    /// sidekicks, and addresses come from fleet's machine list.
    pub etcd_endpoints: Vec<String>,
    /// nap's HTTP API as the machines reach it, e.g. `http://10.0.0.1:8080`.
    pub nap_url: String,
    /// Tokens (and URLs) of release tarballs.
    pub tarballs: Arc<dyn ReleaseTarballs>,
}

impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConfig")
            .field("fleet_endpoint", &self.fleet_endpoint)
            .field("etcd_endpoints", &self.etcd_endpoints)
            .field("nap_url", &self.nap_url)
            .finish_non_exhaustive()
    }
}

/// How the fleet runtime behaves; every field has a default.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Ports for instances, unique across the cluster (20000..30000). They
    /// must be free on every machine.
    pub ports: Range<u16>,
    /// The Unix user instances run as on the machines (`nap`).
    pub run_as: String,
    /// Where machines keep release trees (`/var/lib/nap/instances`); it must
    /// be writable by `run_as`.
    pub work_dir: String,
    /// The machine's own settings for the sidekick (`/etc/nap/node.env`).
    pub node_env_file: String,
    /// etcd as the machines reach it, if not as nap does.
    pub node_etcd_endpoints: Option<Vec<String>>,
    /// The discovery key's lease (60 s).
    pub etcd_ttl: Duration,
    /// How often the sidekick refreshes it (20 s).
    pub etcd_refresh: Duration,
    /// How long fleet may take to place a new unit (30 s).
    pub schedule_timeout: Duration,
    /// How long a placed unit may take to become active, fetch included (120 s).
    pub activation_timeout: Duration,
    /// How long a stopped unit may take to disappear from its machine (30 s).
    pub stop_timeout: Duration,
    /// How often fleet is asked while waiting (500 ms).
    pub poll_interval: Duration,
    /// How often the addresses of the instances that are up are read again for the router,
    /// besides after each start, health check and stop (1 s).
    pub discovery_interval: Duration,
    /// Retries while fleet answers 503.
    pub retry: RetryPolicy,
    /// The unit templates (those of `deploy/fleet/`, built in).
    pub templates: Templates,
}

impl Default for FleetOptions {
    fn default() -> FleetOptions {
        FleetOptions {
            ports: 20000..30000,
            run_as: "nap".to_owned(),
            work_dir: "/var/lib/nap/instances".to_owned(),
            node_env_file: "/etc/nap/node.env".to_owned(),
            node_etcd_endpoints: None,
            etcd_ttl: Duration::from_secs(60),
            etcd_refresh: Duration::from_secs(20),
            schedule_timeout: Duration::from_secs(30),
            activation_timeout: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            discovery_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            templates: Templates::default(),
        }
    }
}

/// Why the runtime cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum FleetSetupError {
    /// The fleet endpoint is wrong.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// An etcd endpoint is wrong.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// Another setting is wrong.
    #[error("fleet runtime: {0}")]
    Invalid(String),
}
