//! The `fleet` runtime: nap's instances as templated systemd units across a
//! CoreOS fleet cluster, with their addresses in etcd.
//!
//! - [`client`]: a client of fleet's HTTP API v1 ([`FleetClient`]), honouring
//!   what `shared/FLEET.md` says a client must know.
//! - [`etcd`]: a client of etcd's v3 JSON gateway ([`EtcdClient`]); the
//!   runtime reads the sidekicks' keys ([`EtcdClient::all_instances`]) for the
//!   router's snapshot ([`nap_runtime::Runtime::up_addresses`]).
//! - [`render`](mod@render): the templates of `deploy/fleet/` rendered per app and release.
//! - [`runtime`]: [`FleetRuntime`], the [`nap_runtime::Runtime`] the deployer drives,
//!   with its errors ([`FleetStartError`], [`FleetStopError`]).
//! - [`fake`]: an in-repo fake of fleet's API for tests (fleet cannot run
//!   here), whose machines can run the units they are given.
//!
//! # Unit names
//!
//! Per app, fleet stores two templates, `APP@.service` and
//! `APP_discovery@.service` (rendered from `deploy/fleet/app@.service` and
//! `app_discovery@.service`, stored `inactive`), and nap expands them on the
//! client, as fleetctl does, into one pair of units per instance:
//!
//! ```text
//! web@v3-1-20001.service            instance 1 of release v3, on port 20001
//! web_discovery@v3-1-20001.service  its sidekick (MachineOf, BindsTo)
//! web@v3.2-1-20004.service          instance 1 of v3 after a rolling restart
//! ```
//!
//! The instance string is `SET-I-PORT`:
//!
//! - SET is the release (`v3`), so two releases run side by side during a
//!   rolling deploy, and `Conflicts=web@v3-*.service` spreads the
//!   instances of one release only: a cluster of N machines can roll a
//!   scale-N app, because v4's instance 1 may share a machine with v3's
//!   instance 2. A second start of instance I of the same release (a rolling
//!   restart, which keeps the release) opens the next set, `v3.2`, whose
//!   members conflict only with each other, for the same reason.
//! - PORT is chosen by nap, round-robin from its range (20000..30000), and is
//!   unique across the cluster among nap's units: instances of two releases,
//!   or of two apps, on one machine never clash. The unit derives `PORT` and
//!   `NAP_INSTANCE` from `%i`, so one template serves every instance.
//! - Because the name says app, release, instance and port, fleet's registry
//!   is nap's only record of the cluster: [`Runtime::list`] reads it back,
//!   and a restarted nap adopts the units the previous one left running (the
//!   runtime's `shutdown` leaves them running).
//!
//! # Release tarballs
//!
//! Machines do not share nap's disk. The instance unit fetches its release
//! before it starts, with `curl` and `tar` (both needed on every machine):
//! `GET NAP_URL/api/apps/APP/releases/RELEASE/tarball` with
//! `Authorization: Bearer TOKEN`, answered by nap's HTTP API with the
//! release tree as a gzipped tar (`200`, `application/gzip`; files at the top
//! level). The token comes from [`ReleaseTarballs`]; it must stay valid as
//! long as the release may run, since a machine fetches again when fleet
//! moves an instance to it, and it must already work when the runtime
//! starts the first instance, which fetches while the deploy waits for it.
//! The tree belongs to root on the machine and the app runs in systemd's
//! sandbox as a user of its own (`deploy/fleet/README.md`).
//!
//! # Discovery
//!
//! The sidekick keeps `HOST:PORT` under `/nap/apps/APP/instances/SET-I-PORT`
//! in etcd on a lease it keeps alive, and deletes the key when it stops
//! (with `curl` to etcd's v3 JSON gateway, no `etcdctl` needed). HOST is the
//! machine's `NAP_NODE_HOST` (from `/etc/nap/node.env`), else its first
//! address. [`FleetRuntime`] waits for the key before it calls an instance
//! healthy, and `stop` deletes it too.
//!
//! **Architecture Invariant:** this crate is the only one that knows fleet
//! or etcd; the deployer sees a [`nap_runtime::Runtime`].

pub mod client;
pub mod etcd;
pub mod fake;
pub mod render;
pub mod runtime;
mod transport;
pub mod unit;

pub use client::{
    FleetClient, FleetError, Machine, Page, RetryPolicy, StateFilter, TemplateChange, Unit,
    UnitState,
};
pub use etcd::{EtcdClient, EtcdError, KeyValue, Lease};
pub use render::{RenderError, RenderInput, Rendered, RenderedUnit, Tarball, Templates, render};
pub use runtime::{
    FleetConfig, FleetOptions, FleetRuntime, FleetSetupError, FleetStartError, FleetStopError,
    ReleaseTarballs, tarball_url,
};
pub use unit::{DesiredState, InstanceName, InvalidDesiredState, UnitOption};

#[doc(no_inline)]
pub use nap_runtime::Runtime;
