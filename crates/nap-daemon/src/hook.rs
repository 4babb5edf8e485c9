//! git's pre-receive hook, daemon side. Each `git receive-pack` nap starts
//! gets a one-time token; the hook must present it, so only a push that came
//! through nap's own door can ask for a deploy, and the daemon — not the
//! hook — knows who pushed which app.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nap_core::{AppName, Caller};
use serde::{Deserialize, Serialize};

use crate::repo::RepoError;
use crate::{Daemon, Out};

/// One line of pre-receive's stdin: `old new ref`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefUpdate {
    /// Old object id (all zeros for a new ref).
    pub old: String,
    /// New object id (all zeros for a deleted ref).
    pub new: String,
    /// The ref, e.g. `refs/heads/master`.
    pub name: String,
}

/// What the hook sends the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookRequest {
    /// The token of the `git receive-pack` that runs this hook.
    pub token: String,
    /// The ref updates.
    pub updates: Vec<RefUpdate>,
    /// GIT_OBJECT_DIRECTORY: the push quarantine.
    pub object_dir: Option<String>,
    /// GIT_ALTERNATE_OBJECT_DIRECTORIES.
    pub alternates: Option<String>,
}

/// Who pushes which app, as nap knew when it started `git receive-pack`.
#[derive(Clone)]
pub(crate) struct PushContext {
    pub(crate) caller: Caller,
    pub(crate) app: AppName,
}

/// The pushes under way, by token.
#[derive(Default, Clone)]
pub(crate) struct Pushes(Arc<Mutex<HashMap<String, PushContext>>>);

/// A registered push; unregistered when dropped.
pub(crate) struct PushGuard {
    pushes: Pushes,
    token: String,
}

impl PushGuard {
    pub(crate) fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for PushGuard {
    fn drop(&mut self) {
        self.pushes.lock().remove(&self.token);
    }
}

impl Pushes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PushContext>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn register(&self, caller: &Caller, app: &AppName) -> std::io::Result<PushGuard> {
        let token = nap_stdx::random_hex(16)?;
        self.lock().insert(
            token.clone(),
            PushContext {
                caller: caller.clone(),
                app: app.clone(),
            },
        );
        Ok(PushGuard {
            pushes: self.clone(),
            token,
        })
    }

    pub(crate) fn get(&self, token: &str) -> Option<PushContext> {
        self.lock().get(token).cloned()
    }
}

impl Daemon {
    /// Decides a push: returns the exit status for the hook (0 accepts).
    pub(crate) async fn pre_receive(
        self: &Arc<Self>,
        request: HookRequest,
        out: &mut Out<'_>,
    ) -> u32 {
        let Some(push) = self.pushes.get(&request.token) else {
            out.err(" !     this push did not come through nap; refused")
                .await;
            return 1;
        };
        let deploy_refs: Vec<String> = self
            .settings
            .deploy_branches
            .iter()
            .map(|b| format!("refs/heads/{b}"))
            .collect();
        let mut deploy = None;
        for update in &request.updates {
            if deploy_refs.contains(&update.name) {
                if deploy.is_none() {
                    deploy = Some(update);
                } else {
                    out.err(&format!(
                        "-----> {} stored; one deploy per push",
                        update.name
                    ))
                    .await;
                }
            } else {
                out.err(&format!(
                    "-----> {} stored, not deployed: only {} deploy{}",
                    update.name,
                    self.settings.deploy_branches.join(" or "),
                    if self.settings.deploy_branches.len() == 1 {
                        "s"
                    } else {
                        ""
                    }
                ))
                .await;
            }
        }
        let Some(update) = deploy else {
            return 0;
        };
        if update.new.bytes().all(|b| b == b'0') {
            out.err(&format!(
                " !     deleting {} would leave {} without code; to remove the app use 'destroy {} --force'",
                update.name, push.app, push.app
            ))
            .await;
            return 1;
        }
        tracing::info!(user = %push.caller.user, app = %push.app, commit = %update.new, "deploying a push");
        let quarantine = nap_git::Quarantine::from_env_values(
            request.object_dir.as_deref().map(std::ffi::OsStr::new),
            request.alternates.as_deref().map(std::ffi::OsStr::new),
        );
        // The app's lock is held by the `git receive-pack` that runs this hook.
        let repo = match nap_git::open(&self.data.repo(push.app.as_str()), &quarantine) {
            Ok(repo) => repo,
            Err(e) => {
                out.err(&format!(" !     cannot open the repository: {e}"))
                    .await;
                return 1;
            }
        };
        let source = crate::deploy::Source {
            repo,
            commit: &update.new,
            pusher: &push.caller.user,
            note: "push".into(),
            env: None,
        };
        match self.deploy(&push.app, source, out).await {
            Ok(number) => {
                if number == 1 {
                    // The first deploy's branch becomes the default branch,
                    // so `git clone` of the app checks it out.
                    let branch = update.name.trim_start_matches("refs/heads/");
                    let head = nap_git::open(
                        &self.data.repo(push.app.as_str()),
                        &nap_git::Quarantine::default(),
                    )
                    .map_err(RepoError::from)
                    .and_then(|repo| Ok(repo.set_head(branch)?));
                    if let Err(e) = head {
                        tracing::warn!(app = %push.app, error = %e, "cannot set HEAD");
                    }
                }
                0
            }
            Err(crate::deploy::Failed) => 1,
        }
    }
}
