//! `keys`, `keys:add`, `keys:remove`: admins only (their rows' gate; the
//! dispatcher refuses everybody else before these run).

use tokio::io::AsyncReadExt;

use super::{Call, fail};
use crate::users::Added;

/// A public key line is well under this; more is not a key.
const MAX_KEY_INPUT: u64 = 16 * 1024;

pub async fn list(call: Call<'_, '_>) -> u32 {
    let (daemon, _, args, out, command) = call.parts();
    if !args.is_empty() {
        return command.usage(out).await;
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

pub async fn add(call: Call<'_, '_>) -> u32 {
    let Call {
        daemon,
        args,
        stdin,
        out,
        command,
        ..
    } = call;
    let (name, admin) = match args {
        [name] if !name.starts_with('-') => (*name, false),
        [name, "--admin"] | ["--admin", name] => (*name, true),
        _ => return command.usage(out).await,
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

pub async fn remove(call: Call<'_, '_>) -> u32 {
    let (daemon, _, args, out, command) = call.parts();
    let [name] = args else {
        return command.usage(out).await;
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
