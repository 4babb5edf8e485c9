//! `whoami` and `token`: about the caller, not about an app.

use super::{Call, fail};

pub async fn whoami(call: Call<'_, '_>) -> u32 {
    let Call { caller, out, .. } = call;
    let role = if caller.admin { " (admin)" } else { "" };
    out.line(&format!("{}{role}", caller.user)).await;
    0
}

pub async fn token(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    match args {
        [] => match daemon.tokens.issue(&caller.user) {
            Ok(token) => {
                out.line(&token).await;
                0
            }
            Err(e) => fail(out, format!("cannot store the token: {e}")).await,
        },
        ["--revoke"] => match daemon.tokens.revoke(&caller.user) {
            Ok(count) => {
                out.line(&format!("revoked {count} token(s) of {}", caller.user))
                    .await;
                0
            }
            Err(e) => fail(out, format!("cannot revoke: {e}")).await,
        },
        _ => command.usage(out).await,
    }
}
