//! The `fleet` runtime's needs on the daemon's side: per-release tarball
//! tokens, the tarball endpoint the cluster's machines fetch releases from,
//! and instance addresses from etcd for the router.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

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

/// The daemon's secret for release tokens: made once, kept in `DATA/secret`.
pub(crate) fn load_or_create_secret(
    path: &std::path::Path,
) -> Result<String, nap_store::StoreError> {
    match std::fs::read_to_string(path) {
        Ok(secret) if secret.trim().len() >= 32 => Ok(secret.trim().to_owned()),
        _ => {
            let secret =
                crate::hook::random_hex(32).map_err(|source| nap_store::StoreError::Io {
                    path: path.to_owned(),
                    source,
                })?;
            nap_store::atomic_write(path, secret.as_bytes(), 0o600)?;
            Ok(secret)
        }
    }
}

/// The token that fetches one release's tarball: it opens nothing else, and
/// stays valid as long as the release may run (machines fetch again when
/// fleet moves an instance).
pub(crate) fn release_token(secret: &str, app: &str, release: &str) -> String {
    let digest =
        Sha256::digest(format!("nap-release-tarball\0{secret}\0{app}\0{release}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `GET /api/apps/APP/releases/vN/tarball` with `Authorization: Bearer TOKEN`.
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
    if !same(token, &release_token(&daemon.secret, &app, &release)) {
        return (
            StatusCode::UNAUTHORIZED,
            "a valid release token is required\n",
        )
            .into_response();
    }
    let found = nap_core::AppName::parse(&app).ok().and_then(|name| {
        let number = release.strip_prefix('v')?.parse().ok()?;
        Some((daemon.release(&name, number)?, name))
    });
    let Some((record, name)) = found else {
        return (StatusCode::NOT_FOUND, "no such release\n").into_response();
    };
    let repo_path = daemon.data.repo(name.as_str());
    let made = tokio::task::spawn_blocking(move || {
        let repo = nap_git::open(&repo_path, &nap_git::Quarantine::default())
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        repo.write_tarball(&record.commit, &mut bytes)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(bytes)
    })
    .await;
    match made {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, "application/gzip")], bytes).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(app = %name, release, error = %e, "cannot make a tarball");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot make the tarball\n",
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "tarball task failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot make the tarball\n",
            )
                .into_response()
        }
    }
}
