//! The `git fetch` of `deploy --from`, run for real against servers on
//! 127.0.0.1: a checked URL's fetch connects to the pinned address and no
//! other, and follows no redirect.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use nap_core::remote::{GitUrl, parse_git_url};

use super::{FetchError, FetchSource, fetch_with};
use crate::remote_check::{Checked, Pin};

/// What a test server does with each request.
#[derive(Clone)]
enum Serve {
    /// Files of this directory (git's dumb HTTP protocol).
    Files(PathBuf),
    /// A `301` to this URL prefix, followed by the request's path.
    Redirect(String),
    /// Nothing: counts the connection, reads a little, hangs up.
    Count,
}

/// One listener on 127.0.0.1 in a thread, stopped and joined on drop.
struct Server {
    port: u16,
    connections: Arc<AtomicUsize>,
    first_bytes: Arc<std::sync::Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(serve: Serve) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let first_bytes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connections, first_bytes, stop) =
                (connections.clone(), first_bytes.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    answer(stream, &serve, &first_bytes);
                }
            })
        };
        Server {
            port,
            connections,
            first_bytes,
            stop,
            thread: Some(thread),
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(stream: TcpStream, serve: &Serve, first_bytes: &std::sync::Mutex<Vec<u8>>) {
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    if let Serve::Count = serve {
        // git writes a pkt-line's length and its payload apart: read until
        // the greeting is whole (32 bytes cover both kinds), EOF or timeout.
        let mut buffer = [0u8; 256];
        let mut stream = stream;
        while let Ok(n) = stream.read(&mut buffer) {
            let mut seen = first_bytes.lock().unwrap();
            seen.extend_from_slice(&buffer[..n]);
            if n == 0 || seen.len() >= 32 {
                break;
            }
        }
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let target = request.split(' ').nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    let mut stream = reader.into_inner();
    let reply = match serve {
        Serve::Files(root) => match std::fs::read(root.join(path.trim_start_matches('/'))) {
            Ok(body) if !path.contains("..") => {
                let mut reply =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                        .into_bytes();
                reply.extend_from_slice(&body);
                reply
            }
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        },
        Serve::Redirect(prefix) => format!(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: {prefix}{target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
        Serve::Count => unreachable!("answered above"),
    };
    let _ = stream.write_all(&reply);
}

fn git(dir: &Path, args: &[&str]) {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {output:?}");
}

/// A served bare repository `repo.git` with one commit, and an empty one to
/// fetch into.
fn repositories(dir: &Path) -> (PathBuf, PathBuf) {
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "master"]);
    std::fs::write(work.join("profile"), "web: true\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    git(dir, &["clone", "-q", "--bare", "work", "served/repo.git"]);
    git(&served.join("repo.git"), &["update-server-info"]);
    let into = dir.join("into.git");
    git(dir, &["init", "-q", "--bare", "into.git"]);
    (served, into)
}

fn remote(url: &str, pinned: Option<&str>) -> Checked {
    let Ok(GitUrl::Remote(parsed)) = parse_git_url(url) else {
        panic!("{url} is a remote URL");
    };
    Checked::Remote {
        url: parsed,
        pin: pinned.map(|address| Pin {
            addresses: vec![address.parse::<IpAddr>().unwrap()],
        }),
    }
}

async fn fetch(into: &Path, home: &Path, url: &str, checked: &Checked) -> Result<(), FetchError> {
    fetch_with(
        Path::new("git"),
        home,
        into,
        &FetchSource {
            url,
            shown: url,
            checked,
            reference: "HEAD",
        },
    )
    .await
}

#[tokio::test]
async fn a_checked_name_is_fetched_from_the_pinned_address_only() {
    let dir = tempfile::tempdir().unwrap();
    let (served, into) = repositories(dir.path());
    let server = Server::start(Serve::Files(served));
    // `.invalid` never resolves (RFC 6761): only the pin can make it work.
    let url = format!("http://pinned.invalid:{}/repo.git", server.port);
    fetch(&into, dir.path(), &url, &remote(&url, Some("127.0.0.1")))
        .await
        .unwrap();
    git(&into, &["rev-parse", "--verify", "refs/heads/master"]);
    assert!(server.connections() > 0);
}

#[tokio::test]
async fn a_checked_fetch_follows_no_redirect_but_an_admins_does() {
    let dir = tempfile::tempdir().unwrap();
    let (served, into) = repositories(dir.path());
    let target = Server::start(Serve::Files(served));
    let redirecting = Server::start(Serve::Redirect(format!("http://127.0.0.1:{}", target.port)));
    let url = format!("http://redirect.invalid:{}/repo.git", redirecting.port);
    let refused = fetch(&into, dir.path(), &url, &remote(&url, Some("127.0.0.1")))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, FetchError::Redirected { status, .. } if status == "301"),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("redirects are not followed"),
        "{refused}"
    );
    assert_eq!(target.connections(), 0, "the redirect was followed");

    // An admin's fetch, unchecked, keeps git's default: it follows.
    let url = format!("http://127.0.0.1:{}/repo.git", redirecting.port);
    fetch(&into, dir.path(), &url, &remote(&url, None))
        .await
        .unwrap();
    assert!(target.connections() > 0);
}

#[tokio::test]
async fn git_and_ssh_connect_to_the_pinned_address() {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("into.git");
    git(dir.path(), &["init", "-q", "--bare", "into.git"]);
    for (url, greeting) in [
        (
            "git://pinned.invalid:{port}/repo.git",
            "git-upload-pack /repo.git",
        ),
        ("ssh://git@pinned.invalid:{port}/repo.git", "SSH-2.0-"),
    ] {
        let server = Server::start(Serve::Count);
        let url = url.replace("{port}", &server.port.to_string());
        // Nobody answers like a git server: the fetch fails, having
        // connected to the pinned address.
        assert!(
            fetch(&into, dir.path(), &url, &remote(&url, Some("127.0.0.1")))
                .await
                .is_err()
        );
        assert!(
            server.connections() > 0,
            "{url}: nothing connected to the pin"
        );
        let first = String::from_utf8_lossy(&server.first_bytes.lock().unwrap()).into_owned();
        assert!(first.contains(greeting), "{url}: {first:?}");
    }
}
