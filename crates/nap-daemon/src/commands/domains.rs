//! `domains`, `domains:add`, `domains:remove`, `domains:redirect`: the custom
//! hosts an app is reached at besides `APP.<domain>`, and whether plain HTTP
//! for them is sent to HTTPS.
//!
//! A host belongs to at most one app. Who asks for a host that is taken
//! learns that it is taken; only an admin learns by which app, so that a
//! user cannot find out the names of apps they may not see.

use nap_core::{AppName, Caller, HostName};
use serde::Serialize;

use super::{Call, fail};
use crate::Daemon;
use crate::domains::{Added, DomainError};

/// What `domains APP --json` prints.
#[derive(Debug, Serialize)]
struct DomainsJson {
    app: String,
    hosts: Vec<String>,
    https_redirect: bool,
}

/// `host` as a custom domain: one that is not the daemon's own domain nor
/// below it (those are `APP.<domain>`, and taking one would take the name of
/// an app that does not exist yet).
fn custom_host(daemon: &Daemon, host: HostName) -> Result<HostName, String> {
    let domain = daemon.settings.domain.as_str();
    let below = host
        .as_str()
        .strip_suffix(domain)
        .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'));
    if below {
        return Err(format!(
            "{host} is under nap's own domain {domain}, where apps are reached by their name; \
             expected a host of a domain you own, like www.example.com"
        ));
    }
    Ok(host)
}

/// The message for a refused change, naming a foreign owner to admins only.
fn refusal(caller: &Caller, error: DomainError) -> String {
    match error {
        DomainError::Taken { host, .. } if !caller.admin => {
            format!("{host} is already a domain of another app; remove it there first")
        }
        DomainError::Taken { host, app } => {
            format!("{host} is already a domain of app {app}; remove it there first")
        }
        other => other.to_string(),
    }
}

pub async fn list(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let (app, _, json) = match command.app_and_json_flag(daemon, caller, args, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let hosts = daemon.domains.hosts_of(&app);
    let https_redirect = daemon.domains.settings(&app).https_redirect;
    if json {
        out.json(&DomainsJson {
            app: app.to_string(),
            hosts: hosts.iter().map(ToString::to_string).collect(),
            https_redirect,
        })
        .await;
        return 0;
    }
    out.line(&format!(
        "{app}.{} (https redirect {})",
        daemon.settings.domain,
        if https_redirect { "on" } else { "off" }
    ))
    .await;
    for host in hosts {
        out.line(host.as_str()).await;
    }
    0
}

pub async fn add(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let (app, host) = match command.app_and_host(daemon, caller, args, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let host = match custom_host(daemon, host) {
        Ok(host) => host,
        Err(message) => return fail(out, message).await,
    };
    match daemon.domains.add(&app, &host) {
        Ok(Added::AlreadyThere) => {
            out.line(&format!(
                "{host} is already a domain of {app}; nothing changed"
            ))
            .await;
            return 0;
        }
        Ok(Added::Added) => {}
        Err(error) => return fail(out, refusal(caller, error)).await,
    }
    // A destroy removes the app's record first and its hosts after; if the
    // record is gone now, that destroy may have freed the hosts before this
    // one was added, so it is ours to take back.
    if !matches!(daemon.apps.record(&app), Ok(Some(_))) {
        let _ = daemon.domains.remove(&app, &host);
        return fail(out, format!("app {app} does not exist")).await;
    }
    tracing::info!(%app, %host, "domain added");
    out.line(&format!("{host} now leads to {app}")).await;
    if daemon.acme_auto(&app) {
        daemon.tls.wake_renewal();
        out.line("a certificate will be ordered from ACME; see 'certs APP'")
            .await;
    }
    0
}

pub async fn remove(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let (app, host) = match command.app_and_host(daemon, caller, args, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    if let Err(error) = daemon.domains.remove(&app, &host) {
        return fail(out, refusal(caller, error)).await;
    }
    tracing::info!(%app, %host, "domain removed");
    // The host is no longer the app's: nothing should be served for it.
    if let Err(error) = daemon.remove_certificate(&host) {
        tracing::warn!(%host, %error, "cannot remove the certificate of a removed domain");
    }
    out.line(&format!("{host} removed from {app}")).await;
    0
}

pub async fn redirect(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let (name, on) = match args {
        [name, "on"] => (*name, true),
        [name, "off"] => (*name, false),
        _ => return command.usage(out).await,
    };
    let (app, _) = match command.app(daemon, caller, name, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    set_redirect(daemon, &app, on, out).await
}

async fn set_redirect(daemon: &Daemon, app: &AppName, on: bool, out: &mut crate::Out<'_>) -> u32 {
    match daemon
        .domains
        .update_settings(app, |settings| settings.https_redirect = on)
    {
        Ok(_) => {
            let message = if on {
                "plain HTTP to the app's hosts that have a certificate is now redirected to HTTPS (308)"
            } else {
                "plain HTTP to the app's hosts is served as it comes"
            };
            out.line(message).await;
            0
        }
        Err(error) => fail(out, error).await,
    }
}
