//! The two steps of a deploy that run the app's code before its instances start: the build
//! (writable release tree, the cache) and the release phase (read-only tree, storage).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nap_sandbox::{DEFAULT_PATH, Identity, Policy, Sandbox};

use crate::detect::{Detected, cache_key, detect};
use crate::run::{Ended, Sink, StartError, run};
use crate::scripts::{reuse_message, script};

/// How long a build may run unless the caller says otherwise: Heroku's limit.
pub const DEFAULT_BUILD_TIME_LIMIT: Duration = Duration::from_secs(15 * 60);
/// How long a release phase may run unless the caller says otherwise.
pub const DEFAULT_RELEASE_TIME_LIMIT: Duration = Duration::from_secs(15 * 60);

/// One app's build of one release tree.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The app's name, for messages.
    pub app: String,
    /// The new release tree on the host, made by the caller and owned by the app's uid
    /// (with [`Identity::AppUser`]); the build writes into it. On an error the caller
    /// deletes it.
    pub release: PathBuf,
    /// The app's storage directory (see [`nap_sandbox::prepare_writable_dir`]).
    pub storage: PathBuf,
    /// The app's build cache, kept between builds (`DATA/cache/APP`), made with
    /// [`nap_sandbox::prepare_writable_dir`].
    pub cache: PathBuf,
    /// The app's config vars (and whatever else the app's processes get).
    pub env: BTreeMap<String, String>,
    /// Whom the build runs as.
    pub identity: Identity,
    /// The profile's `build:` command, if any.
    pub build_command: Option<String>,
    /// How long the build may run (see [`DEFAULT_BUILD_TIME_LIMIT`]).
    pub time_limit: Duration,
    /// A memory cgroup the caller made and limited (the app's memory limit); the build's
    /// every process runs in it. `None` runs without one.
    pub memory_cgroup: Option<PathBuf>,
}

/// What a successful build did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// What was detected and run.
    pub detected: Detected,
    /// Whether the dependencies came from the cache (pip or npm did not run).
    pub reused_cache: bool,
    /// How long it took.
    pub elapsed: Duration,
}

/// Why a build failed. Every variant leaves the release tree half-made: the caller deletes it.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The build ran and exited non-zero.
    #[error("the build ({detected}) of {app} failed with exit status {code}")]
    Failed {
        /// The app.
        app: String,
        /// What was built.
        detected: Detected,
        /// Its exit status (128 + N for signal N, 137 when it ran out of memory).
        code: i32,
        /// Its last lines of output.
        last_lines: Vec<String>,
    },
    /// The build ran longer than its limit; it was killed, every process of it.
    #[error("the build ({detected}) of {app} took longer than {}s and was stopped", limit.as_secs())]
    TimedOut {
        /// The app.
        app: String,
        /// What was built.
        detected: Detected,
        /// The limit.
        limit: Duration,
        /// Its last lines of output.
        last_lines: Vec<String>,
    },
    /// The build could not be started.
    #[error("cannot start the build of {app}: {source}")]
    Start {
        /// The app.
        app: String,
        /// Why.
        source: StartError,
    },
}

impl BuildError {
    /// The last lines of the build's output (empty when it did not start).
    pub fn last_lines(&self) -> &[String] {
        match self {
            BuildError::Failed { last_lines, .. } | BuildError::TimedOut { last_lines, .. } => {
                last_lines
            }
            BuildError::Start { .. } => &[],
        }
    }
}

/// Builds `request.release`: detects what to build, says so on `sink` (`-----> Building
/// (python)`), runs it in the sandbox with the release tree and the cache writable and
/// streams its output to `sink`, each line indented seven spaces. With nothing to build it
/// prints nothing and returns at once.
///
/// If the returned future is dropped, every process of the build is killed.
pub async fn build(
    sandbox: &Sandbox,
    request: &BuildRequest,
    sink: Sink<'_>,
) -> Result<Built, BuildError> {
    let started = Instant::now();
    let detected = detect(&request.release, request.build_command.as_deref());
    let (Some(label), Some(script)) = (detected.label(), script(&detected)) else {
        return Ok(Built {
            detected,
            reused_cache: false,
            elapsed: started.elapsed(),
        });
    };
    let path = request.env.get("PATH").map_or(DEFAULT_PATH, String::as_str);
    let key = cache_key(&request.release, &detected, path).unwrap_or_default();
    sink(&format!("-----> Building ({label})"));
    let policy = Policy {
        release: request.release.clone(),
        release_writable: true,
        storage: request.storage.clone(),
        cache: Some(request.cache.clone()),
        env: request.env.clone(),
        identity: request.identity,
    };
    let command = ["/bin/sh", "-c", &script, "nap-build", &key];
    let ended = run(
        sandbox,
        &policy,
        &command,
        request.memory_cgroup.as_deref(),
        request.time_limit,
        sink,
    )
    .await
    .map_err(|source| BuildError::Start {
        app: request.app.clone(),
        source,
    })?;
    match ended {
        Ended::Exited {
            code: 0,
            first_line,
            ..
        } => {
            // The first line is always the detected script's own, printed before any of the
            // app's code runs, so the app cannot fake it (a `build:` command could, but has
            // no cache to reuse).
            let reused_cache = !matches!(detected, Detected::Command(_))
                && first_line.as_deref() == Some(&reuse_message(&detected.hashed_files()));
            let elapsed = started.elapsed();
            tracing::info!(app = %request.app, %detected, reused_cache, ?elapsed, "built");
            Ok(Built {
                detected,
                reused_cache,
                elapsed,
            })
        }
        Ended::Exited {
            code, last_lines, ..
        } => Err(BuildError::Failed {
            app: request.app.clone(),
            detected,
            code,
            last_lines,
        }),
        Ended::TimedOut { last_lines } => Err(BuildError::TimedOut {
            app: request.app.clone(),
            detected,
            limit: request.time_limit,
            last_lines,
        }),
    }
}

/// One run of the profile's `release:` command (migrations), once per deploy, after the
/// build and before the new instances start.
#[derive(Debug, Clone)]
pub struct ReleasePhaseRequest {
    /// The app's name, for messages.
    pub app: String,
    /// The release command (run with `/bin/sh -c` in the release tree).
    pub command: String,
    /// The built release tree; read-only here.
    pub release: PathBuf,
    /// The app's storage, writable.
    pub storage: PathBuf,
    /// The app's environment, as its instances get it.
    pub env: BTreeMap<String, String>,
    /// Whom it runs as.
    pub identity: Identity,
    /// How long it may run (see [`DEFAULT_RELEASE_TIME_LIMIT`]).
    pub time_limit: Duration,
    /// A memory cgroup the caller made and limited, or `None`.
    pub memory_cgroup: Option<PathBuf>,
}

/// How a release phase ended when it ran to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePhaseEnded {
    /// Its exit status (0 lets the deploy go on; 128 + N for signal N).
    pub code: i32,
    /// Its last lines of output.
    pub last_lines: Vec<String>,
}

/// Why a release phase gave no exit status.
#[derive(Debug, thiserror::Error)]
pub enum ReleasePhaseError {
    /// It ran longer than its limit; every process of it was killed.
    #[error("the release command of {app} took longer than {}s and was stopped", limit.as_secs())]
    TimedOut {
        /// The app.
        app: String,
        /// The limit.
        limit: Duration,
        /// Its last lines of output.
        last_lines: Vec<String>,
    },
    /// It could not be started.
    #[error("cannot start the release command of {app}: {source}")]
    Start {
        /// The app.
        app: String,
        /// Why.
        source: StartError,
    },
}

/// Runs the release phase: `-----> Running the release command` on `sink`, then its output
/// indented. A non-zero [`ReleasePhaseEnded::code`] must reject the deploy. If the returned
/// future is dropped, every process of it is killed.
pub async fn run_release_phase(
    sandbox: &Sandbox,
    request: &ReleasePhaseRequest,
    sink: Sink<'_>,
) -> Result<ReleasePhaseEnded, ReleasePhaseError> {
    sink("-----> Running the release command");
    let policy = Policy {
        release: request.release.clone(),
        release_writable: false,
        storage: request.storage.clone(),
        cache: None,
        env: request.env.clone(),
        identity: request.identity,
    };
    let command = ["/bin/sh", "-c", request.command.as_str()];
    let ended = run(
        sandbox,
        &policy,
        &command,
        request.memory_cgroup.as_deref(),
        request.time_limit,
        sink,
    )
    .await
    .map_err(|source| ReleasePhaseError::Start {
        app: request.app.clone(),
        source,
    })?;
    match ended {
        Ended::Exited {
            code, last_lines, ..
        } => Ok(ReleasePhaseEnded { code, last_lines }),
        Ended::TimedOut { last_lines } => Err(ReleasePhaseError::TimedOut {
            app: request.app.clone(),
            limit: request.time_limit,
            last_lines,
        }),
    }
}
