//! `clone APP [NEW] --command CMD` ("similar apps": same code, another start
//! command) and `deploy NEW --from URL [--ref REF]`. Both end in the same
//! deploy as a push, and leave no app behind when they fail.

use std::sync::Arc;

use nap_core::{AppName, Caller};

use super::{Call, fail};
use crate::app_lock::AppLock;
use crate::deploy::Source;
use crate::git_exec::FetchSource;
use crate::remote_check::Checked;
use crate::repo::{RepoError, blocking};
use crate::{Daemon, Out};

/// `clone APP [NEW] --command CMD...`: everything after `--command` is the
/// command, so it needs no extra quoting over ssh.
fn parse_clone<'a>(args: &[&'a str]) -> Option<(&'a str, Option<&'a str>, String)> {
    let at = args.iter().position(|a| *a == "--command")?;
    let command = args[at + 1..].join(" ");
    match &args[..at] {
        [app] if !command.trim().is_empty() => Some((app, None, command)),
        [app, new] if !command.trim().is_empty() => Some((app, Some(new), command)),
        _ => None,
    }
}

pub async fn clone(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let Some((name, new_name, start_command)) = parse_clone(args) else {
        return command.usage(out).await;
    };
    let (app, record) = match command.app(daemon, caller, name, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let Some(release) = record.release.and_then(|n| daemon.release(&app, n)) else {
        return fail(
            out,
            format!("app {app} has no release to copy; push it first"),
        )
        .await;
    };
    let new = match new_name {
        Some(new) => match AppName::parse(new) {
            Ok(new) => new,
            Err(e) => return fail(out, e).await,
        },
        None => match daemon.next_similar_name(&app) {
            Ok(new) => new,
            Err(message) => return fail(out, message).await,
        },
    };
    let _lock = match create_locked(daemon, caller, &new, Some(app.as_str()), out).await {
        Ok(lock) => lock,
        Err(status) => return status,
    };
    out.err(&format!(
        "-----> Creating {new}: {app} v{} with command {}",
        release.number,
        start_command.escape_debug()
    ))
    .await;
    let status = clone_into(
        daemon,
        caller,
        &app,
        &new,
        &release.commit,
        &start_command,
        out,
    )
    .await;
    if status != 0 {
        daemon.remove_app(&new).await;
        out.err(&format!(" !     {new} was not created")).await;
    }
    status
}

/// Creates `app` for `caller`, taking its lock first and returning it: the creation, the
/// deploy and, if that fails, the removal happen under one lock, so a push of the same
/// name waits for all of them and never sees (or writes into) a half-made app.
async fn create_locked(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    app: &AppName,
    similar_to: Option<&str>,
    out: &mut Out<'_>,
) -> Result<AppLock, u32> {
    let Ok(lock) = daemon.lock_app(app, out).await else {
        return Err(1);
    };
    match daemon
        .apps
        .create_new(caller, app.as_str(), similar_to)
        .await
    {
        Ok(_) => Ok(lock),
        Err(e) => Err(fail(out, e).await),
    }
}

async fn clone_into(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    app: &AppName,
    new: &AppName,
    commit: &str,
    command: &str,
    out: &mut Out<'_>,
) -> u32 {
    let (from, to) = (
        daemon.data.repo(app.as_str()),
        daemon.data.repo(new.as_str()),
    );
    let (commit, command, user, source_app) = (
        commit.to_owned(),
        command.to_owned(),
        caller.user.clone(),
        app.to_string(),
    );
    // gix work is blocking: copy the objects, rewrite the profile, commit.
    let made = blocking(move || -> Result<(nap_git::Repo, String), RepoError> {
        nap_git::copy_objects(&from, &to)?;
        let repo = nap_git::open(&to, &nap_git::Quarantine::default())?;
        let profile = repo
            .read_file(&commit, "profile", nap_profile::MAX_PROFILE_BYTES as u64)?
            .ok_or(RepoError::NoProfile)?;
        let profile = String::from_utf8(profile).map_err(|_| RepoError::ProfileNotUtf8)?;
        let profile = nap_profile::replace_command("profile", &profile, &command)?;
        let message =
            format!("Similar app of {source_app}: command {command}\n\nMade by nap for {user}.");
        let email = format!("{user}@nap");
        let new_commit = repo.commit_file(
            &commit,
            "profile",
            profile.as_bytes(),
            &message,
            (&user, &email),
            "refs/heads/master",
        )?;
        repo.set_head("master")?;
        Ok((repo, new_commit))
    })
    .await;
    let (repo, new_commit) = match made {
        Ok(made) => made,
        Err(e) => return fail(out, e).await,
    };
    let source = Source {
        repo,
        commit: &new_commit,
        pusher: &caller.user,
        note: format!("similar to {app}"),
        env: None,
        built: None,
    };
    match daemon.deploy(new, source, out).await {
        Ok(_) => 0,
        Err(_) => 1,
    }
}

/// `deploy NEW --from URL [--ref REF]`.
fn parse_deploy<'a>(args: &[&'a str]) -> Option<(&'a str, &'a str, &'a str)> {
    match args {
        [name, "--from", url] => Some((name, url, "HEAD")),
        [name, "--from", url, "--ref", reference] | [name, "--ref", reference, "--from", url] => {
            Some((name, url, reference))
        }
        _ => None,
    }
}

/// The URL without a password, for output and logs.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) if !user.contains('/') => {
                let user = user.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// A ref to fetch: a branch, tag or HEAD, nothing that git could read as an
/// option or a refspec.
fn check_ref(reference: &str) -> Result<(), String> {
    let valid = !reference.is_empty()
        && !reference.starts_with('-')
        && reference.len() <= 200
        && !reference.contains("..")
        && reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "ref '{}': expected a branch, tag or HEAD",
            reference.escape_debug()
        ))
    }
}

pub async fn deploy_from(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let Some((name, url, reference)) = parse_deploy(args) else {
        return command.usage(out).await;
    };
    let app = match AppName::parse(name) {
        Ok(app) => app,
        Err(e) => return fail(out, e).await,
    };
    // Before anything is made: what the URL may reach, for this caller.
    let allowed = &daemon.settings.deploy_from_networks;
    let checked = match crate::remote_check::check(url, &redact(url), caller.admin, allowed).await {
        Ok(checked) => checked,
        Err(refused) => return fail(out, refused).await,
    };
    if let Err(message) = check_ref(reference) {
        return fail(out, message).await;
    }
    let _lock = match create_locked(daemon, caller, &app, None, out).await {
        Ok(lock) => lock,
        Err(status) => return status,
    };
    let status = fetch_and_deploy(daemon, caller, &app, url, &checked, reference, out).await;
    if status != 0 {
        daemon.remove_app(&app).await;
        out.err(&format!(" !     {app} was not created")).await;
    }
    status
}

async fn fetch_and_deploy(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    app: &AppName,
    url: &str,
    checked: &Checked,
    reference: &str,
    out: &mut Out<'_>,
) -> u32 {
    let repo_path = daemon.data.repo(app.as_str());
    out.err(&format!("-----> Fetching {} ({reference})", redact(url)))
        .await;
    let fetched = crate::git_exec::fetch(
        daemon,
        &repo_path,
        &FetchSource {
            url,
            shown: &redact(url),
            checked,
            reference,
        },
    )
    .await;
    if let Err(e) = fetched {
        return fail(out, e).await;
    }
    let opened = blocking(move || {
        let repo = nap_git::open(&repo_path, &nap_git::Quarantine::default())?;
        let commit = repo.resolve_commit("refs/heads/master")?;
        repo.set_head("master")?;
        Ok::<_, RepoError>((repo, commit.id))
    })
    .await;
    let (repo, commit) = match opened {
        Ok(opened) => opened,
        Err(e) => return fail(out, e).await,
    };
    let source = Source {
        repo,
        commit: &commit,
        pusher: &caller.user,
        note: format!("deployed from {}", redact(url)),
        env: None,
        built: None,
    };
    match daemon.deploy(app, source, out).await {
        Ok(_) => 0,
        Err(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_arguments() {
        assert_eq!(
            parse_clone(&["web", "--command", "sh", "-c", "x"]),
            Some(("web", None, "sh -c x".into()))
        );
        assert_eq!(
            parse_clone(&["web", "new", "--command", "run"]),
            Some(("web", Some("new"), "run".into()))
        );
        assert_eq!(parse_clone(&["web", "--command"]), None);
        assert_eq!(parse_clone(&["web"]), None);
        assert_eq!(parse_clone(&["a", "b", "c", "--command", "x"]), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("https://bob:hunter2@example.com/r"),
            "https://bob:***@example.com/r"
        );
        assert_eq!(redact("https://example.com/r"), "https://example.com/r");
    }

    #[test]
    fn refs() {
        assert!(check_ref("main").is_ok());
        assert!(check_ref("refs/tags/v1.2").is_ok());
        for bad in ["", "-x", "a:b", "a..b", "a b", "+x"] {
            assert!(check_ref(bad).is_err(), "{bad}");
        }
    }
}
