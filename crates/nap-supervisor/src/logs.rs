//! Instance logs: `logs_dir/APP/APP@I.log`, one timestamped line per line of output.
//!
//! Every line starts with an RFC 3339 UTC timestamp with milliseconds and a space, so that the
//! logs of several instances can be merged in time order by sorting. Lifecycle events that the
//! supervisor itself writes start with `-- nap: `.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Longer lines are split into pieces of at most this many bytes.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;

/// How many lines of output an instance keeps in memory for failure reports.
const TAIL_LINES: usize = 20;

/// `logs_dir/APP/APP@I.log`.
pub(crate) fn log_path(logs_dir: &Path, app: &str, index: u32) -> PathBuf {
    logs_dir.join(app).join(format!("{app}@{index}.log"))
}

/// The log file of one `APP@I`, shared by every instance with that name (during a deploy the
/// old and the new release of `APP@I` write to it side by side, and rotation must see both).
#[derive(Debug)]
pub(crate) struct LogSink {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<OpenLog>,
}

#[derive(Debug)]
struct OpenLog {
    file: File,
    size: u64,
    /// Whether the last write failed, so that a full disk is reported once, not per line.
    failing: bool,
}

impl LogSink {
    fn open(path: PathBuf, max_bytes: u64) -> io::Result<LogSink> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(LogSink {
            path,
            max_bytes,
            file: Mutex::new(OpenLog {
                file,
                size,
                failing: false,
            }),
        })
    }

    /// Appends one line of the app's output.
    pub(crate) fn write_line(&self, text: &str) {
        self.write(SystemTime::now(), text);
    }

    /// Appends a lifecycle event: `-- nap: TEXT`.
    pub(crate) fn event(&self, text: &str) {
        self.write(SystemTime::now(), &format!("-- nap: {text}"));
    }

    fn write(&self, at: SystemTime, text: &str) {
        let line = format!("{} {text}\n", rfc3339_millis(at));
        // A poisoned lock only means another writer panicked mid-line; the file is still fine.
        let mut log = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = log.file.write_all(line.as_bytes()).and_then(|()| {
            log.size += line.len() as u64;
            if log.size > self.max_bytes {
                self.rotate(&mut log)
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => log.failing = false,
            Err(error) if !log.failing => {
                log.failing = true;
                tracing::warn!(path = %self.path.display(), %error, "cannot write instance log");
            }
            Err(_) => {}
        }
    }

    /// `APP@I.log` becomes `APP@I.log.1` (replacing the previous old file) and a new file is
    /// started.
    fn rotate(&self, log: &mut OpenLog) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        fs::rename(&self.path, old)?;
        log.file = open_append(&self.path)?;
        log.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The open log files, so that instances with the same `APP@I` share one [`LogSink`]. A file is
/// closed when the last instance using it is gone.
#[derive(Debug)]
pub(crate) struct LogFiles {
    logs_dir: PathBuf,
    max_bytes: u64,
    open: HashMap<(String, u32), Weak<LogSink>>,
}

impl LogFiles {
    pub(crate) fn new(logs_dir: PathBuf, max_bytes: u64) -> LogFiles {
        LogFiles {
            logs_dir,
            max_bytes,
            open: HashMap::new(),
        }
    }

    /// The sink of `APP@I`, opening (and creating) the file if no instance has it open.
    pub(crate) fn sink(&mut self, app: &str, index: u32) -> io::Result<Arc<LogSink>> {
        self.open.retain(|_, sink| sink.strong_count() > 0);
        let key = (app.to_owned(), index);
        if let Some(sink) = self.open.get(&key).and_then(Weak::upgrade) {
            return Ok(sink);
        }
        let sink = Arc::new(LogSink::open(
            log_path(&self.logs_dir, app, index),
            self.max_bytes,
        )?);
        self.open.insert(key, Arc::downgrade(&sink));
        Ok(sink)
    }

    pub(crate) fn path(&self, app: &str, index: u32) -> PathBuf {
        log_path(&self.logs_dir, app, index)
    }
}

/// The last lines of one instance's output (without timestamps), for failure reports. Kept per
/// instance rather than read back from the log file, which other instances share.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    lines: Mutex<VecDeque<String>>,
}

impl Tail {
    fn push(&self, line: &str) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line.to_owned());
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect()
    }
}

/// Copies a child's stdout or stderr into its log, line by line, until end of file.
///
/// Lines longer than [`MAX_LINE_BYTES`] are split (at a character boundary when the text is
/// UTF-8); invalid UTF-8 is written lossily.
pub(crate) async fn pump(output: impl AsyncRead + Unpin, sink: Arc<LogSink>, tail: Arc<Tail>) {
    let emit = |line: &[u8]| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line);
        sink.write_line(&text);
        tail.push(&text);
    };
    let mut reader = BufReader::with_capacity(MAX_LINE_BYTES, output);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    // Set after a forced split, so that a newline right at the split point does not make an
    // empty line.
    let mut just_split = false;
    loop {
        let buffer = match reader.fill_buf().await {
            Ok(buffer) => buffer,
            Err(error) => {
                tracing::warn!(%error, "cannot read instance output");
                break;
            }
        };
        if buffer.is_empty() {
            break;
        }
        if just_split && line.is_empty() && buffer[0] == b'\n' {
            reader.consume(1);
            just_split = false;
            continue;
        }
        just_split = false;
        let room = MAX_LINE_BYTES - line.len();
        let window = &buffer[..buffer.len().min(room)];
        if let Some(newline) = window.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&window[..newline]);
            reader.consume(newline + 1);
            emit(&line);
            line.clear();
        } else {
            let taken = window.len();
            line.extend_from_slice(window);
            reader.consume(taken);
            if line.len() >= MAX_LINE_BYTES {
                let cut = utf8_cut(&line);
                emit(&line[..cut]);
                line.drain(..cut);
                just_split = true;
            }
        }
    }
    if !line.is_empty() {
        emit(&line);
    }
}

/// Where to split a full line buffer: before a UTF-8 character that the buffer cuts in half,
/// otherwise at the end.
fn utf8_cut(line: &[u8]) -> usize {
    match std::str::from_utf8(line) {
        // `error_len() == None`: the text is valid but ends in the middle of a character.
        Err(error) if error.error_len().is_none() && error.valid_up_to() > 0 => error.valid_up_to(),
        _ => line.len(),
    }
}

/// `2024-05-01T12:34:56.789Z`.
pub(crate) fn rfc3339_millis(at: SystemTime) -> String {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day), for dates
/// after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Removes the timestamp that [`LogSink`] puts in front of a line.
    fn strip_timestamp(line: &str) -> &str {
        match line.split_once(' ') {
            Some((stamp, rest)) if stamp.len() == 24 && stamp.ends_with('Z') => rest,
            _ => line,
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        let check = |secs: u64, millis: u64, expected: &str| {
            let at = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis);
            assert_eq!(rfc3339_millis(at), expected);
        };
        check(0, 0, "1970-01-01T00:00:00.000Z");
        check(951_782_400, 7, "2000-02-29T00:00:00.007Z");
        check(1_714_566_896, 789, "2024-05-01T12:34:56.789Z");
        check(4_102_444_799, 999, "2099-12-31T23:59:59.999Z");
        assert_eq!(
            strip_timestamp("2024-05-01T12:34:56.789Z hello world"),
            "hello world"
        );
    }

    #[tokio::test]
    async fn long_lines_are_split_and_bad_utf8_is_written_lossily() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = LogFiles::new(dir.path().to_owned(), 1 << 30);
        let sink = files.sink("app", 1).expect("sink");
        let tail = Arc::new(Tail::default());

        let mut input = Vec::new();
        input.extend_from_slice(b"first\r\n");
        // 'é' is two bytes; put one across the split point.
        input.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES - 1));
        input.extend_from_slice("é".as_bytes());
        input.extend_from_slice(b"tail\nbad \xff byte\n");
        // A line of exactly the maximum length makes no empty line after it.
        input.extend(std::iter::repeat_n(b'b', MAX_LINE_BYTES));
        input.extend_from_slice(b"\nno newline at end");
        pump(&input[..], sink, tail.clone()).await;

        let text = fs::read_to_string(files.path("app", 1)).expect("log");
        let lines: Vec<&str> = text.lines().map(strip_timestamp).collect();
        assert_eq!(lines.len(), 6, "{lines:?}");
        assert_eq!(lines[0], "first");
        assert_eq!(lines[1], "a".repeat(MAX_LINE_BYTES - 1));
        assert_eq!(lines[2], "étail");
        assert_eq!(lines[3], "bad \u{fffd} byte");
        assert_eq!(lines[4], "b".repeat(MAX_LINE_BYTES));
        assert_eq!(lines[5], "no newline at end");
        assert!(
            text.lines()
                .all(|line| line.len() > 25 && line.as_bytes()[24] == b' ')
        );
        assert_eq!(tail.lines().len(), 6);
    }

    #[test]
    fn the_log_is_rotated_past_its_cap_keeping_one_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = LogFiles::new(dir.path().to_owned(), 1000);
        let sink = files.sink("app", 2).expect("sink");
        // Another instance of app@2 (another release) shares the same sink.
        assert!(Arc::ptr_eq(&sink, &files.sink("app", 2).expect("sink")));
        for n in 0..100 {
            sink.write_line(&format!("line {n:03} {}", "x".repeat(40)));
        }
        let path = files.path("app", 2);
        let current = fs::metadata(&path).expect("log").len();
        let old = fs::read_to_string(path.with_extension("log.1")).expect("old log");
        assert!(current <= 1000 + 80, "{current}");
        assert!(old.len() > 1000 && old.len() <= 1000 + 80, "{}", old.len());
        assert!(!path.with_extension("log.2").exists());
        assert!(fs::read_to_string(&path).expect("log").contains("line 099"));
    }
}
