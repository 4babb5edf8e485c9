//! Reading instance logs back for `logs APP [-n N] [-f] [-i I]`: the files of `logs.rs`,
//! merged in time order.
//!
//! Each line starts with an RFC 3339 UTC timestamp (written by [`crate::logs::LogSink`]), so
//! lines of several instances merge by sorting on it. A rotated file (`APP@I.log.1`) is read
//! before the current one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nap_runtime::{LogLine, LogRequest};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// How often `follow` looks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// Sends the lines `request` asks for from `dir` (the app's log directory) to `to`: the last
/// `request.lines`, then, when following, every new line until `to`'s receiver is dropped.
pub(crate) async fn send(dir: PathBuf, request: LogRequest, to: mpsc::Sender<LogLine>) {
    let files = log_files(&dir, &request.app, request.instance);
    let mut merged = Vec::new();
    for (index, path) in &files {
        let mut rotated = path.clone().into_os_string();
        rotated.push(".1");
        let mut lines = tail(Path::new(&rotated), request.lines).await;
        lines.extend(tail(path, request.lines).await);
        merged.extend(lines.iter().map(|line| stamped(*index, line)));
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = merged.len().saturating_sub(request.lines);
    for (_, line) in merged.drain(..).skip(skip) {
        if to.send(line).await.is_err() {
            return;
        }
    }
    if request.follow {
        follow(&dir, &request.app, request.instance, &to).await;
    }
}

/// `APP@I.log` → I. (A rotated `APP@I.log.1` is not an instance's file of its own.)
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

/// `TIMESTAMP text` of instance `index` → (timestamp, the line).
fn stamped(index: u32, line: &str) -> (String, LogLine) {
    let (stamp, text) = line.split_once(' ').unwrap_or(("", line));
    (
        stamp.to_owned(),
        LogLine {
            index,
            text: text.to_owned(),
        },
    )
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

/// Sends what the instances write from now on, until the receiver goes away.
async fn follow(dir: &Path, app: &str, instance: Option<u32>, to: &mpsc::Sender<LogLine>) {
    // Where each file was read to; a file that shrank was rotated.
    let mut offsets: HashMap<PathBuf, u64> = HashMap::new();
    for (_, path) in log_files(dir, app, instance) {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        offsets.insert(path, size);
    }
    let mut ticker = tokio::time::interval(FOLLOW_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = to.closed() => return,
        }
        let mut fresh = Vec::new();
        for (index, path) in log_files(dir, app, instance) {
            let offset = offsets.entry(path.clone()).or_insert(0);
            for line in new_lines(&path, offset).await {
                fresh.push(stamped(index, &line));
            }
        }
        fresh.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, line) in fresh {
            if to.send(line).await.is_err() {
                return;
            }
        }
    }
}

/// The whole lines written to `path` since `offset`, which moves past them; the rest waits
/// for its newline.
async fn new_lines(path: &Path, offset: &mut u64) -> Vec<String> {
    let Ok(size) = tokio::fs::metadata(path).await.map(|m| m.len()) else {
        return Vec::new();
    };
    if size < *offset {
        *offset = 0;
    }
    if size == *offset {
        return Vec::new();
    }
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return Vec::new();
    };
    if file.seek(std::io::SeekFrom::Start(*offset)).await.is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if (&mut file)
        .take(size - *offset)
        .read_to_end(&mut bytes)
        .await
        .is_err()
    {
        return Vec::new();
    }
    let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    *offset += end as u64 + 1;
    String::from_utf8_lossy(&bytes[..end])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(instance_of(Path::new("/l/web/web@3.log"), "web"), Some(3));
        assert_eq!(instance_of(Path::new("/l/web/web@3.log.1"), "web"), None);
        assert_eq!(instance_of(Path::new("/l/web/webx@3.log"), "web"), None);
    }

    #[test]
    fn lines_lose_their_timestamp() {
        let (stamp, line) = stamped(2, "2026-01-01T00:00:00.000Z hello world");
        assert_eq!(stamp, "2026-01-01T00:00:00.000Z");
        assert_eq!(
            line,
            LogLine {
                index: 2,
                text: "hello world".into()
            }
        );
    }

    #[tokio::test]
    async fn the_last_lines_of_all_instances_come_merged_in_time_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text);
        write(
            "web@1.log.1",
            "2026-01-01T00:00:01.000Z one-a\n2026-01-01T00:00:04.000Z one-b\n",
        )
        .expect("write");
        write("web@1.log", "2026-01-01T00:00:06.000Z one-c\n").expect("write");
        write(
            "web@2.log",
            "2026-01-01T00:00:02.000Z two-a\n2026-01-01T00:00:05.000Z two-b\n",
        )
        .expect("write");
        write("webx@1.log", "2026-01-01T00:00:03.000Z not web\n").expect("write");
        let read = |lines: usize, instance: Option<u32>| {
            let dir = dir.path().to_owned();
            async move {
                let (to, mut from) = mpsc::channel(16);
                let request = LogRequest {
                    app: "web".into(),
                    lines,
                    instance,
                    follow: false,
                };
                send(dir, request, to).await;
                let mut got = Vec::new();
                while let Some(line) = from.recv().await {
                    got.push(format!("{}:{}", line.index, line.text));
                }
                got
            }
        };
        assert_eq!(
            read(4, None).await,
            ["2:two-a", "1:one-b", "2:two-b", "1:one-c"]
        );
        assert_eq!(read(100, Some(1)).await, ["1:one-a", "1:one-b", "1:one-c"]);
    }
}
