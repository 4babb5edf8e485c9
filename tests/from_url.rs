//! What `deploy NEW --from URL` may reach: a non-admin only the public
//! internet, whatever the URL's spelling, scheme or redirects; an admin
//! anything git can fetch, this machine included.
//!
//! One daemon and one git server (git's dumb HTTP protocol, served by a
//! thread here on 127.0.0.1 and ::1) for all the cases.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::harness::{Nap, User, http_get, server_profile, text};

/// What every refusal of this kind ends with.
const ONLY_ADMINS: &str = "only admins may deploy from this machine's or private networks";

/// A git repository served over HTTP at `/repo.git` on 127.0.0.1 and ::1,
/// with `/moved/...` redirecting there; stopped on drop.
struct GitHttpServer {
    port: u16,
    root: PathBuf,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Every address listened on, to wake its accept loop on drop.
    listening: Vec<std::net::SocketAddr>,
}

impl GitHttpServer {
    fn start(root: PathBuf) -> GitHttpServer {
        // The same port on both loopbacks, so that every spelling of this
        // machine reaches the same server.
        let (v4, v6) = loop {
            let v4 = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
            let port = v4.local_addr().expect("bound").port();
            if let Ok(v6) = TcpListener::bind(("::1", port)) {
                break (v4, v6);
            }
        };
        let port = v4.local_addr().expect("bound").port();
        let mut server = GitHttpServer {
            port,
            root,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            listening: Vec::new(),
        };
        server.serve(v4);
        server.serve(v6);
        server
    }

    /// Serves the same files and redirects on `ip` too (its own port, returned);
    /// `/moved/...` still redirects to 127.0.0.1.
    fn also_on(&mut self, ip: &str) -> u16 {
        let listener = TcpListener::bind((ip, 0)).expect("bind");
        let port = listener.local_addr().expect("bound").port();
        self.serve(listener);
        port
    }

    fn serve(&mut self, listener: TcpListener) {
        self.listening.push(listener.local_addr().expect("bound"));
        let (root, stop, port) = (self.root.clone(), self.stop.clone(), self.port);
        self.threads.push(std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    answer(stream, &root, port);
                }
            }
        }));
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes each accept loop so that it sees the flag.
        for address in &self.listening {
            let _ = TcpStream::connect(address);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn answer(stream: TcpStream, root: &Path, port: u16) {
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
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
    let target = request.split(' ').nth(1).unwrap_or("/").to_owned();
    let path = target.split('?').next().unwrap_or("/");
    let reply = if let Some(rest) = target.strip_prefix("/moved/") {
        format!(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: http://127.0.0.1:{port}/{rest}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    } else {
        match std::fs::read(root.join(path.trim_start_matches('/'))) {
            Ok(body) if !path.contains("..") => {
                let mut reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                reply.extend_from_slice(&body);
                reply
            }
            _ => {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            }
        }
    };
    let _ = reader.into_inner().write_all(&reply);
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the kernel names this machine")
        .trim()
        .to_owned()
}

/// A bare copy of an app repository, ready for git's dumb HTTP protocol, in
/// `served/repo.git` of the test's directory; returns `served`.
fn served_repository(nap: &Nap, admin: &User) -> PathBuf {
    let source = admin.app_repo("upstream", &server_profile(""));
    let served = nap.dir.path().join("served");
    std::fs::create_dir_all(&served).expect("served dir");
    let bare = served.join("repo.git");
    for args in [
        vec![
            "clone",
            "-q",
            "--bare",
            source.to_str().expect("utf-8"),
            bare.to_str().expect("utf-8"),
        ],
        vec![
            "--git-dir",
            bare.to_str().expect("utf-8"),
            "update-server-info",
        ],
    ] {
        let output = admin.git(&admin.home, &args);
        assert!(output.status.success(), "{:?}", text(&output));
    }
    served
}

#[test]
fn a_non_admin_reaches_no_address_of_this_machine_or_its_networks_and_an_admin_does() {
    let nap = Nap::start();
    let admin = nap.user("root", "ed25519", true);
    let alice = nap.user("alice", "ed25519", false);
    let server = GitHttpServer::start(served_repository(&nap, &admin));
    let port = server.port;
    let host = hostname();
    // Where nothing listens: git's own protocols fail at once there.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();

    // Each URL reaches the repository above; each is this machine.
    let reachable = [
        (
            "upper",
            format!("http://LOCALHOST:{port}/repo.git"),
            "LOCALHOST is this machine (a loopback name)".to_owned(),
        ),
        (
            "zero",
            format!("http://0:{port}/repo.git"),
            "is 0.0.0.0, the unspecified address".to_owned(),
        ),
        (
            "v6",
            format!("http://[::1]:{port}/repo.git"),
            "is ::1, a loopback address".to_owned(),
        ),
        (
            "hex",
            format!("http://0x7f000001:{port}/repo.git"),
            "is 127.0.0.1, a loopback address".to_owned(),
        ),
        (
            "mapped",
            format!("http://[::ffff:127.0.0.1]:{port}/repo.git"),
            "which is 127.0.0.1, a loopback address".to_owned(),
        ),
        // The machine's own name, which the resolver answers from /etc/hosts
        // (or nss-myhostname) with a loopback or private address.
        (
            "named",
            format!("http://{host}:{port}/repo.git"),
            format!("{host} resolves to "),
        ),
        (
            "moved",
            format!("http://127.0.0.1:{port}/moved/repo.git"),
            "is 127.0.0.1, a loopback address".to_owned(),
        ),
    ];
    // Not served here: refused for a non-admin before any connection.
    let unreachable = [
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "is 169.254.169.254, a link-local address",
        ),
        (
            "ssh",
            format!("ssh://git@127.0.0.1:{closed}/repo.git"),
            "is 127.0.0.1, a loopback address",
        ),
        (
            "gitproto",
            format!("git://[::1]:{closed}/repo.git"),
            "is ::1, a loopback address",
        ),
        (
            "scp",
            "git@localhost:repo.git".to_owned(),
            "localhost is this machine",
        ),
        (
            "scpaddr",
            "git@[10.0.0.1]:repo.git".to_owned(),
            "is 10.0.0.1, a private address",
        ),
        (
            "private",
            "https://192.168.1.1/repo.git".to_owned(),
            "is 192.168.1.1, a private address",
        ),
    ];
    let cases = reachable
        .iter()
        .map(|(app, url, why)| (*app, url.as_str(), why.as_str()))
        .chain(
            unreachable
                .iter()
                .map(|(app, url, why)| (*app, url.as_str(), *why)),
        );
    for (app, url, why) in cases {
        let output = alice.ssh(&["deploy", app, "--from", url]);
        let stderr = text(&output).1;
        assert!(!output.status.success(), "{url}: {stderr}");
        assert!(stderr.contains(why), "{url}: {stderr}");
        assert_eq!(stderr.matches(ONLY_ADMINS).count(), 1, "{url}: {stderr}");
        for made in [format!("apps/{app}"), format!("repos/{app}.git")] {
            assert!(!nap.data.join(&made).exists(), "{url}: {made} was created");
        }
    }
    assert!(!text(&alice.ssh(&["apps"])).0.contains("zero"));

    // An admin deploys from each of them, the redirect followed.
    for (app, url, _) in &reachable {
        let output = admin.ssh(&["deploy", app, "--from", url]);
        assert!(output.status.success(), "{url}: {:?}", text(&output));
        let instances = nap.ps(app);
        let page = http_get(instances[0].port, "/").expect("the app answers");
        assert!(page.starts_with(&format!("{app}@1 v1")), "{url}: {page}");
    }
    // The other transports pass the check and fail only at git (nothing
    // there speaks ssh or git's protocol).
    for (app, url, _) in &unreachable[1..3] {
        let output = admin.ssh(&["deploy", app, "--from", url]);
        let stderr = text(&output).1;
        assert!(!output.status.success(), "{url}: {stderr}");
        assert!(!stderr.contains(ONLY_ADMINS), "{url}: {stderr}");
        assert!(stderr.contains("cannot fetch HEAD"), "{url}: {stderr}");
    }
}

/// A URL that passes the address check (an operator's `deploy_from_networks`,
/// here 127.0.0.2) and answers with a redirect to 127.0.0.1: a non-admin's
/// fetch follows no redirect, says so, and leaves no app; an admin's follows.
#[test]
fn a_redirect_from_an_allowed_address_to_loopback_is_not_followed_for_a_non_admin() {
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = config_dir.path().join("nap.yaml");
    std::fs::write(&config, "deploy_from_networks: [127.0.0.2/32]\n").expect("config");
    let nap = Nap::start_with(&["--config", config.to_str().expect("utf-8")]);
    let admin = nap.user("root", "ed25519", true);
    let alice = nap.user("alice", "ed25519", false);
    let mut server = GitHttpServer::start(served_repository(&nap, &admin));
    let allowed = server.also_on("127.0.0.2");

    // The allowed address itself serves: the check lets it through.
    let url = format!("http://127.0.0.2:{allowed}/repo.git");
    let output = alice.ssh(&["deploy", "direct", "--from", &url]);
    assert!(output.status.success(), "{url}: {:?}", text(&output));
    let page = http_get(nap.ps("direct")[0].port, "/").expect("the app answers");
    assert!(page.starts_with("direct@1 v1"), "{page}");

    // Its redirect to 127.0.0.1 is not followed.
    let moved = format!("http://127.0.0.2:{allowed}/moved/repo.git");
    let output = alice.ssh(&["deploy", "moved", "--from", &moved]);
    let stderr = text(&output).1;
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot fetch {moved}: the server redirects (HTTP 301) and redirects are not followed"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("moved was not created"), "{stderr}");
    for made in ["apps/moved", "repos/moved.git", "storage/moved"] {
        assert!(!nap.data.join(made).exists(), "{made} was left behind");
    }
    assert!(!text(&alice.ssh(&["apps"])).0.contains("moved"));
    // Where it leads is still refused when given directly.
    let target = format!("http://127.0.0.1:{}/repo.git", server.port);
    let output = alice.ssh(&["deploy", "target", "--from", &target]);
    let stderr = text(&output).1;
    assert!(
        !output.status.success() && stderr.contains("is 127.0.0.1, a loopback address"),
        "{stderr}"
    );

    // An admin's fetch, unchecked, follows it.
    let output = admin.ssh(&["deploy", "moved", "--from", &moved]);
    assert!(output.status.success(), "{:?}", text(&output));
    let page = http_get(nap.ps("moved")[0].port, "/").expect("the app answers");
    assert!(page.starts_with("moved@1 v1"), "{page}");
}
