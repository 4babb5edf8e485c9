//! The instance side: a server that records each request reaching it, whole,
//! and answers with bytes a test chose.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::{Buffered, Framing, HANG, Head, Short};

/// A request as it reached the instance, body and all.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub version: String,
    pub head: Head,
    /// The body, unchunked.
    pub body: Vec<u8>,
}

impl Seen {
    /// `METHOD target`, as tests compare it.
    pub fn summary(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

/// What the instance does with a request: steps to take, then whether it
/// closes the connection or reads the next request.
pub struct Answer {
    steps: Vec<Step>,
    close: bool,
}

enum Step {
    Write(Vec<u8>),
    /// Wait until the test says go.
    Wait(Arc<Notify>),
    /// Tell the test that the steps before are done.
    Signal(Arc<Notify>),
    /// Read this many bytes (the start of a tunnel, say) and send them back.
    Echo(usize),
}

impl Answer {
    /// Writes `bytes`, then reads the next request.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Answer {
        Answer {
            steps: vec![Step::Write(bytes.into())],
            close: false,
        }
    }

    /// Then writes `bytes` too.
    pub fn then_write(mut self, bytes: impl Into<Vec<u8>>) -> Answer {
        self.steps.push(Step::Write(bytes.into()));
        self
    }

    /// Then waits for `go`.
    pub fn then_wait(mut self, go: &Arc<Notify>) -> Answer {
        self.steps.push(Step::Wait(go.clone()));
        self
    }

    /// Then tells `done`.
    pub fn then_signal(mut self, done: &Arc<Notify>) -> Answer {
        self.steps.push(Step::Signal(done.clone()));
        self
    }

    /// Then reads `count` bytes and writes them back (on a connection that
    /// has switched protocols, bytes that are no HTTP).
    pub fn then_echo(mut self, count: usize) -> Answer {
        self.steps.push(Step::Echo(count));
        self
    }

    /// Then closes the connection.
    pub fn then_close(mut self) -> Answer {
        self.close = true;
        self
    }
}

/// A 200 with `body`, framed by its length.
pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The usual answer: 200 with the request's target as its body (and, to a
/// HEAD, the same head without the body).
pub fn echo_target(seen: &Seen) -> Answer {
    let mut bytes = ok(&seen.target);
    if seen.method == "HEAD" {
        bytes.truncate(bytes.len() - seen.target.len());
    }
    Answer::bytes(bytes)
}

type Answerer = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// What reached an instance.
#[derive(Default)]
struct Log {
    connections: usize,
    requests: Vec<Seen>,
    /// Bytes that made whole requests.
    consumed: usize,
    /// Heads or bodies the router sent that are no valid HTTP/1.1.
    malformed: Vec<String>,
}

/// A hand-written HTTP/1.1 instance on 127.0.0.1: it reads each request
/// whole (`Content-Length` or chunked body), records it and answers as its
/// [`Answer`] function says, with any bytes at all.
pub struct Instance {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    /// Bytes that came in, on all connections, counted as they come.
    received: Arc<AtomicUsize>,
    open: watch::Sender<usize>,
    task: JoinHandle<()>,
}

impl Instance {
    pub async fn start(answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Instance {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the instance");
        let addr = listener.local_addr().expect("instance address");
        let log = Arc::new(Mutex::new(Log::default()));
        let received = Arc::new(AtomicUsize::new(0));
        let open = watch::Sender::new(0usize);
        let answer: Answerer = Arc::new(answer);
        let task = {
            let (log, received, open) = (log.clone(), received.clone(), open.clone());
            tokio::spawn(async move {
                let mut connections = JoinSet::new();
                loop {
                    let (stream, _) = listener.accept().await.expect("instance accept");
                    lock(&log).connections += 1;
                    open.send_modify(|open| *open += 1);
                    let (log, open, answer) = (log.clone(), open.clone(), answer.clone());
                    let conn = Buffered::new(stream, Some(received.clone()));
                    connections.spawn(async move {
                        serve(conn, &log, &answer).await;
                        open.send_modify(|open| *open -= 1);
                    });
                }
            })
        };
        Instance {
            addr,
            log,
            received,
            open,
            task,
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        let log = lock(&self.log);
        assert!(
            log.malformed.is_empty(),
            "the router sent the instance {:?}",
            log.malformed
        );
        log
    }

    /// The whole requests that reached the instance, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.log().requests.clone()
    }

    /// `METHOD target` of each whole request that reached the instance.
    pub fn summaries(&self) -> Vec<String> {
        self.log().requests.iter().map(Seen::summary).collect()
    }

    /// How many connections the instance has accepted.
    pub fn connections(&self) -> usize {
        self.log().connections
    }

    /// How many bytes reached the instance, and how many of them made no whole request.
    pub fn bytes(&self) -> (usize, usize) {
        let consumed = self.log().consumed;
        let received = self.received.load(Ordering::SeqCst);
        (received, received - consumed)
    }

    /// Waits until every connection to the instance has closed: after the
    /// router has stopped, everything it sent has then been read.
    pub async fn settled(&self) {
        let mut open = self.open.subscribe();
        let closed = tokio::time::timeout(HANG, open.wait_for(|open| *open == 0)).await;
        assert!(closed.is_ok(), "connections to the instance stayed open");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads requests on one instance connection and answers them.
async fn serve(mut conn: Buffered, log: &Mutex<Log>, answer: &Answerer) {
    loop {
        let before = conn.taken;
        let seen = match read_request(&mut conn).await {
            Ok(Some(seen)) => seen,
            Ok(None) | Err(Short::Closed) => return,
            Err(Short::Malformed(error)) => {
                lock(log).malformed.push(error);
                return;
            }
        };
        let steps = answer(&seen);
        {
            let mut log = lock(log);
            log.consumed += conn.taken - before;
            log.requests.push(seen);
        }
        for step in steps.steps {
            match step {
                Step::Write(bytes) => {
                    if conn.stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Step::Wait(go) => go.notified().await,
                Step::Signal(done) => done.notify_one(),
                Step::Echo(count) => {
                    let Ok(bytes) = conn.take(count).await else {
                        return;
                    };
                    if conn.stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
            }
        }
        if steps.close {
            return;
        }
    }
}

fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The next request on an instance connection; `None` if it closed first.
async fn read_request(conn: &mut Buffered) -> Result<Option<Seen>, Short> {
    let Some(head) = conn.head().await? else {
        return Ok(None);
    };
    let parts: Vec<&str> = head.line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(Short::Malformed(format!(
            "the request line {:?}",
            head.line
        )));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(Short::Malformed(format!(
            "the request line {:?}",
            head.line
        )));
    }
    // An instance that is asked to say it wants the body says so, as
    // servers do (RFC 9110 §10.1.1).
    if head
        .get("expect")
        .is_some_and(|expect| expect.eq_ignore_ascii_case("100-continue"))
    {
        let _ = conn
            .stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await;
    }
    let body = match head.framing().map_err(Short::Malformed)? {
        Framing::Length(length) => conn.take(length).await?,
        Framing::Chunked => conn.chunked().await?,
        Framing::UntilClose => Vec::new(),
    };
    Ok(Some(Seen {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        head,
        body,
    }))
}
