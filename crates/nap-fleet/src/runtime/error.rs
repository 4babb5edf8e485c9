//! Why the fleet runtime's operations fail: one enum per operation, handed to the deployer as
//! the [`nap_runtime`] error's backend part.

use std::ops::Range;

use crate::client::FleetError;
use crate::etcd::EtcdError;
use crate::render::RenderError;

/// Why an instance could not be started on the cluster. Its units are taken back.
#[derive(Debug, thiserror::Error)]
pub enum FleetStartError {
    /// fleet's API refused or could not be reached.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// etcd could not be asked (for its API version, which the sidekick needs).
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The units could not be rendered for this spec.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The daemon gave no token for the release's tarball.
    #[error("no tarball token for {app} {release}: {source}")]
    Token {
        /// The app.
        app: String,
        /// The release.
        release: String,
        /// Why not.
        source: nap_runtime::BackendError,
    },
    /// Every port of the range is in use somewhere in the cluster.
    #[error("every port of {range:?} is taken by an instance in the cluster")]
    PortsTaken {
        /// The range.
        range: Range<u16>,
    },
    /// The unit was destroyed (by someone else) before fleet placed it.
    #[error("{unit} vanished from fleet before it was placed")]
    Vanished {
        /// The unit.
        unit: String,
    },
    /// The release has as many instances as fleet has machines already:
    /// its instances conflict, one per machine, so this one has nowhere to go.
    #[error(
        "{app}@{index} {release} cannot be placed: the instances of a release run one per machine \
         (Conflicts={app}@{set}-*.service), so {wanted} of them need {wanted} machines, and fleet has {machines}; \
         scale {app} to at most {machines}, or add machines"
    )]
    NoRoom {
        /// The app.
        app: String,
        /// The instance number.
        index: u32,
        /// The release.
        release: String,
        /// The set (release and generation) the instance would join.
        set: String,
        /// Instances of the set with this one.
        wanted: usize,
        /// Machines in the cluster.
        machines: usize,
    },
    /// fleet did not place the unit in time.
    #[error(
        "fleet placed {unit} on no machine within {seconds} s: each of the {machines} machine(s) runs another instance of \
         {app} {set} already (Conflicts={app}@{set}-*.service), or none fits its [X-Fleet] requirements"
    )]
    Unplaced {
        /// The unit.
        unit: String,
        /// How long nap waited.
        seconds: u64,
        /// Machines in the cluster.
        machines: usize,
        /// The app.
        app: String,
        /// The unit's set (release and generation).
        set: String,
    },
    /// fleet placed the unit on a machine it gives no address for.
    #[error("{unit} is on machine {machine}, which fleet gives no address for")]
    NoMachineAddress {
        /// The unit.
        unit: String,
        /// The machine's id.
        machine: String,
    },
}

/// Why an instance could not be stopped on the cluster.
#[derive(Debug, thiserror::Error)]
pub enum FleetStopError {
    /// The id is not one of this runtime's units.
    #[error("{key} is not a unit of nap's fleet runtime")]
    NotOurs {
        /// The id's key.
        key: String,
    },
    /// fleet's API refused or could not be reached.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// The unit's machine still reports it after the stop timeout.
    #[error("{unit} is still reported by machine {machine} {seconds} s after fleet removed it")]
    StillReported {
        /// The unit.
        unit: String,
        /// The machine, as `ps` shows it.
        machine: String,
        /// How long nap waited.
        seconds: u64,
    },
}

impl From<FleetStartError> for nap_runtime::StartError {
    fn from(error: FleetStartError) -> nap_runtime::StartError {
        nap_runtime::StartError::Backend(Box::new(error))
    }
}

impl From<FleetStopError> for nap_runtime::StopError {
    fn from(error: FleetStopError) -> nap_runtime::StopError {
        nap_runtime::StopError::Backend(Box::new(error))
    }
}
