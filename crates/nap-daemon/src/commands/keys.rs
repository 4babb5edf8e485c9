//! `keys`, `keys:add`, `keys:remove`: admins only.

use std::sync::Arc;

use nap_core::{AccessError, Caller};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{fail, usage};
use crate::users::Added;
use crate::{Daemon, Out};

/// A public key line is well under this; more is not a key.
const MAX_KEY_INPUT: u64 = 16 * 1024;

async fn admin_only(caller: &Caller, what: &'static str, out: &mut Out<'_>) -> Option<u32> {
    if caller.admin {
        None
    } else {
        Some(fail(out, AccessError::AdminOnly(what)).await)
    }
}

pub async fn list(daemon: &Arc<Daemon>, caller: &Caller, args: &[&str], out: &mut Out<'_>) -> u32 {
    if let Some(status) = admin_only(caller, "list keys", out).await {
        return status;
    }
    if !args.is_empty() {
        return usage(out, "keys").await;
    }
    out.line(&format!(
        "{:<16} {:<6} {:<20} {:<51} {}",
        "USER", "ADMIN", "TYPE", "FINGERPRINT", "COMMENT"
    ))
    .await;
    for row in daemon.users.list() {
        let admin = if row.admin { "yes" } else { "no" };
        out.line(&format!(
            "{:<16} {:<6} {:<20} {:<51} {}",
            row.user, admin, row.kind, row.fingerprint, row.comment
        ))
        .await;
    }
    0
}

pub async fn add(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    args: &[&str],
    stdin: Box<dyn AsyncRead + Send + Unpin + '_>,
    out: &mut Out<'_>,
) -> u32 {
    if let Some(status) = admin_only(caller, "add keys", out).await {
        return status;
    }
    let (name, admin) = match args {
        [name] if !name.starts_with('-') => (*name, false),
        [name, "--admin"] | ["--admin", name] => (*name, true),
        _ => return usage(out, "keys:add").await,
    };
    let mut text = String::new();
    if let Err(e) = stdin
        .take(MAX_KEY_INPUT + 1)
        .read_to_string(&mut text)
        .await
    {
        return fail(out, format!("cannot read the key from stdin: {e}")).await;
    }
    if text.len() as u64 > MAX_KEY_INPUT {
        return fail(
            out,
            "the input is larger than 16 KiB; expected one public key line",
        )
        .await;
    }
    match daemon.users.add(name, admin, &text) {
        Ok((Added::Added, key)) => {
            out.line(&format!(
                "added {} key {} for user {name}{}",
                key.kind,
                key.fingerprint,
                if admin { " (admin)" } else { "" }
            ))
            .await;
            0
        }
        Ok((Added::AlreadyThere, key)) => {
            out.line(&format!(
                "user {name} already has key {}; nothing changed",
                key.fingerprint
            ))
            .await;
            0
        }
        Err(e) => fail(out, e).await,
    }
}

pub async fn remove(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    args: &[&str],
    out: &mut Out<'_>,
) -> u32 {
    if let Some(status) = admin_only(caller, "remove keys", out).await {
        return status;
    }
    let [name] = args else {
        return usage(out, "keys:remove").await;
    };
    match daemon.users.remove(name) {
        Ok(count) => {
            out.line(&format!("removed user {name} and {count} key(s)"))
                .await;
            0
        }
        Err(e) => fail(out, e).await,
    }
}
