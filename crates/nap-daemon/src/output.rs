//! Writing command output: stdout and stderr of one request.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The two output streams of a command. Write errors are ignored: they mean
/// the client went away, and the command is cancelled by its caller then.
pub struct Out<'a> {
    stdout: Box<dyn AsyncWrite + Send + Unpin + 'a>,
    stderr: Box<dyn AsyncWrite + Send + Unpin + 'a>,
    closed: bool,
}

impl<'a> Out<'a> {
    /// Wraps two streams.
    pub fn new(
        stdout: Box<dyn AsyncWrite + Send + Unpin + 'a>,
        stderr: Box<dyn AsyncWrite + Send + Unpin + 'a>,
    ) -> Out<'a> {
        Out {
            stdout,
            stderr,
            closed: false,
        }
    }

    /// Writes `text` and a newline to stdout.
    pub async fn line(&mut self, text: &str) {
        let written = self.stdout.write_all(format!("{text}\n").as_bytes()).await;
        if written.and(self.stdout.flush().await).is_err() {
            self.closed = true;
        }
    }

    /// Whether a write failed: the reader is gone.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Writes `text` and a newline to stderr.
    pub async fn err(&mut self, text: &str) {
        let _ = self.stderr.write_all(format!("{text}\n").as_bytes()).await;
        let _ = self.stderr.flush().await;
    }

    /// Flushes both streams.
    pub async fn flush(&mut self) {
        let _ = self.stdout.flush().await;
        let _ = self.stderr.flush().await;
    }

    /// The raw streams, for bridging a child process.
    pub fn streams(
        &mut self,
    ) -> (
        &mut (dyn AsyncWrite + Send + Unpin + 'a),
        &mut (dyn AsyncWrite + Send + Unpin + 'a),
    ) {
        (&mut *self.stdout, &mut *self.stderr)
    }
}

/// Turns what a command writes into one of its pipes into messages for a
/// door that speaks in messages (the control socket's frames, the web's
/// chunks). It reads until the command closes the pipe, even when the
/// receiver is gone, so the command is never blocked on a full pipe.
///
/// A message never ends inside a UTF-8 character: the bytes of a character
/// that a read cut in two wait for the next read (a `--json` answer that the
/// web manager parses must not turn into U+FFFD where a read happened to
/// end). Bytes that are not UTF-8 at all are passed on as U+FFFD.
pub(crate) async fn pump<T>(
    mut reader: impl AsyncRead + Unpin,
    to: tokio::sync::mpsc::Sender<T>,
    make: fn(String) -> T,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    // The start of a character whose end has not been read yet (at most 3 bytes).
    let mut carried: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        carried.extend_from_slice(&buffer[..n]);
        let complete = carried.len() - incomplete_tail(&carried);
        if complete > 0 {
            let text = String::from_utf8_lossy(&carried[..complete]).into_owned();
            carried.drain(..complete);
            let _ = to.send(make(text)).await;
        }
    }
    if !carried.is_empty() {
        let _ = to
            .send(make(String::from_utf8_lossy(&carried).into_owned()))
            .await;
    }
}

/// How many bytes at the end of `bytes` are the start of a UTF-8 character
/// whose remaining bytes have not come yet.
fn incomplete_tail(bytes: &[u8]) -> usize {
    // A character is at most 4 bytes: its start is among the last 3.
    for back in 1..=bytes.len().min(3) {
        let start = bytes.len() - back;
        let byte = bytes[start];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: the start is further back
        }
        let needed = match byte {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return 0, // ASCII or a byte that starts nothing
        };
        return if back < needed
            && matches!(std::str::from_utf8(&bytes[start..]), Err(e) if e.error_len().is_none())
        {
            back
        } else {
            0
        };
    }
    0
}

impl Out<'_> {
    /// Writes `value` as pretty JSON to stdout (the `--json` forms).
    pub async fn json(&mut self, value: &impl serde::Serialize) {
        match serde_json::to_string_pretty(value) {
            Ok(text) => self.line(&text).await,
            Err(e) => {
                self.err(&format!(" !     cannot encode the answer: {e}"))
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the pump sends for `writes`, written one after the other into a pipe
    /// that holds one byte, so that every read gets exactly one byte.
    async fn pumped(writes: &[&[u8]]) -> Vec<String> {
        let (mut writer, reader) = tokio::io::duplex(1);
        let (to, mut from) = tokio::sync::mpsc::channel(1024);
        let writes: Vec<Vec<u8>> = writes.iter().map(|w| w.to_vec()).collect();
        let write = async move {
            for bytes in writes {
                writer.write_all(&bytes).await.expect("write");
            }
            drop(writer);
        };
        let ((), ()) = tokio::join!(write, pump(reader, to, |text| text));
        let mut chunks = Vec::new();
        while let Ok(chunk) = from.try_recv() {
            chunks.push(chunk);
        }
        chunks
    }

    #[tokio::test]
    async fn a_character_split_across_two_writes_arrives_whole() {
        let text = "{\"note\": \"caf\u{e9} \u{20ac}5 \u{1f680}\"}\n";
        let bytes = text.as_bytes();
        // é is 2 bytes, € 3, 🚀 4: cut each of them in the middle.
        let e = text.find('\u{e9}').expect("é") + 1;
        let rocket = text.find('\u{1f680}').expect("rocket") + 2;
        let chunks = pumped(&[&bytes[..e], &bytes[e..rocket], &bytes[rocket..]]).await;
        assert!(chunks.len() > 1, "{chunks:?}");
        assert!(
            chunks.iter().all(|chunk| !chunk.contains('\u{fffd}')),
            "{chunks:?}"
        );
        assert_eq!(chunks.concat(), text);
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_become_replacement_characters() {
        let chunks = pumped(&[b"ok \xff", b" and a cut \xe2\x82"]).await;
        assert_eq!(chunks.concat(), "ok \u{fffd} and a cut \u{fffd}");
    }

    #[test]
    fn only_a_started_character_is_held_back() {
        assert_eq!(incomplete_tail(b"abc"), 0);
        assert_eq!(incomplete_tail("é".as_bytes()), 0);
        assert_eq!(incomplete_tail(&"é".as_bytes()[..1]), 1);
        assert_eq!(incomplete_tail(&"€".as_bytes()[..2]), 2);
        assert_eq!(incomplete_tail(&"🚀".as_bytes()[..3]), 3);
        assert_eq!(incomplete_tail(b"a\xff"), 0);
        assert_eq!(incomplete_tail(b"a\x80"), 0);
    }
}
