//! A router on 127.0.0.1 and the instances behind it: small hyper servers,
//! python processes, and hand-written TCP servers for the odd cases (`raw`:
//! a client and an instance that speak bytes a test chooses).

pub mod raw;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nap_router::{Https, HttpsAcceptor, Listeners, Options, Routes};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// The test's membership: app → instance addresses, changed at will and
/// published to the router as a new snapshot, as the daemon does.
pub struct Apps {
    routes: Mutex<Routes>,
    publish: watch::Sender<Arc<Routes>>,
}

impl Apps {
    fn new() -> (Apps, watch::Receiver<Arc<Routes>>) {
        let (publish, receiver) = watch::channel(Arc::new(Routes::new()));
        let apps = Apps {
            routes: Mutex::new(Routes::new()),
            publish,
        };
        (apps, receiver)
    }

    pub fn set(&self, app: &str, instances: &[SocketAddr]) {
        let mut routes = self.routes.lock().expect("apps lock");
        routes.insert(app, instances.to_vec());
        self.publish.send_replace(Arc::new(routes.clone()));
    }

    /// Routes the custom host `host` to `app`.
    pub fn set_host(&self, host: &str, app: &str, https_redirect: bool) {
        let mut routes = self.routes.lock().expect("apps lock");
        routes.insert_host(host, app, https_redirect);
        self.publish.send_replace(Arc::new(routes.clone()));
    }
}

/// `nap_router::serve` on 127.0.0.1, stopped by [`Router::stop`] (or
/// aborted when dropped).
pub struct Router {
    pub addr: SocketAddr,
    /// The HTTPS listener, if the router has one.
    pub https: Option<SocketAddr>,
    pub apps: Apps,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Router {
    pub async fn start() -> Router {
        Router::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Router {
        Router::start_listening(options, None).await
    }

    /// A router with an HTTPS listener too, on `acceptor`.
    pub async fn start_https(options: Options, acceptor: HttpsAcceptor) -> Router {
        Router::start_listening(options, Some(acceptor)).await
    }

    async fn start_listening(options: Options, acceptor: Option<HttpsAcceptor>) -> Router {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the router");
        let addr = listener.local_addr().expect("router address");
        let https = match acceptor {
            Some(acceptor) => {
                let listener = TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind the router's HTTPS");
                Some(Https { listener, acceptor })
            }
            None => None,
        };
        let https_addr = https
            .as_ref()
            .map(|https| https.listener.local_addr().expect("HTTPS address"));
        let (apps, routes) = Apps::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let listeners = Listeners {
            http: listener,
            https,
        };
        let task = tokio::spawn(nap_router::serve_listeners(
            listeners, options, routes, shutdown,
        ));
        Router {
            addr,
            https: https_addr,
            apps,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks the router to stop; [`Router::stopped`] waits for it.
    pub fn ask_to_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for `serve` to return.
    pub async fn stopped(mut self) -> std::io::Result<()> {
        self.ask_to_stop();
        let task = self.task.take().expect("stopped only once");
        task.await.expect("router task")
    }

    /// A GET of `path` from `app` through this router.
    pub fn request(&self, app: &str, path: &str) -> hyper::http::request::Builder {
        request(self.addr, app, path)
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A GET of `path` from `app` through the router at `router`, with the
/// `Host: <app>.localhost:<port>` a browser would send.
pub fn request(router: SocketAddr, app: &str, path: &str) -> hyper::http::request::Builder {
    Request::get(format!("http://{router}{path}"))
        .header("host", format!("{app}.localhost:{}", router.port()))
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive HTTP client, as a browser would be.
pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `request` and reads the whole response.
pub async fn fetch(client: &TestClient, request: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
    let response = client
        .request(request)
        .await
        .expect("request through the router");
    let status = response.status();
    (
        status,
        response
            .into_body()
            .collect()
            .await
            .expect("response body")
            .to_bytes(),
    )
}

/// GET `path` of `app` through the router; status and body as text.
pub async fn get(
    client: &TestClient,
    router: &Router,
    app: &str,
    path: &str,
) -> (StatusCode, String) {
    let (status, body) = fetch(
        client,
        router
            .request(app, path)
            .body(Full::default())
            .expect("request"),
    )
    .await;
    (
        status,
        String::from_utf8(body.to_vec()).expect("response body is UTF-8"),
    )
}

/// The byte at `offset` of the bodies `/stream` sends.
pub fn pattern_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// `bytes` bytes of [`pattern_byte`], produced 64 KiB at a time as they are
/// read: a response that is never in memory as a whole.
struct Pattern {
    offset: u64,
    end: u64,
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.offset == self.end {
            return Poll::Ready(None);
        }
        let next = self.end.min(self.offset + 64 * 1024);
        let chunk: Vec<u8> = (self.offset..next).map(pattern_byte).collect();
        self.offset = next;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

/// A hyper server standing in for an app instance. It answers:
/// - `/length`: the number of bytes of the request body it read;
/// - `/stream?bytes=N`: N bytes of [`pattern_byte`], streamed;
/// - `/headers`: the request's headers, one `name: value` a line, sorted;
/// - `/hold`: its name, once the test calls [`Backend::release`];
/// - anything else: its name.
pub struct Backend {
    pub addr: SocketAddr,
    /// How many connections it has accepted.
    pub connections: Arc<AtomicUsize>,
    arrived: Arc<Notify>,
    release: Arc<Semaphore>,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a backend");
        let addr = listener.local_addr().expect("backend address");
        let arrived = Arc::new(Notify::new());
        let release = Arc::new(Semaphore::new(0));
        let state = (Arc::<str>::from(name), arrived.clone(), release.clone());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.expect("backend accept");
                counter.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (name, arrived, release) = state.clone();
                        answer(request, name, arrived, release)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend {
            addr,
            connections: accepted,
            arrived,
            release,
            task,
        }
    }

    /// Waits until a `/hold` request has arrived.
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// Lets one `/hold` request be answered.
    pub fn release(&self) {
        self.release.add_permits(1);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    request: Request<Incoming>,
    name: Arc<str>,
    arrived: Arc<Notify>,
    release: Arc<Semaphore>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, hyper::Error> {
    let text = |text: String| Response::new(Full::from(text).boxed());
    match request.uri().path() {
        "/length" => {
            let mut body = request.into_body();
            let mut length = 0;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    length += data.len();
                }
            }
            Ok(text(length.to_string()))
        }
        "/stream" => {
            let query = request.uri().query().unwrap_or_default();
            let bytes = query
                .strip_prefix("bytes=")
                .and_then(|n| n.parse().ok())
                .expect("/stream?bytes=N");
            Ok(Response::new(
                Pattern {
                    offset: 0,
                    end: bytes,
                }
                .boxed(),
            ))
        }
        "/headers" => {
            let mut lines: Vec<String> = request
                .headers()
                .iter()
                .map(|(name, value)| {
                    format!(
                        "{name}: {}\n",
                        value.to_str().expect("header value is text")
                    )
                })
                .collect();
            lines.sort();
            Ok(text(lines.concat()))
        }
        "/hold" => {
            arrived.notify_one();
            release.acquire().await.expect("release semaphore").forget();
            Ok(text(name.to_string()))
        }
        _ => Ok(text(name.to_string())),
    }
}

/// A python `http.server` answering its name: an instance in a process of its
/// own, to be killed for real.
pub struct Python {
    pub addr: SocketAddr,
    child: Child,
}

const PYTHON_SERVER: &str = r#"
import http.server, sys
name = sys.argv[1].encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # One write: a kill can come before or after the response, not
        # inside it (a response cut short is lost with any router).
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(name), name))
        self.close_connection = True
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True
server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

impl Python {
    /// Starts the server and waits for it to print its port.
    pub async fn start(name: &str) -> Python {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(PYTHON_SERVER)
            .arg(name)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn python3");
        let mut port = String::new();
        BufReader::new(child.stdout.take().expect("python stdout"))
            .read_line(&mut port)
            .await
            .expect("python prints its port");
        let addr = SocketAddr::from(([127, 0, 0, 1], port.trim().parse().expect("python port")));
        Python { addr, child }
    }

    /// `kill -9`, and waits until the process is gone.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("kill python");
        self.child.wait().await.expect("wait for python");
    }
}

/// An address nothing listens on: connections to it are refused.
pub fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    listener.local_addr().expect("port address")
}

/// An instance that reads a request's head and hangs up without a word, as
/// one that crashes mid-request would.
pub async fn hang_up_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the hang-up server");
    let addr = listener.local_addr().expect("hang-up server address");
    let task = tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.expect("hang-up accept");
            let _ = read_head(&mut stream).await;
        }
    });
    (addr, task)
}

/// Reads up to and including the blank line that ends a message head; the
/// head as text (empty if the connection closed first).
pub async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Reads one response with a `Content-Length` body: its head and body.
pub async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let head = read_head(stream).await.expect("response head");
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|n| n.trim().parse().expect("content-length"))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("response body");
    (
        head,
        String::from_utf8(body).expect("response body is UTF-8"),
    )
}

/// Sends `request` as raw bytes on a new connection and reads until the
/// router closes it (which may cut the sending short).
pub async fn raw(router: &Router, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(router.addr)
        .await
        .expect("connect to the router");
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}
