//! The records nap keeps, as they are written to disk.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `users.json`: every user and their keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Users {
    /// By user name.
    pub users: BTreeMap<String, User>,
}

/// One user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Admins may act on every app and manage keys.
    pub admin: bool,
    /// The user's public keys.
    pub keys: Vec<StoredKey>,
}

/// One registered public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// `type base64`, without comment.
    pub openssh: String,
    /// Algorithm name.
    pub kind: String,
    /// `SHA256:...`.
    pub fingerprint: String,
    /// The comment the key was added with.
    #[serde(default)]
    pub comment: String,
}

impl Users {
    /// The user owning a key (by its `type base64` form), if any.
    pub fn owner_of(&self, openssh: &str) -> Option<(&str, &User)> {
        self.users
            .iter()
            .find(|(_, user)| user.keys.iter().any(|key| key.openssh == openssh))
            .map(|(name, user)| (name.as_str(), user))
    }
}

/// `apps/APP/app.json`: what an app is and what should run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The user who created it.
    pub owner: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// The release that should run, if any was deployed.
    #[serde(default)]
    pub release: Option<u32>,
    /// The last release number handed out (releases are never renumbered).
    #[serde(default)]
    pub last_release: u32,
    /// Instances wanted, when set by `scale`; overrides the profile until a
    /// push changes the profile's own `scale`.
    #[serde(default)]
    pub scale_override: Option<u32>,
    /// The app this one was cloned from, for `clone` numbering.
    #[serde(default)]
    pub similar_to: Option<String>,
    /// The uid (and gid) its instances run as when nap runs as root: its own, from
    /// `app_uid_range`, given once and kept for the app's life. `None` for an app made by a
    /// nap that did not need one (it gets one at the next start that does).
    #[serde(default)]
    pub uid: Option<u32>,
}

/// `apps/APP/releases/vN.json`: one deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// N of vN.
    pub number: u32,
    /// The full commit id.
    pub commit: String,
    /// Who pushed it.
    pub pusher: String,
    /// Seconds since the epoch.
    pub time: u64,
    /// The profile's command.
    pub command: String,
    /// The profile's scale, if it set one.
    pub scale: Option<u32>,
    /// Memory per instance in bytes, if set.
    pub memory: Option<u64>,
    /// What made it: "push", "rollback to v2", ...
    pub note: String,
    /// The app's config vars this release runs with.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The profile's `healthcheck` path, which each new instance must answer with 2xx or
    /// 3xx before it takes requests (also on restart and scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<String>,
    /// The profile's `healthcheck_timeout`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_timeout: Option<u32>,
}
