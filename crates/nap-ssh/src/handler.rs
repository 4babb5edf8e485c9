//! One client connection: public-key authentication, then exec requests.
//! Everything else a client may ask for (pty, shell, subsystems, env,
//! forwarding, agent, X11) is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tracing::{Instrument, debug, info};

use crate::{Caller, Gate, Io, server::Options};

/// A channel is either opened and waiting for its request, or running a
/// command (then we keep the sender whose drop cancels that command).
enum ChannelState {
    Open(Channel<Msg>),
    Running(#[allow(dead_code)] oneshot::Sender<()>),
}

pub(crate) struct ClientHandler {
    gate: Arc<dyn Gate>,
    options: Arc<Options>,
    authenticated: Arc<AtomicBool>,
    caller: Option<Caller>,
    channels: HashMap<ChannelId, ChannelState>,
}

impl ClientHandler {
    pub(crate) fn new(
        gate: Arc<dyn Gate>,
        options: Arc<Options>,
        authenticated: Arc<AtomicBool>,
    ) -> ClientHandler {
        ClientHandler {
            gate,
            options,
            authenticated,
            caller: None,
            channels: HashMap::new(),
        }
    }

    /// Tells the client why its request is refused, on stderr, and ends the
    /// channel with status 1. The request itself is acknowledged: OpenSSH's
    /// client drops the channel without printing anything on a failure reply.
    fn refuse(&mut self, channel: ChannelId, session: &mut Session, message: &str) {
        self.channels.remove(&channel);
        let text = format!("nap: {message}\n");
        let _ = session.channel_success(channel);
        let _ = session.extended_data(channel, 1, text.into_bytes());
        let _ = session.exit_status_request(channel, 1);
        let _ = session.eof(channel);
        let _ = session.close(channel);
    }
}

/// The error type of the handler: russh's own.
pub(crate) type Error = russh::Error;

impl russh::server::Handler for ClientHandler {
    type Error = Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Error> {
        // Spare the signature check for keys and names we would refuse anyway.
        if user != self.options.git_user || self.gate.identify(offer.public_key).is_none() {
            return Ok(Auth::reject());
        }
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Error> {
        if user != self.options.git_user {
            info!(user, expected = %self.options.git_user, "wrong login name");
            return Ok(Auth::reject());
        }
        match self.gate.identify(key.public_key) {
            Some(caller) => {
                info!(user = %caller.user, "authenticated");
                self.caller = Some(caller);
                self.authenticated.store(true, Ordering::SeqCst);
                Ok(Auth::Accept)
            }
            None => {
                info!("unknown key refused");
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Error> {
        if self.caller.is_none() || self.channels.len() >= 8 {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.channels
            .insert(channel.id(), ChannelState::Open(channel));
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Error> {
        let (Some(caller), Some(ChannelState::Open(_))) =
            (self.caller.clone(), self.channels.get(&channel))
        else {
            let _ = session.channel_failure(channel);
            return Ok(());
        };
        let Ok(command) = String::from_utf8(data.to_vec()) else {
            self.refuse(channel, session, "the command is not valid UTF-8");
            return Ok(());
        };
        let Some(ChannelState::Open(open)) = self.channels.remove(&channel) else {
            return Ok(());
        };
        let (cancel, cancelled) = oneshot::channel();
        self.channels.insert(channel, ChannelState::Running(cancel));
        session.channel_success(channel)?;
        let gate = self.gate.clone();
        let span = tracing::info_span!("exec", user = %caller.user, command = %verb(&command));
        tokio::spawn(run_exec(gate, caller, command, open, cancelled).instrument(span));
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Error> {
        // Dropping a running command's sender cancels it: the client is gone.
        self.channels.remove(&channel);
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Error> {
        let hint = format!(
            "no shell here. Push with git, or run a command: ssh {}@HOST help",
            self.options.git_user
        );
        self.refuse(channel, session, &hint);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Error> {
        let message = format!("subsystem '{}' is not served", name.escape_debug());
        self.refuse(channel, session, &message);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Error> {
        // No terminal is ever made. The request is acknowledged only so that
        // `ssh -tt` goes on to ask for a shell and prints our refusal:
        // refused here, it would hang up without a word.
        let _ = session.channel_success(channel);
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Error> {
        // The environment of nap's commands is nap's, never the client's.
        debug!(variable = %variable_name.escape_debug(), "env request ignored");
        let _ = session.channel_failure(channel);
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Error> {
        let _ = session.channel_failure(channel);
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }
}

/// The command's first word, for logs: the rest may hold secrets
/// (`config:set APP KEY=VALUE`).
fn verb(command: &str) -> String {
    let word = command.split_whitespace().next().unwrap_or("");
    word.chars()
        .take(40)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// Runs the gate's command on the channel's streams, then reports the exit
/// status, EOF and close, in the order OpenSSH's own server uses.
async fn run_exec(
    gate: Arc<dyn Gate>,
    caller: Caller,
    command: String,
    channel: Channel<Msg>,
    cancelled: oneshot::Receiver<()>,
) {
    let (mut read_half, write_half) = channel.split();
    let stdout = write_half.make_writer();
    let stderr = write_half.make_writer_ext(Some(1));
    let status = {
        let io = Io {
            stdin: Box::new(read_half.make_reader()),
            stdout: Box::new(stdout),
            stderr: Box::new(stderr),
        };
        tokio::select! {
            status = gate.exec(caller, command, io) => status,
            _ = cancelled => {
                debug!("client went away; command stopped");
                return;
            }
        }
    };
    // The writers were flushed by the gate; EOF, status, close.
    let mut eof = write_half.make_writer();
    let _ = eof.shutdown().await;
    let _ = write_half.exit_status(status).await;
    let _ = write_half.close().await;
    debug!(status, "command finished");
}
