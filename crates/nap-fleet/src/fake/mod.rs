//! An in-repo fake of fleet's HTTP API v1, for tests: no package registry
//! here ships fleet, and its code may not be vendored. It is written from
//! fleet v1.0.0's documented and observed behaviour (`shared/FLEET.md`):
//!
//! - `PUT /fleet/v1/units/NAME` needs `Content-Type: application/json`
//!   (415); a new unit needs options (409 "unit does not exist and options
//!   field empty"); a body `name` other than the URL's, a bad unit name or
//!   unsatisfiable `[X-Fleet]` requirements are 400; other options on an
//!   existing name replace the unit (201); a body with only `desiredState`
//!   is 204 and is **not** validated: a bogus state is stored and the unit
//!   answers 500 (with an empty message) from then on;
//! - a template may be stored `inactive`; making it anything else is 400
//!   `cannot activate template "NAME"` (stricter than fleet, the fake says
//!   so also when the template is created in another state);
//! - `DELETE` is 204, 404 for unknown units; `GET` of a unit is 404 if
//!   missing;
//! - collections page by an opaque `nextPageToken` (fleet's own encoding),
//!   with a configurable page size; a full last page still has a token,
//!   which leads to `{}`; an empty collection is `{}`;
//! - errors are `{"error":{"code":N,"message":"…"}}`;
//! - until the machine has "registered", every call is 503 "fleet server
//!   unable to communicate with etcd";
//! - a scheduler over configured machines that honours `MachineID`,
//!   `MachineMetadata`, `MachineOf` and `Conflicts` globs (both ways),
//!   least-loaded first, and reports `systemdActiveState: active` for
//!   launched units unless a test says otherwise ([`FakeFleet::fail_unit`]);
//! - with [`FakeOptions::run_units_in`], machines that run what fleet
//!   hands them, as their systemd would: each launched unit's
//!   `ExecStartPre=`, `ExecStart=` and `ExecStopPost=` run for real (in
//!   bubblewrap, each machine with its own `/var/lib` and `/run`), and the
//!   unit's state is what they make of it: a unit whose release cannot be
//!   fetched is `activating/auto-restart`, as on a real machine. See
//!   [Machines](self#machines) for what is and is not done.
//!
//! Every answer carries `Server: nap-fleet-fake`, and the log says [`FAKE`].
//!
//! # Machines
//!
//! Each machine has a directory under `run_units_in` that stands in for
//! its `/var/lib`, `/run`, `/var/cache`, `/var/log` and (for
//! `EnvironmentFile=`) `/etc`; [`FakeFleet::machine_root`] names it. Every
//! command runs in bubblewrap with those directories in their places and in
//! a PID namespace of its own, so that stopping a unit kills all it
//! started. The mounts of `BindPaths=`, `BindReadOnlyPaths=`,
//! `TemporaryFileSystem=`, and for commands without `+`,
//! `InaccessiblePaths=` and `PrivateTmp=`, are applied as systemd applies
//! them; `User=`, `DynamicUser=` and systemd's other protections are not:
//! commands run as the test's user. [`RUNS_UNITS`] says so in test output.
//! A unit deleted from fleet is killed without its stop commands, as
//! fleet's unload path does (it removes the unit file while systemd stops
//! the unit); [`FakeFleet::journal`] shows what a unit's commands printed.

mod api;
mod machine;
mod registry;
mod systemd;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::{JoinHandle, JoinSet};

use api::{error, parse_query, percent_decode, route};
use machine::Executor;
pub use machine::RUNS_UNITS;
pub use registry::FakeMachine;
use registry::{Override, Registry};

use crate::unit::{UnitOption, is_template};

/// What the fake calls itself in logs and test output.
pub const FAKE: &str = "in-repo fake of fleet API v1 (nap-fleet::fake, not fleetd)";

/// What fleet answers before its machine has registered in etcd.
pub const UNREGISTERED_MESSAGE: &str = "fleet server unable to communicate with etcd";

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The cluster's machines.
    pub machines: Vec<FakeMachine>,
    /// Items per page (fleetd's default is 100).
    pub page_size: u16,
    /// How many requests get 503 before the machine counts as registered.
    pub unregistered_requests: u32,
    /// Where the machines keep their files. When set, the machines run each
    /// launched unit as their systemd would (see [Machines](self#machines));
    /// when not, a launched unit is simply `active`.
    pub run_units_in: Option<std::path::PathBuf>,
}

impl Default for FakeOptions {
    /// Three machines, 10.0.0.1–3; fleet's page size; registered.
    fn default() -> FakeOptions {
        FakeOptions {
            machines: (1..=3)
                .map(|i| FakeMachine::new(&format!("{i:0>32}"), &format!("10.0.0.{i}")))
                .collect(),
            page_size: 100,
            unregistered_requests: 0,
            run_units_in: None,
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// GET, PUT, DELETE, …
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Every `Content-Type` header.
    pub content_types: Vec<String>,
    /// The body, as text.
    pub body: String,
}

struct State {
    registry: Registry,
    page_size: u16,
    unregistered_requests: u32,
    seen: Vec<SeenRequest>,
    executor: Option<Executor>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock can only come from a bug in the fake;
    // its state is still the best there is.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake fleet. Dropping it stops the server.
pub struct FakeFleet {
    state: Shared,
    endpoint: String,
    server: JoinHandle<()>,
}

impl Drop for FakeFleet {
    fn drop(&mut self) {
        self.server.abort();
        // Stops every unit the machines run (their processes are killed
        // with them).
        lock(&self.state).executor = None;
    }
}

impl FakeFleet {
    /// Serves on 127.0.0.1 (a free port).
    pub async fn start(options: FakeOptions) -> std::io::Result<FakeFleet> {
        FakeFleet::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    /// Serves on `address`.
    pub async fn start_at(address: SocketAddr, options: FakeOptions) -> std::io::Result<FakeFleet> {
        let listener = TcpListener::bind(address).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let state = new_state(options);
        let server = tokio::spawn(serve(state.clone(), Listener::Tcp(listener)));
        tracing::info!(%endpoint, "{FAKE} listening");
        Ok(FakeFleet {
            state,
            endpoint,
            server,
        })
    }

    /// Serves on a unix socket at `path`, as fleetd's default
    /// `/var/run/fleet.sock`.
    pub async fn start_unix(path: &Path, options: FakeOptions) -> std::io::Result<FakeFleet> {
        let listener = UnixListener::bind(path)?;
        let endpoint = format!("unix://{}", path.display());
        let state = new_state(options);
        let server = tokio::spawn(serve(state.clone(), Listener::Unix(listener)));
        tracing::info!(%endpoint, "{FAKE} listening");
        Ok(FakeFleet {
            state,
            endpoint,
            server,
        })
    }

    /// `http://127.0.0.1:PORT` or `unix:///path`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Makes the next `requests` requests answer 503, as before registration.
    pub fn unregister_for(&self, requests: u32) {
        lock(&self.state).unregistered_requests = requests;
    }

    /// Makes a unit show as failed on its machine (`failed`/`failed`), as
    /// when its process keeps dying.
    pub fn fail_unit(&self, name: &str) {
        self.set_systemd_state(name, "failed", "failed");
    }

    /// Makes a unit show any systemd active and sub state, e.g.
    /// `activating`/`auto-restart`.
    pub fn set_systemd_state(&self, name: &str, active: &str, sub: &str) {
        lock(&self.state).registry.overrides.insert(
            name.to_owned(),
            Override {
                active: active.to_owned(),
                sub: sub.to_owned(),
            },
        );
    }

    /// Back to what the scheduler says.
    pub fn clear_systemd_state(&self, name: &str) {
        lock(&self.state).registry.overrides.remove(name);
    }

    /// Adds a machine and schedules what waited for one.
    pub fn add_machine(&self, machine: FakeMachine) {
        let mut state = lock(&self.state);
        state.registry.machines.push(machine);
        state.registry.schedule();
        reconcile(&mut state, &self.state);
    }

    /// Removes a machine; its units are rescheduled elsewhere if they can be.
    pub fn remove_machine(&self, id: &str) {
        let mut state = lock(&self.state);
        state.registry.machines.retain(|m| m.id != id);
        state.registry.schedule();
        reconcile(&mut state, &self.state);
    }

    /// The directory standing in for machine `id`'s file system, when the
    /// machines run units.
    pub fn machine_root(&self, id: &str) -> Option<std::path::PathBuf> {
        lock(&self.state)
            .executor
            .as_ref()
            .map(|executor| executor.machine_root(id))
    }

    /// What the commands of unit `name` printed, and what the fake did with
    /// them (`journalctl -u NAME`), wherever it ran.
    pub fn journal(&self, name: &str) -> String {
        lock(&self.state)
            .executor
            .as_ref()
            .map(|executor| executor.journal(name))
            .unwrap_or_default()
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.state).seen.clone()
    }

    /// A stored unit's options, desired state and machine, read directly.
    pub fn unit(&self, name: &str) -> Option<(Vec<UnitOption>, String, Option<String>)> {
        let state = lock(&self.state);
        state
            .registry
            .units
            .get(name)
            .map(|u| (u.options.clone(), u.desired.clone(), u.machine.clone()))
    }

    /// The names of every stored unit.
    pub fn unit_names(&self) -> Vec<String> {
        lock(&self.state).registry.units.keys().cloned().collect()
    }
}

fn new_state(options: FakeOptions) -> Shared {
    let executing = options.run_units_in.is_some();
    if executing {
        tracing::info!("{RUNS_UNITS}");
    }
    Arc::new(Mutex::new(State {
        registry: Registry {
            machines: options.machines,
            runs: executing.then(Default::default),
            ..Registry::default()
        },
        page_size: options.page_size.max(1),
        unregistered_requests: options.unregistered_requests,
        seen: Vec::new(),
        executor: options.run_units_in.map(Executor::new),
    }))
}

/// Has the machines run what fleet has placed on them, and stop the rest.
fn reconcile(state: &mut State, shared: &Shared) {
    let State {
        registry, executor, ..
    } = state;
    let Some(executor) = executor else {
        return;
    };
    let wanted = registry
        .units
        .iter()
        .filter(|(name, unit)| !is_template(name) && !unit.corrupt() && unit.desired == "launched")
        .filter_map(|(name, unit)| {
            Some((name.clone(), (unit.machine.clone()?, unit.options.clone())))
        })
        .collect();
    let units = &registry.units;
    let machines = &registry.machines;
    let still_there = |name: &str, machine: &str| {
        units.contains_key(name) && machines.iter().any(|m| m.id == machine)
    };
    let runs = registry.runs.get_or_insert_with(Default::default);
    executor.reconcile(shared, &wanted, &still_there, runs);
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

async fn serve(state: Shared, listener: Listener) {
    // Dropping the set (when the server task is aborted) aborts every
    // connection.
    let mut connections = JoinSet::new();
    loop {
        let accepted = match &listener {
            Listener::Tcp(listener) => listener
                .accept()
                .await
                .map(|(stream, _)| spawn_connection(&mut connections, &state, stream)),
            Listener::Unix(listener) => listener
                .accept()
                .await
                .map(|(stream, _)| spawn_connection(&mut connections, &state, stream)),
        };
        if let Err(e) = accepted {
            tracing::warn!(error = %e, "fake fleet: accept failed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        while connections.try_join_next().is_some() {}
    }
}

fn spawn_connection<S>(connections: &mut JoinSet<()>, state: &Shared, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = state.clone();
    connections.spawn(async move {
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, request).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let content_types: Vec<String> = request
        .headers()
        .get_all(header::CONTENT_TYPE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("cannot read body: {e}")),
    };
    let mut state = lock(shared);
    state.seen.push(SeenRequest {
        method: method.to_string(),
        path: uri.to_string(),
        content_types: content_types.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if state.unregistered_requests > 0 {
        state.unregistered_requests -= 1;
        return error(StatusCode::SERVICE_UNAVAILABLE, UNREGISTERED_MESSAGE);
    }
    let path = percent_decode(uri.path());
    let query = parse_query(uri.query().unwrap_or(""));
    let response = route(&mut state, &method, &path, &query, &content_types, &body);
    reconcile(&mut state, shared);
    response
}
