//! HTTP/1.1 as bytes on the wire, for tests that choose every byte: a client
//! ([`Wire`]) that sends what a test writes and reads responses by RFC 9112's
//! framing rules, and an instance ([`Instance`]) that records every request
//! reaching it and answers with bytes a test chooses, hostile ones included.
//!
//! Both read what the router sends strictly (CRLF line ends, field names
//! that are tokens right before their colon, no CR, LF or NUL in a value,
//! never both `Content-Length` and `Transfer-Encoding`): whatever a client
//! or an instance sent the router, what comes out of it must be clean, so a
//! test fails as soon as the router passes a bad byte on. They parse by hand,
//! not with the router's parser, so that a bug there cannot hide itself.

mod client;
mod instance;

pub use client::{Reply, Wire};
pub use instance::{Answer, Instance, Seen, echo_target, ok};

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A safety net only: the tests wait for events (an answer, a close), and
/// without it a router that does neither would hang them.
pub const HANG: Duration = Duration::from_secs(20);

/// A message head as it arrived: its first line and its fields, names lower
/// case and values without the whitespace around them, in order.
#[derive(Debug, Clone)]
pub struct Head {
    pub line: String,
    pub fields: Vec<(String, String)>,
}

impl Head {
    /// Parses `bytes` (the head up to, not including, the blank line's CRLF
    /// CRLF) strictly; what is wrong with it otherwise.
    fn parse(bytes: &[u8]) -> Result<Head, String> {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text.split("\r\n");
        let line = lines.next().unwrap_or_default().to_owned();
        let mut fields = Vec::new();
        for field in std::iter::once(line.as_str()).chain(lines.clone()) {
            if field.contains(['\r', '\n', '\0']) {
                return Err(format!("a bare CR, LF or a NUL in the line {field:?}"));
            }
        }
        for field in lines {
            let Some((name, value)) = field.split_once(':') else {
                return Err(format!("a field line without a colon: {field:?}"));
            };
            let is_token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !is_token {
                return Err(format!("a field name that is no token: {name:?}"));
            }
            fields.push((
                name.to_ascii_lowercase(),
                value.trim_matches([' ', '\t']).to_owned(),
            ));
        }
        Ok(Head { line, fields })
    }

    /// Every value of the fields named `name` (lower case), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The value of the one field named `name`; `None` if there is none,
    /// and a panic if there are several.
    pub fn get(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} {} times in {self:?}", all.len());
        all.first().copied()
    }

    /// How the body of a message with this head is framed, RFC 9112 §6.3
    /// (for a request, `until_close` is a body of none).
    fn framing(&self) -> Result<Framing, String> {
        let codings = self.all("transfer-encoding");
        let lengths = self.all("content-length");
        match (codings.is_empty(), lengths.as_slice()) {
            (false, []) => {
                let list = codings.join(",");
                if list.trim().eq_ignore_ascii_case("chunked") {
                    Ok(Framing::Chunked)
                } else {
                    Err(format!("Transfer-Encoding {list:?} is not just chunked"))
                }
            }
            (false, _) => Err("both Transfer-Encoding and Content-Length".to_owned()),
            (true, []) => Ok(Framing::UntilClose),
            (true, [length])
                if !length.is_empty() && length.bytes().all(|b| b.is_ascii_digit()) =>
            {
                length
                    .parse()
                    .map(Framing::Length)
                    .map_err(|_| format!("Content-Length {length} overflows"))
            }
            (true, lengths) => Err(format!("Content-Length {lengths:?}")),
        }
    }
}

/// How a body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Why a message could not be read whole.
enum Short {
    /// The connection ended first.
    Closed,
    /// What arrived is no HTTP/1.1 a router may send.
    Malformed(String),
}

/// Bytes read from a connection, and what is left to parse of them.
struct Buffered {
    stream: TcpStream,
    buffer: Vec<u8>,
    ended: bool,
    /// How many bytes have been taken off the front, over the whole connection.
    taken: usize,
    /// Where an instance counts the bytes that come in, as they come.
    tally: Option<Arc<AtomicUsize>>,
}

impl Buffered {
    fn new(stream: TcpStream, tally: Option<Arc<AtomicUsize>>) -> Buffered {
        Buffered {
            stream,
            buffer: Vec::new(),
            ended: false,
            taken: 0,
            tally,
        }
    }

    /// Reads more; false once the peer has closed (or reset) the connection.
    async fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout(HANG, self.stream.read(&mut chunk)).await {
            Err(_) => panic!("nothing came and the connection stayed open for {HANG:?}"),
            Ok(Ok(0) | Err(_)) => {
                self.ended = true;
                false
            }
            Ok(Ok(read)) => {
                if let Some(tally) = &self.tally {
                    tally.fetch_add(read, Ordering::SeqCst);
                }
                self.buffer.extend_from_slice(&chunk[..read]);
                true
            }
        }
    }

    /// Reads until the buffer holds `needle` (after `from`): its offset.
    async fn find(&mut self, needle: &[u8], from: usize) -> Result<usize, Short> {
        let mut start = from;
        loop {
            if let Some(at) = self.buffer[start..]
                .windows(needle.len())
                .position(|window| window == needle)
            {
                return Ok(start + at);
            }
            start = self.buffer.len().saturating_sub(needle.len()).max(from);
            if !self.fill().await {
                return Err(Short::Closed);
            }
        }
    }

    /// Takes `count` bytes off the front, reading more as needed.
    async fn take(&mut self, count: usize) -> Result<Vec<u8>, Short> {
        while self.buffer.len() < count {
            if !self.fill().await {
                return Err(Short::Closed);
            }
        }
        self.taken += count;
        Ok(self.buffer.drain(..count).collect())
    }

    /// One CRLF-terminated line, without the CRLF.
    async fn line(&mut self) -> Result<String, Short> {
        let end = self.find(b"\r\n", 0).await?;
        let line = self.take(end + 2).await?;
        Ok(String::from_utf8_lossy(&line[..end]).into_owned())
    }

    /// A message head, if a byte of one arrives before the connection ends.
    async fn head(&mut self) -> Result<Option<Head>, Short> {
        let end = match self.find(b"\r\n\r\n", 0).await {
            Ok(end) => end,
            Err(Short::Closed) if self.buffer.is_empty() => return Ok(None),
            Err(short) => return Err(short),
        };
        let head = self.take(end + 4).await?;
        Head::parse(&head[..end])
            .map(Some)
            .map_err(Short::Malformed)
    }

    /// A chunked body, unchunked; its trailer fields are read and dropped.
    async fn chunked(&mut self) -> Result<Vec<u8>, Short> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = line.split(';').next().unwrap_or_default();
            let valid =
                !size.is_empty() && size.len() <= 15 && size.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return Err(Short::Malformed(format!("the chunk size line {line:?}")));
            }
            let size = usize::from_str_radix(size, 16).expect("15 hex digits fit");
            if size == 0 {
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.take(size).await?);
            if self.take(2).await? != b"\r\n" {
                return Err(Short::Malformed("chunk data without its CRLF".to_owned()));
            }
        }
    }

    /// Everything until the connection ends.
    async fn rest(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buffer)
    }
}

/// Runs each case in a task of its own and fails once, listing every case
/// that panicked, so that a table shows all its failures at once.
pub async fn run_cases<Case>(cases: impl IntoIterator<Item = (String, Case)>)
where
    Case: Future<Output = ()> + Send + 'static,
{
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, case) in cases {
        total += 1;
        if let Err(error) = tokio::spawn(case).await {
            failures.push(format!("- {name}: {}", panic_text(error.into_panic())));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast::<&str>()
            .map_or_else(|_| "a panic".to_owned(), |text| (*text).to_owned()),
    }
}
