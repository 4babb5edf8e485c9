//! `certs`, `certs:add`, `certs:remove`, `certs:auto`: the certificates the
//! router's HTTPS listener serves for an app's custom hosts, uploaded or
//! ordered from ACME.

use std::sync::Arc;
use std::time::SystemTime;

use nap_certs::{CertRecord, CheckedCertificate, HostName, MAX_INPUT_BYTES, Source};
use nap_core::AppName;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::{Call, fail};
use crate::{Daemon, Out};

/// What `certs APP --json` prints.
#[derive(Debug, Serialize)]
struct CertsJson {
    app: String,
    /// Whether the app's certificates come from ACME.
    auto: bool,
    hosts: Vec<HostCert>,
}

/// One host's line of `certs APP`.
#[derive(Debug, Serialize)]
struct HostCert {
    host: String,
    /// `uploaded` or `acme`; absent when the host has no certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
    /// When nap last ordered one from ACME and why that failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_attempt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

fn host_cert(daemon: &Daemon, host: &HostName) -> HostCert {
    let record = match daemon.tls.store.record(host) {
        Ok(record) => record,
        Err(error) => {
            tracing::warn!(%host, %error, "certificate entry unreadable");
            None
        }
    };
    let (certificate, attempt) = match record {
        Some(CertRecord {
            certificate,
            last_attempt,
            ..
        }) => (certificate, last_attempt),
        None => (None, None),
    };
    HostCert {
        host: host.to_string(),
        source: certificate.as_ref().map(|c| c.source),
        issuer: certificate.as_ref().map(|c| c.issuer.clone()),
        not_after: certificate.as_ref().map(|c| c.not_after.to_string()),
        last_attempt: attempt.as_ref().map(|a| a.at.to_string()),
        last_error: attempt.and_then(|a| a.error),
    }
}

pub async fn list(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let (app, _, json) = match command.app_and_json_flag(daemon, caller, args, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let report = CertsJson {
        app: app.to_string(),
        auto: daemon.acme_auto(&app),
        hosts: daemon
            .domains
            .hosts_of(&app)
            .iter()
            .map(|host| host_cert(daemon, host))
            .collect(),
    };
    if json {
        out.json(&report).await;
        return 0;
    }
    out.line(&format!(
        "certificates from ACME: {}",
        if report.auto { "on" } else { "off" }
    ))
    .await;
    if report.hosts.is_empty() {
        out.line("no domains; add one with 'domains:add APP HOST'")
            .await;
    }
    for host in &report.hosts {
        let line = match (&host.source, &host.issuer, &host.not_after) {
            (Some(source), Some(issuer), Some(not_after)) => format!(
                "{}  {source}  expires {not_after}  issuer {issuer}",
                host.host
            ),
            _ => format!("{}  no certificate", host.host),
        };
        out.line(&line).await;
        if let (Some(at), Some(error)) = (&host.last_attempt, &host.last_error) {
            out.line(&format!("    last ACME attempt {at} failed: {error}"))
                .await;
        }
    }
    0
}

pub async fn add(call: Call<'_, '_>) -> u32 {
    let Call {
        daemon,
        caller,
        args,
        stdin,
        out,
        command,
    } = call;
    let [name] = args else {
        return command.usage(out).await;
    };
    let (app, _) = match command.app(daemon, caller, name, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let mut input = Vec::new();
    let limit = u64::try_from(MAX_INPUT_BYTES).unwrap_or(u64::MAX);
    if let Err(error) = stdin.take(limit + 1).read_to_end(&mut input).await {
        return fail(
            out,
            format!("cannot read the certificate from stdin: {error}"),
        )
        .await;
    }
    let now = SystemTime::now();
    let certificate = match CheckedCertificate::parse(&input, now) {
        Ok(certificate) => certificate,
        Err(error) => return fail(out, error).await,
    };
    let hosts = daemon.domains.hosts_of(&app);
    if hosts.is_empty() {
        return fail(
            out,
            format!("{app} has no domains; add one with 'domains:add {app} HOST' first"),
        )
        .await;
    }
    let covered = match certificate.covered_hosts(&hosts) {
        Ok(covered) => covered,
        Err(not_covered) => return fail(out, not_covered).await,
    };
    for host in &covered {
        if let Err(error) = daemon
            .tls
            .store
            .save(host, &certificate, Source::Uploaded, now)
        {
            return fail(out, error).await;
        }
        tracing::info!(%app, %host, "certificate uploaded");
        out.line(&format!(
            "{host}: serving the certificate until {}",
            certificate.info().not_after
        ))
        .await;
    }
    daemon.tls.announce_change();
    if daemon.acme_auto(&app) {
        // An uploaded certificate within the renewal window of an app whose
        // certificates come from ACME is replaced now, not within the hour.
        daemon.tls.wake_renewal();
    }
    0
}

pub async fn remove(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let (app, host) = match command.app_and_host(daemon, caller, args, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    if daemon.domains.app_of(&host).as_deref() != Some(app.as_str()) {
        return fail(out, format!("{host} is not a domain of {app}")).await;
    }
    match daemon.remove_certificate(&host) {
        Ok(true) => {
            out.line(&format!("{host}: certificate removed")).await;
            if daemon.acme_auto(&app) {
                out.line("the app's certificates come from ACME: a new one will be ordered; 'certs:auto APP --off' stops that")
                    .await;
            }
            0
        }
        Ok(false) => fail(out, format!("{host} has no certificate")).await,
        Err(error) => fail(out, error).await,
    }
}

pub async fn auto(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let (name, on) = match args {
        [name] => (*name, true),
        [name, "--off"] => (*name, false),
        _ => return command.usage(out).await,
    };
    let (app, _) = match command.app(daemon, caller, name, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    if let Err(error) = daemon
        .domains
        .update_settings(&app, |settings| settings.acme = Some(on))
    {
        return fail(out, error).await;
    }
    if !on {
        out.line("certificates are no longer ordered from ACME; those stored stay in service until they expire")
            .await;
        return 0;
    }
    order_now(daemon, &app, out).await
}

/// Orders a certificate for each host of `app` that has none, an uploaded
/// one, or one within the renewal window, and says how each went. The
/// orders run in a task of their own: a client that goes away does not
/// leave one half-done.
async fn order_now(daemon: &Arc<Daemon>, app: &AppName, out: &mut Out<'_>) -> u32 {
    let hosts = daemon.domains.hosts_of(app);
    if hosts.is_empty() {
        out.line(&format!(
            "certificates will be ordered for each domain added with 'domains:add {app} HOST'"
        ))
        .await;
        return 0;
    }
    let mut failed = 0;
    for host in hosts {
        let now = SystemTime::now();
        let current = daemon.tls.store.record(&host).ok().flatten();
        let keep = current
            .as_ref()
            .and_then(|record| record.certificate.as_ref())
            .filter(|c| {
                c.source == Source::Acme
                    && now + daemon.tls.policy.renew_before < c.not_after.system_time()
            })
            .map(|c| c.not_after);
        if let Some(not_after) = keep {
            out.line(&format!(
                "{host}: has a certificate from ACME until {not_after}"
            ))
            .await;
            continue;
        }
        out.line(&format!("{host}: ordering a certificate")).await;
        let ordering = {
            let daemon = daemon.clone();
            let host = host.clone();
            tokio::spawn(async move { daemon.tls.order(&host).await })
        };
        match ordering.await {
            Ok(Ok(record)) => {
                let until = record
                    .certificate
                    .map_or_else(String::new, |c| c.not_after.to_string());
                out.line(&format!("{host}: certificate stored, valid until {until}"))
                    .await;
            }
            Ok(Err(error)) => {
                failed += 1;
                out.err(&format!(
                    " !     {host}: {}",
                    nap_certs::describe_error(&error)
                ))
                .await;
            }
            Err(error) => {
                failed += 1;
                out.err(&format!(" !     {host}: the order stopped: {error}"))
                    .await;
            }
        }
    }
    if failed > 0 {
        out.err(
            " !     a certificate in service stays in service; nap tries again within the hour",
        )
        .await;
        return super::call::FAILED;
    }
    0
}
