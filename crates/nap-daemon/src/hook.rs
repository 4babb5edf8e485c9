//! git's pre-receive hook, daemon side. Each `git receive-pack` nap starts
//! gets a one-time token; the hook must present it, so only a push that came
//! through nap's own door can ask for a deploy, and the daemon — not the
//! hook — knows who pushed which app.
//!
//! The hook itself is a symbolic link to the nap binary (see [`install`]), which knows by
//! its name that git runs it as the hook: git starts one process, not a shell that then
//! starts nap.
//!
//! The deploy the hook asks for runs in an operation of its own, which goes on
//! if the hook dies; what it deployed is left in the push's [`Outcome`], which
//! the push (`push.rs`) judges once git has exited.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nap_core::{AppName, Caller};
use serde::{Deserialize, Serialize};

use crate::deploy::{Deployed, Failed};
use crate::operation::{Sink, follow};
use crate::repo::RepoError;
use crate::{Daemon, Out};

/// Where git looks for the hook, inside a bare repository.
pub(crate) const HOOK: &str = "hooks/pre-receive";

/// The name git runs the hook by; the nap binary run by this name is the hook.
pub const HOOK_NAME: &str = "pre-receive";

/// Makes `repo`'s pre-receive hook a symbolic link to `nap_bin`, unless it is one already
/// (one `readlink`, which is all a push pays). Whatever else is there, the script of an
/// older nap or a link to where the binary was, is replaced in one rename, so that a push
/// running meanwhile sees either hook and never none.
///
/// The hook decides nothing, so a link to the binary gives nobody more than the binary
/// does: run without a push token of the daemon's, which only a `git receive-pack` that nap
/// started has in its environment, it refuses the push.
pub(crate) fn install(repo: &Path, nap_bin: &Path) -> std::io::Result<()> {
    let hook = repo.join(HOOK);
    if std::fs::read_link(&hook).is_ok_and(|target| target == nap_bin) {
        return Ok(());
    }
    let hooks = repo.join("hooks");
    std::fs::create_dir_all(&hooks)?;
    let staging = hooks.join(format!(".{HOOK_NAME}.{}", nap_stdx::random_hex(8)?));
    std::os::unix::fs::symlink(nap_bin, &staging)?;
    std::fs::rename(&staging, &hook).inspect_err(|_| {
        let _ = std::fs::remove_file(&staging);
    })
}

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

/// Who pushes which app, as nap knew when it started `git receive-pack`, and what the
/// push's deploy did.
#[derive(Clone)]
pub(crate) struct PushContext {
    pub(crate) caller: Caller,
    pub(crate) app: AppName,
    /// Locked by the push's deploy from before its hook gets an answer until the deploy
    /// has ended, so that whoever locks it after git has exited sees the deploy's end.
    pub(crate) outcome: Arc<tokio::sync::Mutex<Outcome>>,
}

/// What the deploy of a push did.
#[derive(Default)]
pub(crate) struct Outcome {
    /// The hook asked for its deploy (a push gets one).
    pub(crate) asked: bool,
    /// The deploy succeeded: the release, and the ref whose update it was for.
    pub(crate) deployed: Option<(Deployed, String)>,
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

    /// What the push's deploy did, once it has ended (waits for it).
    pub(crate) async fn outcome(&self) -> Option<(Deployed, String)> {
        let outcome = self.pushes.get(&self.token)?.outcome;
        outcome.lock().await.deployed.take()
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
                outcome: Arc::default(),
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
        // One deploy per push; the lock is taken here, before the hook can have its
        // answer, and held by the deploy until it ends.
        let Ok(mut outcome) = push.outcome.clone().try_lock_owned() else {
            out.err(" !     this push's deploy is already running; refused")
                .await;
            return 1;
        };
        if outcome.asked {
            out.err(" !     this push was deployed already; refused")
                .await;
            return 1;
        }
        outcome.asked = true;
        tracing::info!(user = %push.caller.user, app = %push.app, commit = %update.new, "deploying a push");
        let quarantine = nap_git::Quarantine::from_env_values(
            request.object_dir.as_deref().map(std::ffi::OsStr::new),
            request.alternates.as_deref().map(std::ffi::OsStr::new),
        );
        let (sink, chunks) = Sink::new();
        let (daemon, app, pusher) = (self.clone(), push.app.clone(), push.caller.user.clone());
        let (commit, branch) = (update.new.clone(), update.name.clone());
        // The deploy goes on if the hook dies: the push judges it once git is done.
        let deploy = self.operations.spawn(async move {
            let mut out = sink.out();
            match daemon
                .deploy_push(&app, &pusher, &commit, &branch, &quarantine, &mut out)
                .await
            {
                Ok(deployed) => {
                    outcome.deployed = Some((deployed, branch));
                    0
                }
                Err(Failed) => 1,
            }
        });
        follow(chunks, deploy, out).await
    }

    /// The deploy of a push: `commit`, for the update of `branch`, read through git's
    /// quarantine.
    async fn deploy_push(
        self: &Arc<Self>,
        app: &AppName,
        pusher: &str,
        commit: &str,
        branch: &str,
        quarantine: &nap_git::Quarantine,
        out: &mut Out<'_>,
    ) -> Result<Deployed, Failed> {
        // The app's lock is held by the push whose git runs this hook.
        let repo = match nap_git::open(&self.data.repo(app.as_str()), quarantine) {
            Ok(repo) => repo,
            Err(e) => {
                out.err(&format!(" !     cannot open the repository: {e}"))
                    .await;
                return Err(Failed);
            }
        };
        let source = crate::deploy::Source {
            repo,
            commit,
            pusher,
            note: "push".into(),
            env: None,
            built: None,
        };
        let deployed = self.deploy(app, source, out).await?;
        if deployed.before.release.is_none() {
            // The first deploy's branch becomes the default branch, so `git clone` of
            // the app checks it out.
            let branch = branch.trim_start_matches("refs/heads/");
            let head = nap_git::open(
                &self.data.repo(app.as_str()),
                &nap_git::Quarantine::default(),
            )
            .map_err(RepoError::from)
            .and_then(|repo| Ok(repo.set_head(branch)?));
            if let Err(e) = head {
                tracing::warn!(app = %app, error = %e, "cannot set HEAD");
            }
        }
        Ok(deployed)
    }
}
