//! A small WebDriver client: chromedriver's HTTP API, spoken by hand, to
//! drive headless Chromium in tests. Shared by nap-web's tests and the
//! workspace's end-to-end tests (`tests/web.rs` includes this file).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// The first of `names` found on PATH.
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A chromedriver process with one browser session; both end on drop.
pub struct Driver {
    process: Child,
    addr: SocketAddr,
    session: String,
    profile: PathBuf,
}

impl Driver {
    pub fn start(chromedriver: &Path, chromium: &Path) -> Driver {
        // A free port: chromedriver takes a number, not a listener.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut process = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        // Ready when it says so.
        let stdout = process.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("started successfully") => break,
                Some(Ok(_)) => continue,
                _ => {
                    let _ = process.kill();
                    let _ = process.wait();
                    panic!("chromedriver exited before it was ready");
                }
            }
        }
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let profile =
            std::env::temp_dir().join(format!("nap-web-chromium-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&profile).expect("profile directory");
        let mut driver = Driver {
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            session: String::new(),
            profile,
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1200,1000",
                    format!("--user-data-dir={}", driver.profile.display()),
                ],
            },
        }}});
        let created = http_json(driver.addr, "POST", "/session", Some(&capabilities));
        driver.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        // Finding an element waits for it up to 30 s: pages load and actions
        // finish in their own time, and the test waits for what it looks for.
        driver.call(
            "POST",
            "/timeouts",
            Some(json!({"implicit": 30_000, "pageLoad": 60_000})),
        );
        driver
    }

    /// A command of this session; its `value`.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = body.or_else(|| (method == "POST").then(|| json!({})));
        http_json(self.addr, method, &path, body.as_ref())
    }

    pub fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn find(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        element_id(&found)
    }

    pub fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .expect("a list of elements")
            .iter()
            .map(element_id)
            .collect()
    }

    pub fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), None);
    }

    pub fn send_keys(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .expect("text")
            .to_owned()
    }

    pub fn screenshot(&self, path: &Path) -> PathBuf {
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64_decode(png.as_str().expect("base64 PNG"));
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, bytes).expect("write screenshot");
        path.to_owned()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Quitting the session ends Chromium; then chromedriver itself.
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = http(self.addr, "DELETE", &path, None);
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
        // If the session never started (or would not quit), the browser
        // processes are still there: ours are the ones with our profile.
        let leftovers = processes_using(&self.profile);
        if !leftovers.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(leftovers.iter().map(u32::to_string))
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The processes whose command line names `profile` as their user data dir.
fn processes_using(profile: &Path) -> Vec<u32> {
    let needle = format!("--user-data-dir={}", profile.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle))
        })
        .collect()
}

pub fn element_id(found: &Value) -> String {
    // The W3C element reference: an object with one key.
    found
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .expect("an element")
        .to_owned()
}

/// A WebDriver request; panics with the driver's error unless it is 200.
fn http_json(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    let (status, text) =
        http(addr, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let reply: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
    assert_eq!(status, 200, "{method} {path}: {reply}");
    reply["value"].clone()
}

/// One blocking HTTP/1.1 request: status and body. chromedriver keeps
/// connections open whatever the request says, so the body is read by its
/// `Content-Length` (or its chunks), never to the end of the stream.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut stream = TcpStream::connect(addr)?;
    // A bound on a hung driver, not a wait for anything.
    stream.set_read_timeout(Some(Duration::from_secs(180)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("status line"))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').ok_or_else(|| invalid("header"))?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.contains("chunked"),
            _ => {}
        }
    }
    let mut payload = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(|_| invalid("chunk size"))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            payload.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = length {
        payload.resize(length, 0);
        reader.read_exact(&mut payload)?;
    } else {
        reader.read_to_end(&mut payload)?;
    }
    Ok((status, String::from_utf8_lossy(&payload).to_string()))
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut bytes = Vec::with_capacity(clean.len() * 3 / 4);
    for group in clean.chunks(4) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | value(*c) << (18 - 6 * i));
        let full = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        bytes.extend_from_slice(&full[..group.len() - 1]);
    }
    bytes
}
