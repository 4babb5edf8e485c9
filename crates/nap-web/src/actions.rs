//! Actions: commands started from the web manager that run in the
//! background while their page streams the output (server-sent events).
//!
//! An action keeps all its output (up to a cap), so a page opened late, or
//! reconnecting, replays it from the start.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::response::sse::Event;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::watch;

use crate::command::{MAX_OUTPUT_BYTES, error_message, run_streaming};
use crate::ops::Failure;
use crate::{Chunk, User, Web};
use nap_stdx::random_hex;

/// Most actions kept, running or finished.
const MAX_ACTIONS: usize = 256;
/// Most actions one user may have running at once.
const MAX_RUNNING_PER_USER: usize = 8;
/// How long a finished action stays readable.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);

/// What an action's page shows besides the output.
#[derive(Clone, Debug)]
pub(crate) struct Label {
    /// What it does, e.g. "Scale web to +1".
    pub(crate) title: String,
    /// Where its page links back to.
    pub(crate) back: String,
    /// The link's text.
    pub(crate) back_text: String,
}

/// A command started from the web manager.
pub(crate) struct Action {
    /// Its unguessable id.
    pub(crate) id: String,
    /// The user who started it; nobody else may see it.
    pub(crate) owner: String,
    /// What the page shows.
    pub(crate) label: Label,
    started: Instant,
    progress: Mutex<Progress>,
    /// Bumped after every change of `progress`.
    changed: watch::Sender<()>,
}

/// What an action did so far.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    /// Its output so far.
    pub(crate) chunks: Vec<Chunk>,
    bytes: usize,
    truncated: bool,
    stderr: String,
    /// Its exit status, once it is done.
    pub(crate) status: Option<u32>,
    finished: Option<Instant>,
}

impl Progress {
    /// The result line for a finished action.
    pub(crate) fn result(&self) -> Option<(bool, String)> {
        let status = self.status?;
        Some(if status == 0 {
            (true, "Done.".to_owned())
        } else {
            (false, error_message(&self.stderr, status))
        })
    }
}

impl Action {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of what it did so far.
    pub(crate) fn progress(&self) -> Progress {
        self.lock().clone()
    }

    fn push(&self, chunk: Chunk) {
        {
            let mut progress = self.lock();
            let text = match &chunk {
                Chunk::Stdout(text) | Chunk::Stderr(text) => text,
            };
            if let Chunk::Stderr(text) = &chunk {
                // Only what the result line needs: the last error lines.
                if progress.stderr.len() + text.len() > 64 * 1024 {
                    progress.stderr.clear();
                }
                progress.stderr.push_str(text);
            }
            if progress.bytes + text.len() > MAX_OUTPUT_BYTES {
                if !progress.truncated {
                    progress.truncated = true;
                    progress
                        .chunks
                        .push(Chunk::Stderr("[more output not shown]\n".into()));
                }
            } else {
                progress.bytes += text.len();
                progress.chunks.push(chunk);
            }
        }
        self.changed.send_replace(());
    }

    fn finish(&self, status: u32) {
        {
            let mut progress = self.lock();
            progress.status = Some(status);
            progress.finished = Some(Instant::now());
        }
        self.changed.send_replace(());
    }

    fn finished_long_ago(&self, now: Instant) -> bool {
        self.lock()
            .finished
            .is_some_and(|finished| now.duration_since(finished) >= KEEP_FINISHED)
    }

    fn running(&self) -> bool {
        self.lock().status.is_none()
    }
}

/// All actions, in memory.
#[derive(Default)]
pub(crate) struct Actions {
    actions: Mutex<HashMap<String, Arc<Action>>>,
}

impl Actions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Action>>> {
        self.actions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts `line` as `user` in the background.
    pub(crate) fn start(
        web: &Arc<Web>,
        user: &User,
        label: Label,
        line: Vec<String>,
    ) -> Result<Arc<Action>, Failure> {
        let id = random_hex(16).map_err(|e| Failure::Internal(format!("no randomness: {e}")))?;
        let action = Arc::new(Action {
            id: id.clone(),
            owner: user.name.clone(),
            label,
            started: Instant::now(),
            progress: Mutex::default(),
            changed: watch::Sender::new(()),
        });
        {
            let mut actions = web.actions.lock();
            let now = Instant::now();
            actions.retain(|_, action| !action.finished_long_ago(now));
            let running = actions
                .values()
                .filter(|a| a.owner == user.name && a.running())
                .count();
            if running >= MAX_RUNNING_PER_USER {
                return Err(Failure::Busy(format!(
                    "you have {running} actions running; wait for one to finish"
                )));
            }
            if actions.len() >= MAX_ACTIONS {
                let oldest_finished = actions
                    .values()
                    .filter(|a| !a.running())
                    .min_by_key(|a| a.started)
                    .map(|a| a.id.clone());
                match oldest_finished {
                    Some(oldest) => actions.remove(&oldest),
                    None => {
                        return Err(Failure::Busy(
                            "too many actions are running; try again later".into(),
                        ));
                    }
                };
            }
            actions.insert(id, action.clone());
        }
        tracing::info!(
            user = %user.name,
            command = %line.first().map_or("", String::as_str),
            app = %line.get(1).map_or("", String::as_str),
            action = %action.id,
            "action started"
        );
        let backend = web.backend.clone();
        let user = user.clone();
        let (running, watching) = (action.clone(), action.clone());
        let command = tokio::spawn(async move {
            run_streaming(&backend, user, line, |chunk| running.push(chunk)).await
        });
        // A second task sees the first end however it ends, so the page
        // always gets a result, even if the backend panicked.
        tokio::spawn(async move {
            let status = command.await.unwrap_or_else(|e| {
                tracing::error!(action = %watching.id, error = %e, "action's command panicked");
                watching.push(Chunk::Stderr(
                    " !     internal error: the command stopped unexpectedly\n".into(),
                ));
                1
            });
            tracing::info!(action = %watching.id, status, "action finished");
            watching.finish(status);
        });
        Ok(action)
    }

    /// The action `id` if `user` started it; for everybody else it does not exist.
    pub(crate) fn find(&self, id: &str, user: &User) -> Option<Arc<Action>> {
        self.lock()
            .get(id)
            .filter(|action| action.owner == user.name)
            .cloned()
    }
}

/// The events of an action from chunk `from` on: `output` events
/// (`{"stream": "stdout"|"stderr", "text": ...}`, id = the chunk's index),
/// then one `done` event (`{"status", "ok", "message"}`), then the end. It
/// also ends when `closing` fires (the server shuts down).
pub(crate) fn events(
    action: Arc<Action>,
    from: usize,
    closing: Option<watch::Receiver<bool>>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = Follow {
        changed: action.changed.subscribe(),
        action,
        next: from,
        closing,
        done: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let event = state.next_event().await?;
        Some((Ok(event), state))
    })
}

struct Follow {
    action: Arc<Action>,
    next: usize,
    changed: watch::Receiver<()>,
    closing: Option<watch::Receiver<bool>>,
    done: bool,
}

impl Follow {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.done {
                return None;
            }
            // Mark the current version seen before reading, so a change made
            // after the read wakes the wait below.
            self.changed.borrow_and_update();
            {
                let progress = self.action.lock();
                if let Some(chunk) = progress.chunks.get(self.next) {
                    let (stream, text) = match chunk {
                        Chunk::Stdout(text) => ("stdout", text),
                        Chunk::Stderr(text) => ("stderr", text),
                    };
                    let event = Event::default()
                        .event("output")
                        .id(self.next.to_string())
                        .data(json!({ "stream": stream, "text": text }).to_string());
                    self.next += 1;
                    return Some(event);
                }
                if let (Some(status), Some((ok, message))) = (progress.status, progress.result()) {
                    self.done = true;
                    let data = json!({ "status": status, "ok": ok, "message": message });
                    return Some(
                        Event::default()
                            .event("done")
                            .id("done")
                            .data(data.to_string()),
                    );
                }
            }
            let (changed, closing) = (&mut self.changed, &mut self.closing);
            let closing = async move {
                match closing {
                    // Closing when told so, or when the server is gone.
                    Some(closing) => drop(closing.wait_for(|closing| *closing).await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = changed.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = closing => return None,
            }
        }
    }
}

/// Where a reconnecting event stream resumes: after the `Last-Event-ID`.
pub(crate) fn resume_from(last_event_id: Option<&str>, action: &Action) -> usize {
    match last_event_id {
        None => 0,
        Some("done") => action.lock().chunks.len(),
        Some(id) => id.parse::<usize>().map_or(0, |id| id + 1),
    }
}
