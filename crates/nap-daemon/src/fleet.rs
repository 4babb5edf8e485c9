//! The `fleet` runtime's needs on the daemon's side: the daemon's secret,
//! per-release tarball tokens, and the tarball endpoint the cluster's
//! machines fetch releases from.
//!
//! A machine fetches a release in its unit's `ExecStartPre`, that is while
//! the deploy that started the unit is still waiting for it to be healthy,
//! before the release is recorded. So a release is servable from the moment
//! its first instance may start: a deploy registers it as *pending* (in
//! memory, [`PendingReleases::begin`]) before the runtime starts anything,
//! and the registration ends with the deploy, whatever its outcome; by then
//! a successful deploy has made it the app's current release. The endpoint
//! serves a pending release and the app's current one, to the holder of its
//! token, and nothing else.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use nap_store::{AppRecord, DataDir, ReleaseRecord};
use sha2::Sha256;

use crate::Daemon;

/// Where the cluster is, from the config file.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// fleet's API: `http://host:port` or `unix:///path`.
    pub endpoint: String,
    /// etcd endpoints for discovery (may be empty).
    pub etcd_endpoints: Vec<String>,
    /// nap's HTTP API as the machines reach it.
    pub nap_url: String,
}

/// Random bytes in the secret; it is stored as twice as many hex digits.
const SECRET_BYTES: usize = 32;

/// Why the daemon's secret (`DATA/secret`) cannot be used. nap never replaces
/// an existing secret: every release token handed to the cluster's machines
/// depends on it.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file is there but cannot be read (permissions, a directory, an IO error).
    #[error(
        "cannot read the daemon's secret {}: {source}; nap does not replace it, since the release tokens of running instances depend on it: fix the file (nap writes {} hex digits, mode 0600) or move it away to make a new one",
        path.display(),
        SECRET_BYTES * 2
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file holds something nap did not write there.
    #[error(
        "the daemon's secret {} is not what nap writes there ({} hex digits); nap does not replace it, since the release tokens of running instances depend on it: restore it or move it away to make a new one",
        path.display(),
        SECRET_BYTES * 2
    )]
    Garbled {
        /// The file.
        path: PathBuf,
    },
    /// There is no secret yet, and making one failed.
    #[error("cannot make the daemon's secret {}: {source}", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The daemon's secret for release tokens: made once, when there is none,
/// and kept in `DATA/secret` (mode 0600).
pub(crate) fn load_or_create_secret(path: &std::path::Path) -> Result<String, SecretError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim();
            if secret.len() == SECRET_BYTES * 2 && secret.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(secret.to_owned())
            } else {
                Err(SecretError::Garbled {
                    path: path.to_owned(),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let create = |source: Box<dyn std::error::Error + Send + Sync>| SecretError::Create {
                path: path.to_owned(),
                source,
            };
            let secret = nap_stdx::random_hex(SECRET_BYTES).map_err(|e| create(Box::new(e)))?;
            nap_store::atomic_write(path, secret.as_bytes(), 0o600)
                .map_err(|e| create(Box::new(e)))?;
            tracing::info!(path = %path.display(), "made the daemon's secret for release tokens");
            Ok(secret)
        }
        Err(source) => Err(SecretError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The token that fetches one release's tarball: HMAC-SHA-256 under the
/// daemon's secret of the app, the release and the commit. It opens nothing
/// else. It names the commit too, so the token of a deploy that failed does
/// not open the next deploy that gets the same release number. It stays
/// valid as long as the release may run (machines fetch again when fleet
/// moves an instance).
pub(crate) fn release_token(secret: &str, app: &str, release: &str, commit: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("nap-release-tarball\0{app}\0{release}\0{commit}").as_bytes());
    nap_stdx::hex(&mac.finalize().into_bytes())
}

/// A release whose deploy is under way, and where its commit is (during a
/// push, in git's quarantine).
#[derive(Debug, Clone)]
struct Pending {
    commit: String,
    git_dir: PathBuf,
    object_dirs: Vec<PathBuf>,
}

/// The releases being deployed, by app and number. One per app at most (a
/// deploy holds the app's lock).
#[derive(Debug, Default)]
pub(crate) struct PendingReleases(Mutex<HashMap<(String, u32), Pending>>);

/// A release stays pending while this lives.
#[must_use = "the release stops being servable when this is dropped"]
pub(crate) struct PendingRelease {
    releases: Arc<PendingReleases>,
    key: (String, u32),
}

impl Drop for PendingRelease {
    fn drop(&mut self) {
        self.releases.lock().remove(&self.key);
    }
}

impl PendingReleases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Pending>> {
        // Every change is one insert or remove: a panic cannot leave half.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes release `number` of `app` servable until the returned value is
    /// dropped: `commit`, from the repository at `git_dir` with its object
    /// directories (`nap_git::Repo::object_directories`, quarantine
    /// included).
    pub(crate) fn begin(
        self: &Arc<Self>,
        app: &str,
        number: u32,
        commit: &str,
        git_dir: PathBuf,
        object_dirs: Vec<PathBuf>,
    ) -> PendingRelease {
        let key = (app.to_owned(), number);
        self.lock().insert(
            key.clone(),
            Pending {
                commit: commit.to_owned(),
                git_dir,
                object_dirs,
            },
        );
        PendingRelease {
            releases: self.clone(),
            key,
        }
    }

    fn get(&self, app: &str, number: u32) -> Option<Pending> {
        self.lock().get(&(app.to_owned(), number)).cloned()
    }
}

/// A release the endpoint may serve: its commit, and the repository (with
/// the object directories) that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Servable {
    commit: String,
    git_dir: PathBuf,
    quarantine: nap_git::Quarantine,
}

/// `vN` → N, for the one spelling nap uses (no sign, no leading zero).
fn release_number(release: &str) -> Option<u32> {
    let digits = release.strip_prefix('v')?;
    let number: u32 = digits.parse().ok()?;
    (format!("v{number}") == release).then_some(number)
}

/// Release `release` of `app`, if it is being deployed or is the app's
/// current release.
pub(crate) fn servable(
    data: &DataDir,
    pending: &PendingReleases,
    app: &str,
    release: &str,
) -> Option<Servable> {
    let app = nap_core::AppName::parse(app).ok()?;
    let number = release_number(release)?;
    if let Some(pending) = pending.get(app.as_str(), number) {
        return Some(Servable {
            commit: pending.commit,
            git_dir: pending.git_dir,
            // The repository's own directory is among them; `open` skips it.
            quarantine: nap_git::Quarantine {
                object_dir: None,
                alternates: pending.object_dirs,
            },
        });
    }
    let record: AppRecord = nap_store::read_json(&data.app_record(app.as_str())).ok()??;
    if record.release != Some(number) {
        return None;
    }
    let release: ReleaseRecord =
        nap_store::read_json(&data.release_record(app.as_str(), number)).ok()??;
    Some(Servable {
        commit: release.commit,
        git_dir: data.repo(app.as_str()),
        quarantine: nap_git::Quarantine::default(),
    })
}

/// The tokens the fleet runtime hands the units it starts.
pub(crate) struct ReleaseTokens {
    pub(crate) secret: String,
    pub(crate) data: DataDir,
    pub(crate) pending: Arc<PendingReleases>,
}

/// The fleet runtime asked for the token of a release that no machine may
/// fetch.
#[derive(Debug, thiserror::Error)]
#[error("{app} {release} is neither being deployed nor the app's current release")]
pub(crate) struct NotServable {
    app: String,
    release: String,
}

impl nap_fleet::ReleaseTarballs for ReleaseTokens {
    fn token(&self, app: &str, release: &str) -> Result<String, nap_runtime::BackendError> {
        let found = servable(&self.data, &self.pending, app, release).ok_or_else(|| {
            Box::new(NotServable {
                app: app.to_owned(),
                release: release.to_owned(),
            })
        })?;
        Ok(release_token(&self.secret, app, release, &found.commit))
    }
}

/// `GET /api/apps/APP/releases/vN/tarball` with `Authorization: Bearer TOKEN`:
/// 404 unless the release is being deployed or is the app's current one,
/// 401 without that release's token, else the tree as a gzipped tar.
pub(crate) async fn tarball(
    State(daemon): State<Arc<Daemon>>,
    Path((app, release)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(found) = servable(&daemon.data, &daemon.pending, &app, &release) else {
        return (
            StatusCode::NOT_FOUND,
            "no such release is being deployed or running\n",
        )
            .into_response();
    };
    if !nap_stdx::same_secret(
        token,
        &release_token(&daemon.secret, &app, &release, &found.commit),
    ) {
        return (
            StatusCode::UNAUTHORIZED,
            "a valid release token is required\n",
        )
            .into_response();
    }
    let made = crate::repo::blocking(move || {
        let repo = nap_git::open(&found.git_dir, &found.quarantine)?;
        let mut bytes = Vec::new();
        repo.write_tarball(&found.commit, &mut bytes)?;
        Ok::<_, crate::repo::RepoError>(bytes)
    })
    .await;
    let failure = match made {
        Ok(bytes) => {
            tracing::info!(%app, release, bytes = bytes.len(), "served a release tarball");
            return ([(header::CONTENT_TYPE, "application/gzip")], bytes).into_response();
        }
        Err(e) => e,
    };
    tracing::warn!(%app, release, error = %failure, "cannot make a tarball");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "cannot make the tarball\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(dir: &std::path::Path) -> nap_git::Repo {
        let path = dir.join("repo.git");
        let made = std::process::Command::new("git")
            .args(["init", "--bare", "-q"])
            .arg(&path)
            .status()
            .expect("git runs");
        assert!(made.success());
        nap_git::open(&path, &nap_git::Quarantine::default()).expect("opens")
    }

    fn record(data: &DataDir, app: &str, current: Option<u32>, releases: &[(u32, &str)]) {
        nap_store::create_dir(&data.releases(app)).expect("dirs");
        let app_record = AppRecord {
            release: current,
            ..AppRecord::default()
        };
        nap_store::write_json(&data.app_record(app), &app_record).expect("app record");
        for (number, commit) in releases {
            let release = ReleaseRecord {
                number: *number,
                commit: (*commit).to_owned(),
                pusher: "alice".into(),
                time: 0,
                command: "true".into(),
                scale: None,
                memory: None,
                note: String::new(),
                env: Default::default(),
                healthcheck: None,
                healthcheck_timeout: None,
            };
            nap_store::write_json(&data.release_record(app, *number), &release)
                .expect("release record");
        }
    }

    #[test]
    fn only_pending_and_current_releases_are_servable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::new(dir.path()).expect("data dir");
        let pending = Arc::new(PendingReleases::default());
        record(&data, "web", Some(2), &[(1, "c1"), (2, "c2")]);
        let commit = |release: &str| servable(&data, &pending, "web", release).map(|s| s.commit);

        assert_eq!(commit("v2").as_deref(), Some("c2"), "the current release");
        assert_eq!(commit("v1"), None, "a recorded release that no longer runs");
        assert_eq!(commit("v3"), None, "a release never started");

        let repo = repo(dir.path());
        let started = pending.begin(
            "web",
            3,
            "c3",
            repo.git_dir().to_owned(),
            repo.object_directories(),
        );
        let found = servable(&data, &pending, "web", "v3").expect("pending");
        assert_eq!(found.commit, "c3");
        assert_eq!(found.git_dir, repo.git_dir());
        assert_eq!(found.quarantine.alternates, repo.object_directories());
        assert_eq!(commit("v2").as_deref(), Some("c2"), "still running");
        assert_eq!(servable(&data, &pending, "api", "v3"), None, "another app");
        drop(started);
        assert_eq!(
            commit("v3"),
            None,
            "a deploy that ended without recording it"
        );

        for (app, release) in [
            ("web", "v02"),
            ("web", "2"),
            ("web", "v+2"),
            ("web", "v2/../v1"),
            ("Web", "v2"),
            ("../web", "v2"),
        ] {
            assert_eq!(
                servable(&data, &pending, app, release),
                None,
                "{app} {release}"
            );
        }
    }

    #[test]
    fn a_token_opens_one_app_release_and_commit() {
        let token = release_token("s3cret", "web", "v2", "c2");
        assert_eq!(token.len(), 64);
        for other in [
            release_token("s3cret", "api", "v2", "c2"),
            release_token("s3cret", "web", "v3", "c2"),
            release_token("s3cret", "web", "v2", "c3"),
            release_token("other", "web", "v2", "c2"),
        ] {
            assert_ne!(token, other);
        }
        assert!(nap_stdx::same_secret(
            &token,
            &release_token("s3cret", "web", "v2", "c2")
        ));
        assert!(!nap_stdx::same_secret(&token, &token[1..]));
    }

    #[test]
    fn the_runtime_gets_tokens_for_servable_releases_only() {
        use nap_fleet::ReleaseTarballs as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::new(dir.path()).expect("data dir");
        record(&data, "web", Some(1), &[(1, "c1")]);
        let tokens = ReleaseTokens {
            secret: "s3cret".into(),
            data,
            pending: Arc::new(PendingReleases::default()),
        };
        assert_eq!(
            tokens.token("web", "v1").expect("current"),
            release_token("s3cret", "web", "v1", "c1")
        );
        let error = tokens
            .token("web", "v2")
            .expect_err("not deployed")
            .to_string();
        assert!(error.contains("neither being deployed"), "{error}");
    }
}
