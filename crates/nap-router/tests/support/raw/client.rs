//! The client side: a connection to the router that sends bytes a test
//! chose and reads responses by their framing.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{Buffered, Framing, Head, Short};
use crate::support::Router;

/// A response as the client received it.
#[derive(Debug)]
pub struct Response {
    pub head: Head,
    /// The status code.
    pub status: u16,
    /// The body, unchunked.
    pub body: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
    /// Whether the body ran until the router closed the connection.
    pub until_close: bool,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the client read where it expected a response.
#[derive(Debug)]
pub enum Reply {
    /// A whole response.
    Whole(Response),
    /// The router closed the connection (or reset it) before any byte of one.
    Closed,
    /// The router closed the connection in the middle of a response: its
    /// head, if that much arrived.
    Cut(Option<Head>),
}

/// A client connection to the router that speaks raw bytes.
pub struct Wire {
    conn: Buffered,
}

impl Wire {
    pub async fn connect(router: &Router) -> Wire {
        let stream = TcpStream::connect(router.addr)
            .await
            .expect("connect to the router");
        Wire {
            conn: Buffered::new(stream, None),
        }
    }

    /// A connection, and a second handle on the same socket to write with: for a
    /// test that keeps sending while it reads (a duplicated descriptor, so that each
    /// handle is registered with the runtime on its own).
    pub async fn connect_with_writer(router: &Router) -> (Wire, TcpStream) {
        let stream = TcpStream::connect(router.addr)
            .await
            .expect("connect to the router")
            .into_std()
            .expect("the socket");
        let writer = stream.try_clone().expect("duplicate the socket");
        let wire = Wire {
            conn: Buffered::new(TcpStream::from_std(stream).expect("register"), None),
        };
        (wire, TcpStream::from_std(writer).expect("register"))
    }

    /// Writes `bytes`; a router that closes the connection before it has
    /// read them all (as it may after a bad request) cuts the write short.
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.conn.stream.write_all(bytes).await;
    }

    /// Closes the sending side, as `printf ... | nc` does once its input ends.
    #[allow(dead_code, reason = "for wire_pending, which is not part of the suite")]
    pub async fn half_close(&mut self) {
        self.conn
            .stream
            .shutdown()
            .await
            .expect("shut the sending side");
    }

    /// Reads the next response (a 1xx is one too); `to_head` says it
    /// answers a HEAD, whose response has no body.
    pub async fn reply(&mut self, to_head: bool) -> Reply {
        let head = match self.conn.head().await {
            Ok(Some(head)) => head,
            Ok(None) => return Reply::Closed,
            Err(Short::Closed) => return Reply::Cut(None),
            Err(Short::Malformed(error)) => panic!("the router sent a malformed head: {error}"),
        };
        let status = status_of(&head.line)
            .unwrap_or_else(|| panic!("the router sent the status line {:?}", head.line));
        let framing = head
            .framing()
            .unwrap_or_else(|error| panic!("the router sent {error} in {head:?}"));
        if head.line.starts_with("HTTP/1.0 ") {
            assert!(
                matches!(framing, Framing::Length(_) | Framing::UntilClose),
                "an HTTP/1.0 response the client cannot read: {head:?}"
            );
        }
        let bodiless = to_head || (100..200).contains(&status) || status == 204 || status == 304;
        let mut response = Response {
            head,
            status,
            body: Vec::new(),
            chunked: false,
            until_close: false,
        };
        let body = match framing {
            _ if bodiless => Ok(Vec::new()),
            Framing::Length(length) => self.conn.take(length).await,
            Framing::Chunked => {
                response.chunked = true;
                self.conn.chunked().await
            }
            Framing::UntilClose => {
                response.until_close = true;
                Ok(self.conn.rest().await)
            }
        };
        match body {
            Ok(body) => {
                response.body = body;
                Reply::Whole(response)
            }
            Err(Short::Closed) => Reply::Cut(Some(response.head)),
            Err(Short::Malformed(error)) => panic!("the router sent a malformed body: {error}"),
        }
    }

    /// The next final response (1xx ones before it are skipped, but a 101
    /// is final); panics if the connection ends first.
    pub async fn response(&mut self, to_head: bool) -> Response {
        loop {
            match self.reply(to_head).await {
                Reply::Whole(response)
                    if (100..200).contains(&response.status) && response.status != 101 => {}
                Reply::Whole(response) => return response,
                other => panic!("no response but {other:?}"),
            }
        }
    }

    /// Waits until the response data contains `needle`, without taking
    /// anything of it.
    pub async fn wait_for(&mut self, needle: &[u8]) {
        if self.conn.find(needle, 0).await.is_err() {
            panic!(
                "the connection ended before {:?} came",
                String::from_utf8_lossy(needle)
            );
        }
    }

    /// Everything that comes until the router closes the connection.
    pub async fn rest(&mut self) -> Vec<u8> {
        self.conn.rest().await
    }

    /// Asserts that the router closes the connection with nothing more.
    pub async fn closed(&mut self) {
        let rest = self.conn.rest().await;
        assert!(
            rest.is_empty(),
            "more came before the close: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// The code of a status line `HTTP/1.x NNN reason`.
fn status_of(line: &str) -> Option<u16> {
    let rest = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    let reason_ok = rest.len() == 3 || rest.as_bytes()[3] == b' ';
    (code.bytes().all(|b| b.is_ascii_digit()) && reason_ok)
        .then(|| code.parse().ok())
        .flatten()
}
