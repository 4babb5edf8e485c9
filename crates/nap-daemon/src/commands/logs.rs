//! `logs APP [-n N] [-f] [-i I]`: instance output merged in time order.
//!
//! Each instance log line starts with an RFC 3339 UTC timestamp (written by
//! the supervisor), so lines of several instances merge by sorting on it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nap_core::{Action, Caller};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{app_for, usage};
use crate::{Daemon, Out};

/// Most lines `-n` may ask for.
const MAX_LINES: usize = 10_000;
/// How often `-f` looks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

struct Options<'a> {
    app: &'a str,
    lines: usize,
    follow: bool,
    instance: Option<u32>,
}

fn parse<'a>(args: &[&'a str]) -> Option<Options<'a>> {
    let mut options = Options {
        app: "",
        lines: 100,
        follow: false,
        instance: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "-f" | "--follow" => options.follow = true,
            "-n" | "--lines" => {
                options.lines = args.next()?.parse().ok().filter(|n| *n <= MAX_LINES)?
            }
            "-i" | "--instance" => options.instance = Some(args.next()?.parse().ok()?),
            flag if flag.starts_with('-') => return None,
            app if options.app.is_empty() => options.app = app,
            _ => return None,
        }
    }
    (!options.app.is_empty()).then_some(options)
}

/// `APP@I.log` (and its rotated `.log.1`) → I.
fn instance_of(file: &Path, app: &str) -> Option<u32> {
    let name = file.file_name()?.to_str()?;
    name.strip_prefix(app)?
        .strip_prefix('@')?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

fn log_files(dir: &Path, app: &str, instance: Option<u32>) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| instance_of(&e.path(), app).map(|i| (i, e.path())))
        .filter(|(i, _)| instance.is_none_or(|wanted| wanted == *i))
        .collect();
    files.sort();
    files
}

/// `TIMESTAMP text` → (timestamp, `APP@I | text`).
fn format_line(app: &str, index: u32, line: &str) -> (String, String) {
    let (stamp, text) = line.split_once(' ').unwrap_or(("", line));
    (stamp.to_owned(), format!("{app}@{index} | {text}"))
}

/// The last `keep` lines of a file, reading no more than the tail it needs.
async fn tail(path: &Path, keep: usize) -> Vec<String> {
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return Vec::new();
    };
    let Ok(size) = file.metadata().await.map(|m| m.len()) else {
        return Vec::new();
    };
    // Lines are at most 16 KiB; read backwards in growing windows.
    let mut window = 64 * 1024u64;
    loop {
        let start = size.saturating_sub(window);
        if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).await.is_err() {
            return Vec::new();
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut lines: Vec<&str> = text.lines().collect();
        if start > 0 {
            lines.remove(0); // probably cut in the middle
        }
        if lines.len() >= keep || start == 0 {
            let skip = lines.len().saturating_sub(keep);
            return lines[skip..].iter().map(|l| (*l).to_owned()).collect();
        }
        window *= 4;
    }
}

pub async fn logs(daemon: &Arc<Daemon>, caller: &Caller, args: &[&str], out: &mut Out<'_>) -> u32 {
    let Some(options) = parse(args) else {
        return usage(out, "logs").await;
    };
    let (app, _) = match app_for(daemon, caller, options.app, Action::Read, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    if daemon.runtime.name() != "local" {
        out.err(&format!(
            " !     {app}'s instances run on the cluster's machines; their output is in each machine's journal: \
             journalctl -u '{app}@*' there ('ps {app}' shows the machines)"
        ))
        .await;
        return 1;
    }
    let dir = daemon.data.app_logs(app.as_str());
    let files = log_files(&dir, app.as_str(), options.instance);
    let mut merged = Vec::new();
    for (index, path) in &files {
        let mut rotated = path.clone().into_os_string();
        rotated.push(".1");
        let mut lines = tail(Path::new(&rotated), options.lines).await;
        lines.extend(tail(path, options.lines).await);
        merged.extend(lines.iter().map(|l| format_line(app.as_str(), *index, l)));
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = merged.len().saturating_sub(options.lines);
    for (_, line) in &merged[skip..] {
        out.line(line).await;
    }
    if !options.follow {
        return 0;
    }
    follow(&dir, app.as_str(), options.instance, out).await
}

/// Prints what the instances write from now on, until the client goes away
/// (which drops this future).
async fn follow(dir: &Path, app: &str, instance: Option<u32>, out: &mut Out<'_>) -> u32 {
    // Where each file was read to; a file that shrank was rotated.
    let mut offsets: HashMap<PathBuf, u64> = HashMap::new();
    for (_, path) in log_files(dir, app, instance) {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        offsets.insert(path, size);
    }
    let mut ticker = tokio::time::interval(FOLLOW_INTERVAL);
    loop {
        ticker.tick().await;
        let mut fresh = Vec::new();
        for (index, path) in log_files(dir, app, instance) {
            let Ok(size) = std::fs::metadata(&path).map(|m| m.len()) else {
                continue;
            };
            let offset = offsets.entry(path.clone()).or_insert(0);
            if size < *offset {
                *offset = 0;
            }
            if size == *offset {
                continue;
            }
            let Ok(mut file) = tokio::fs::File::open(&path).await else {
                continue;
            };
            if file.seek(std::io::SeekFrom::Start(*offset)).await.is_err() {
                continue;
            }
            let mut bytes = Vec::new();
            if (&mut file)
                .take(size - *offset)
                .read_to_end(&mut bytes)
                .await
                .is_err()
            {
                continue;
            }
            // Only whole lines; the rest waits for its newline.
            let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
                continue;
            };
            *offset += end as u64 + 1;
            for line in String::from_utf8_lossy(&bytes[..end]).lines() {
                fresh.push(format_line(app, index, line));
            }
        }
        fresh.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, line) in fresh {
            out.line(&line).await;
        }
        if out.closed() {
            return 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse(&["web", "-n", "5", "-f", "-i", "2"]).unwrap();
        assert_eq!(
            (o.app, o.lines, o.follow, o.instance),
            ("web", 5, true, Some(2))
        );
        assert!(parse(&["web", "-n"]).is_none());
        assert!(parse(&["web", "-n", "lots"]).is_none());
        assert!(parse(&["web", "-x"]).is_none());
        assert!(parse(&["web", "other"]).is_none());
        assert!(parse(&[]).is_none());
    }

    #[test]
    fn file_names() {
        assert_eq!(instance_of(Path::new("/l/web/web@3.log"), "web"), Some(3));
        assert_eq!(instance_of(Path::new("/l/web/web@3.log.1"), "web"), None);
        assert_eq!(instance_of(Path::new("/l/web/webx@3.log"), "web"), None);
    }

    #[test]
    fn lines_are_labelled() {
        assert_eq!(
            format_line("web", 2, "2026-01-01T00:00:00.000Z hello world"),
            (
                "2026-01-01T00:00:00.000Z".into(),
                "web@2 | hello world".into()
            )
        );
    }
}
