//! `releases` and `rollback`.

use nap_core::rows::ReleaseRow;

use super::{Call, fail};
use crate::deploy::Source;

pub async fn releases(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let (app, record, json) = match command.app_and_json_flag(daemon, caller, args, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let rows: Vec<ReleaseRow> = (1..=record.last_release)
        .rev()
        .filter_map(|number| daemon.release(&app, number))
        .map(|release| ReleaseRow {
            current: record.release == Some(release.number),
            number: release.number,
            commit: release.commit,
            pusher: release.pusher,
            time: release.time,
            note: release.note,
        })
        .collect();
    if json {
        out.json(&rows).await;
        return 0;
    }
    out.line(&format!(
        "  {:<7} {:<9} {:<16} {:<20} NOTE",
        "RELEASE", "COMMIT", "BY", "WHEN"
    ))
    .await;
    for row in rows {
        out.line(&format!(
            "{} v{:<6} {:<9} {:<16} {:<20} {}",
            if row.current { "*" } else { " " },
            row.number,
            row.commit.get(..7).unwrap_or(&row.commit),
            row.pusher,
            nap_web::utc(row.time),
            row.note
        ))
        .await;
    }
    0
}

pub async fn rollback(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let (name, wanted) = match args {
        [name] => (*name, None),
        [name, version] => match version.strip_prefix('v').unwrap_or(version).parse::<u32>() {
            Ok(number) => (*name, Some(number)),
            Err(_) => {
                return fail(
                    out,
                    format!("'{}': expected a release like v3", version.escape_debug()),
                )
                .await;
            }
        },
        _ => return command.usage(out).await,
    };
    let locked = match command.lock_app(daemon, caller, name, out).await {
        Ok(locked) => locked,
        Err(status) => return status,
    };
    let (app, record) = (locked.app.clone(), &locked.record);
    let Some(current) = record.release else {
        return fail(out, format!("app {app} has no release to roll back from")).await;
    };
    // Default: the newest release before the running one.
    let target = match wanted {
        Some(number) => daemon.release(&app, number).map(|r| (number, r)),
        None => (1..current)
            .rev()
            .find_map(|n| daemon.release(&app, n).map(|r| (n, r))),
    };
    let Some((number, old)) = target else {
        return fail(
            out,
            match wanted {
                Some(n) => format!("{app} has no release v{n}; see 'releases {app}'"),
                None => format!("{app} has no release before v{current}"),
            },
        )
        .await;
    };
    if number == current {
        return fail(out, format!("v{number} is already running")).await;
    }
    let repo = match nap_git::open(
        &daemon.data.repo(app.as_str()),
        &nap_git::Quarantine::default(),
    ) {
        Ok(repo) => repo,
        Err(e) => return fail(out, format!("cannot open the repository: {e}")).await,
    };
    out.err(&format!("-----> Rolling {app} back to v{number}"))
        .await;
    let source = Source {
        repo,
        commit: &old.commit,
        pusher: &caller.user,
        note: format!("rollback to v{number}"),
        env: Some(old.env.clone()),
        built: Some(number),
    };
    match daemon.deploy(&app, source, out).await {
        Ok(_) => {
            // The config of the old release is the config now.
            if let Err(e) = nap_store::write_json(&daemon.data.app_config(app.as_str()), &old.env) {
                return fail(out, e).await;
            }
            0
        }
        Err(_) => 1,
    }
}
