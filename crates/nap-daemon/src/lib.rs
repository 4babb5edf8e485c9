//! The long-running daemon behind `nap serve`.
//!
//! One process owns all state. The SSH front door, the local CLI (over the
//! control socket) and git's pre-receive hook (also over the control socket)
//! are thin clients: they hand requests to [`Daemon`], which decides.

mod app_lock;
mod app_operations;
mod apps;
mod commands;
pub mod control;
mod deploy;
mod domains;
pub mod fleet;
mod gate;
mod git_exec;
mod healthcheck;
pub mod hook;
mod instances;
mod isolation;
mod operation;
mod output;
mod pipeline;
mod push;
mod remote_check;
mod repo;
mod routing;
mod tls;
mod tokens;
mod users;
mod web;

pub use apps::AppsError;
pub use control::{Request, call};
pub use isolation::{AppUidError, DEFAULT_APP_UIDS, Isolation, IsolationError, SandboxSettings};
pub use nap_core::remote::{Network, NetworkError};
pub use output::Out;
pub use tls::AcmeSettings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nap_store::DataDir;
use tokio::net::TcpListener;
use tracing::info;

/// Everything the daemon needs to know, already validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The data directory.
    pub data: PathBuf,
    /// Where the SSH front door listens.
    pub ssh: SocketAddr,
    /// Where the web manager and JSON API listen.
    pub http: SocketAddr,
    /// Where the app router listens.
    pub router: SocketAddr,
    /// Where the app router's HTTPS listener listens.
    pub https: SocketAddr,
    /// Where certificates come from.
    pub acme: AcmeSettings,
    /// Apps are reached at `APP.<domain>` through the router.
    pub domain: String,
    /// The SSH login name.
    pub git_user: String,
    /// Branches whose pushes deploy.
    pub deploy_branches: Vec<String>,
    /// The nap binary, which git runs as the pre-receive hook.
    pub nap_bin: PathBuf,
    /// The `git` program.
    pub git: PathBuf,
    /// Caps of the SSH front door.
    pub max_connections: usize,
    /// Time a client has to authenticate.
    pub auth_timeout: Duration,
    /// Ports handed to instances.
    pub ports: std::ops::Range<u16>,
    /// Most instances of one app.
    pub max_scale: u32,
    /// How long a new instance that does not accept on its port yet must stay
    /// alive to count as healthy (one that accepts is healthy at once).
    pub health_grace: Duration,
    /// How long a new instance may take to listen on its port; one alive but
    /// not listening by then counts as a worker.
    pub boot_timeout: Duration,
    /// How long a deploy waits for another deploy of the same app.
    pub deploy_lock_timeout: Duration,
    /// How long a one-off `run` may take before it is killed.
    pub run_timeout: Duration,
    /// Most files a pushed tree may have; a push over it is refused.
    pub max_files: usize,
    /// Most bytes a pushed tree's files may add up to; a push over it is refused.
    pub max_bytes: u64,
    /// Networks besides the public internet that a non-admin's `deploy --from`
    /// may fetch from (the operator's own git server, say).
    pub deploy_from_networks: Vec<nap_core::remote::Network>,
    /// How long an instance taken out of the router's rotation may go on answering
    /// the requests it has before it is stopped anyway.
    pub drain_timeout: Duration,
    /// Whether instances get memory cgroups (when the machine allows).
    pub cgroups: bool,
    /// Mark the web manager's cookies `Secure` (it is reached over https).
    pub secure_cookies: bool,
    /// Run instances across a fleet cluster instead of the local supervisor.
    pub fleet: Option<fleet::FleetSettings>,
    /// Whether the local supervisor's instances run in a sandbox.
    pub isolation: Isolation,
    /// The sandbox's settings (with [`Isolation::Sandbox`]).
    pub sandbox: SandboxSettings,
}

/// Something stopped the daemon from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be prepared.
    #[error(transparent)]
    Store(#[from] nap_store::StoreError),
    /// The host key could not be loaded or made.
    #[error(transparent)]
    HostKey(#[from] nap_ssh::HostKeyError),
    /// A listener could not be opened.
    #[error("cannot listen on {what} {address}: {source}")]
    Listen {
        /// Which listener.
        what: &'static str,
        /// Where.
        address: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another daemon runs on this data directory.
    #[error("another nap daemon already serves {0} (its control socket answers)")]
    AlreadyRunning(PathBuf),
    /// The users file could not be read.
    #[error(transparent)]
    Users(#[from] users::UsersError),
    /// The fleet runtime's settings are wrong.
    #[error("fleet: {0}")]
    Fleet(nap_fleet::FleetSetupError),
    /// The daemon's secret for release tokens cannot be used.
    #[error(transparent)]
    Secret(#[from] fleet::SecretError),
    /// The supervisor could not start.
    #[error("cannot start the supervisor: {0}")]
    Supervisor(#[from] nap_supervisor::NewError),
    /// Apps cannot be isolated as configured (no sandbox here, a bad uid range).
    #[error(transparent)]
    Isolation(#[from] IsolationError),
    /// The certificate store cannot be opened.
    #[error("certificates: {0}")]
    Certs(#[from] nap_certs::CertStoreError),
    /// The HTTPS listener's TLS cannot be set up.
    #[error(transparent)]
    TlsSetup(#[from] nap_certs::TlsSetupError),
}

/// The addresses a running daemon actually listens on (ports may have been 0).
#[derive(Debug, Clone)]
pub struct Bound {
    /// The SSH front door.
    pub ssh: SocketAddr,
    /// The web manager and JSON API.
    pub http: SocketAddr,
    /// The app router.
    pub router: SocketAddr,
    /// The app router's HTTPS listener.
    pub https: SocketAddr,
}

/// The daemon's shared state.
pub struct Daemon {
    settings: Settings,
    data: DataDir,
    users: users::UserBook,
    apps: apps::Apps,
    /// Custom hosts and the apps' HTTPS settings (`DATA/domains.json`).
    domains: domains::Domains,
    /// Certificates and ACME (`DATA/certs`).
    tls: tls::Tls,
    pushes: hook::Pushes,
    runtime: Arc<dyn nap_runtime::Runtime>,
    /// The local supervisor (also inside `runtime`), for one-off `run`s; `None` with fleet.
    local: Option<nap_supervisor::Supervisor>,
    /// The one-off `run`s under way, which a destroy ends.
    one_offs: commands::OneOffs,
    tokens: tokens::TokenBook,
    /// Signs release tarball tokens (`DATA/secret`).
    secret: String,
    /// Releases being deployed, whose tarballs machines may already fetch.
    pending: Arc<fleet::PendingReleases>,
    /// One lock per app: operations on an app wait for each other.
    app_locks: app_lock::AppLocks,
    /// The operations under way, which outlive their clients.
    operations: operation::Operations,
    /// The router's routes, and draining instances before they stop.
    routing: routing::Routing,
    /// How instances are kept apart.
    confinement: isolation::Confinement,
    /// The probed sandbox, which builds and release phases run in (`None` without one:
    /// `isolation: none` or the fleet runtime).
    sandbox: Option<Arc<nap_sandbox::Sandbox>>,
}

/// How long a stopping daemon waits for its operations to undo what they began.
const OPERATIONS_PATIENCE: Duration = Duration::from_secs(60);

impl Daemon {
    async fn new(settings: Settings) -> Result<Daemon, ServeError> {
        let data = DataDir::new(&settings.data).map_err(|source| nap_store::StoreError::Io {
            path: settings.data.clone(),
            source,
        })?;
        for dir in [
            data.root().to_owned(),
            data.repos(),
            data.apps(),
            data.logs(),
            data.run(),
        ] {
            nap_store::create_dir(&dir)?;
        }
        let users = users::UserBook::load(data.users_file())?;
        let domains = domains::Domains::load(data.domains_file())?;
        let tls = tls::Tls::open(&data.certs(), &settings.acme)?;
        let secret = fleet::load_or_create_secret(&data.root().join("secret"))?;
        let pending = Arc::new(fleet::PendingReleases::default());
        let mut probed = None;
        let (runtime, local, confinement): (Arc<dyn nap_runtime::Runtime>, _, _) = match &settings
            .fleet
        {
            None => {
                let mut config =
                    nap_supervisor::Config::new(settings.ports.clone(), data.logs(), data.run());
                if !settings.cgroups {
                    config.cgroups = nap_supervisor::CgroupMode::Off;
                }
                // Before anything else runs: a sandbox that cannot be made stops the daemon.
                let confinement = match settings.isolation {
                    Isolation::Sandbox => {
                        let sandbox = isolation::probe(&settings.sandbox, &data).await?;
                        let per_app_uids = sandbox.runs_as_root();
                        if per_app_uids {
                            isolation::check_app_uid_range(&settings.sandbox.app_uids)
                                .map_err(IsolationError::from)?;
                        }
                        info!(bwrap = %sandbox.bwrap().display(), version = %sandbox.version(), per_app_uids, "every instance runs in the sandbox");
                        let sandbox = Arc::new(sandbox);
                        probed = Some(sandbox.clone());
                        config.isolation = nap_supervisor::Isolation::Sandbox(sandbox);
                        isolation::Confinement::Sandboxed { per_app_uids }
                    }
                    Isolation::None => {
                        tracing::warn!("isolation: none: {}", isolation::NOT_ISOLATED);
                        isolation::Confinement::None
                    }
                };
                let supervisor = nap_supervisor::Supervisor::new(config).await?;
                (
                    Arc::new(nap_supervisor::Local::new(supervisor.clone())),
                    Some(supervisor),
                    confinement,
                )
            }
            Some(cluster) => {
                if settings.isolation == Isolation::None {
                    tracing::warn!(
                        "isolation: none has no effect with runtime: fleet; units always run in systemd's sandbox"
                    );
                }
                let config = nap_fleet::FleetConfig {
                    fleet_endpoint: cluster.endpoint.clone(),
                    etcd_endpoints: cluster.etcd_endpoints.clone(),
                    nap_url: cluster.nap_url.clone(),
                    tarballs: Arc::new(fleet::ReleaseTokens {
                        secret: secret.clone(),
                        data: data.clone(),
                        pending: pending.clone(),
                    }),
                };
                let options = nap_fleet::FleetOptions {
                    ports: settings.ports.clone(),
                    ..Default::default()
                };
                let runtime =
                    nap_fleet::FleetRuntime::new(config, options).map_err(ServeError::Fleet)?;
                (Arc::new(runtime), None, isolation::Confinement::Cluster)
            }
        };
        let app_uids = match confinement {
            isolation::Confinement::Sandboxed { per_app_uids: true } => {
                Some(settings.sandbox.app_uids.clone())
            }
            _ => None,
        };
        let apps = apps::Apps::new(data.clone(), app_uids, settings.nap_bin.clone());
        // Apps made before nap gave out uids (or while it ran unsandboxed) get theirs now,
        // before anything starts them.
        let assigned = apps
            .assign_missing_uids()
            .await
            .map_err(IsolationError::from)?;
        if assigned > 0 {
            info!(apps = assigned, "gave existing apps uids of their own");
        }
        let routing = routing::Routing::new(
            runtime.up_addresses(),
            nap_router::Traffic::new(),
            settings.drain_timeout,
        );
        Ok(Daemon {
            secret,
            pending,
            tokens: tokens::TokenBook::load(data.root().join("tokens.json"))?,
            runtime,
            local,
            one_offs: commands::OneOffs::default(),
            app_locks: app_lock::AppLocks::default(),
            operations: operation::Operations::default(),
            routing,
            apps,
            confinement,
            sandbox: probed,
            domains,
            tls,
            users,
            pushes: hook::Pushes::default(),
            data,
            settings,
        })
    }
}

async fn listen(
    what: &'static str,
    address: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ServeError> {
    let error = |source| ServeError::Listen {
        what,
        address: address.to_string(),
        source,
    };
    let listener = TcpListener::bind(address).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

/// Runs the daemon until `shutdown` completes. `ready` learns the bound
/// addresses once every listener is open and every app is back up.
pub async fn serve(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send,
    ready: impl FnOnce(&Bound),
) -> Result<(), ServeError> {
    let daemon = Arc::new(Daemon::new(settings).await?);
    let host_key = nap_ssh::load_or_create_host_key(&daemon.data.host_key())?;
    let control = control::bind(&daemon.data.socket()).await?;
    let (ssh_listener, ssh) = listen("ssh", daemon.settings.ssh).await?;
    let (http_listener, http) = listen("http", daemon.settings.http).await?;
    let (router_listener, router) = listen("router", daemon.settings.router).await?;
    let (https_listener, https) = listen("https", daemon.settings.https).await?;
    let https_acceptor = daemon
        .tls
        .store
        .https_acceptor(nap_certs::DEFAULT_HANDSHAKE_TIMEOUT)?;
    let bound = Bound {
        ssh,
        http,
        router,
        https,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut tasks = tokio::task::JoinSet::new();
    // The routes are fed before the apps come back: restoring an app waits until its
    // instances are in the published routes, as every deploy does, and without the
    // feed they would never be (each restore then waited out the drain timeout).
    routing::load_apps(&daemon).await;
    tasks.spawn({
        let (daemon, stop) = (daemon.clone(), stopped(stop_rx.clone()));
        async move {
            routing::feed(daemon, stop).await;
            Ok(())
        }
    });
    // Apps come back before the daemon says it is ready, so whoever waits
    // for that line finds them running.
    daemon.restore_all().await;
    info!(%ssh, %http, %router, %https, data = %daemon.data.root().display(), "nap is serving");
    for network in &daemon.settings.deploy_from_networks {
        if network.reaches_this_machine() {
            tracing::warn!(%network, "deploy_from_networks includes this machine's own addresses: non-admins may make nap fetch from its local services");
        } else {
            info!(%network, "non-admins may deploy --from this network");
        }
    }
    ready(&bound);

    let options = nap_ssh::Options {
        git_user: daemon.settings.git_user.clone(),
        max_connections: daemon.settings.max_connections,
        auth_timeout: daemon.settings.auth_timeout,
        ..nap_ssh::Options::default()
    };
    let gate: Arc<dyn nap_ssh::Gate> = Arc::new(gate::SshGate(daemon.clone()));
    tasks.spawn(nap_ssh::serve(
        ssh_listener,
        host_key,
        options,
        gate,
        stopped(stop_rx.clone()),
    ));
    let tarballs = axum::Router::new()
        .route(
            "/api/apps/{app}/releases/{release}/tarball",
            axum::routing::get(fleet::tarball),
        )
        .with_state(daemon.clone());
    let web = nap_web::router(
        Arc::new(web::WebBackend(daemon.clone())),
        nap_web::Options {
            secure_cookies: daemon.settings.secure_cookies,
        },
    );
    tasks.spawn(nap_web::serve(
        http_listener,
        web.merge(tarballs),
        stopped(stop_rx.clone()),
    ));
    let router_options = nap_router::Options {
        domain: daemon.settings.domain.clone(),
        traffic: daemon.routing.traffic(),
        challenges: Some(daemon.tls.challenges.clone()),
        ..nap_router::Options::default()
    };
    let listeners = nap_router::Listeners {
        http: router_listener,
        https: Some(nap_router::Https {
            listener: https_listener,
            acceptor: https_acceptor,
        }),
    };
    tasks.spawn(nap_router::serve_listeners(
        listeners,
        router_options,
        daemon.routing.receiver(),
        stopped(stop_rx.clone()),
    ));
    tasks.spawn({
        let daemon = daemon.clone();
        let stop = stopped(stop_rx.clone());
        async move {
            daemon.renew_certificates(stop).await;
            Ok(())
        }
    });
    tasks.spawn({
        let daemon = daemon.clone();
        async move {
            control::serve(control, daemon, stopped(stop_rx)).await;
            Ok(())
        }
    });
    shutdown.await;
    info!("shutting down");
    // What is under way is undone (a deploy stops its new instances, a push's
    // git ends) before the doors close and the runtime stops what is left.
    daemon.operations.cancel_all(OPERATIONS_PATIENCE).await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    daemon.runtime.shutdown().await;
    let _ = std::fs::remove_file(daemon.data.socket());
    Ok(())
}
