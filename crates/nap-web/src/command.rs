//! Running a management command through the backend. What the `--json` forms
//! of `apps`, `ps` and `releases` print is read into the rows the daemon
//! writes them from, [`nap_core::rows`].

use std::sync::Arc;

pub(crate) use nap_core::rows::{AppRow, InstanceRow, ReleaseRow};
use tokio::sync::mpsc;

use crate::{Backend, Chunk, User};

/// How many chunks may wait between the command and us.
const CHANNEL_CHUNKS: usize = 64;

/// The most output kept from one command; the rest is dropped with a note.
pub(crate) const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Runs `args` as `user`, handing each chunk of output to `on_chunk` as it
/// arrives; returns the exit status.
pub(crate) async fn run_streaming(
    backend: &Arc<dyn Backend>,
    user: User,
    args: Vec<String>,
    mut on_chunk: impl FnMut(Chunk) + Send,
) -> u32 {
    let (sender, mut receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let mut run = backend.run(user, args, sender);
    loop {
        tokio::select! {
            // Output first, so nothing is left behind when the status comes.
            biased;
            Some(chunk) = receiver.recv() => on_chunk(chunk),
            status = &mut run => {
                // The command is done; take what it sent but we did not read
                // yet, without waiting for senders it may have leaked.
                while let Ok(chunk) = receiver.try_recv() {
                    on_chunk(chunk);
                }
                return status;
            }
        }
    }
}

/// A finished command.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The exit status: 0 ok, 1 refused or failed, 2 bad usage.
    pub(crate) status: u32,
    /// Everything written to stdout.
    pub(crate) stdout: String,
    /// Everything written to stderr.
    pub(crate) stderr: String,
    /// Both, in the order they came.
    pub(crate) output: String,
}

impl Outcome {
    /// The one-line error to show for a failed command.
    pub(crate) fn error_message(&self) -> String {
        error_message(&self.stderr, self.status)
    }
}

/// Runs `args` as `user` to the end and collects its output (each stream at
/// most [`MAX_OUTPUT_BYTES`]).
pub(crate) async fn run_collect(
    backend: &Arc<dyn Backend>,
    user: &User,
    args: Vec<String>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut truncated = false;
    let status = run_streaming(backend, user.clone(), args, |chunk| {
        let (stream, text) = match &chunk {
            Chunk::Stdout(text) => (&mut outcome.stdout, text),
            Chunk::Stderr(text) => (&mut outcome.stderr, text),
        };
        if stream.len() + text.len() > MAX_OUTPUT_BYTES
            || outcome.output.len() + text.len() > 2 * MAX_OUTPUT_BYTES
        {
            truncated = true;
            return;
        }
        stream.push_str(text);
        outcome.output.push_str(text);
    })
    .await;
    if truncated {
        outcome.output.push_str("\n[output truncated]\n");
    }
    outcome.status = status;
    outcome
}

/// The error lines a command wrote (` !     message`), joined into one line;
/// the last line of stderr when it wrote none in that form.
pub(crate) fn error_message(stderr: &str, status: u32) -> String {
    let marked: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix(" !"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    if !marked.is_empty() {
        return marked.join("; ");
    }
    match stderr.lines().map(str::trim).rfind(|line| !line.is_empty()) {
        Some(line) => line.to_owned(),
        None => format!("the command failed (exit status {status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::error_message;

    #[test]
    fn error_messages() {
        let check = |stderr: &str, expected: &str| assert_eq!(error_message(stderr, 1), expected);
        check(
            " !     app web belongs to another user\n",
            "app web belongs to another user",
        );
        check(
            "-----> Creating x\n !     bad command\n !     x was not created\n",
            "bad command; x was not created",
        );
        check("usage: scale APP N\n", "usage: scale APP N");
        check("", "the command failed (exit status 1)");
    }
}
