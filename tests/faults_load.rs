//! No failed request while what runs changes: a steady, bounded loop of POSTs through
//! the router on 127.0.0.1 across a push of a new release, a restart, a rollback and a
//! scale down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::harness::{Nap, http, text};

/// The app under load: each answer takes a moment, so that requests are in flight
/// whenever an instance is stopped; SIGTERM ends it at once, cutting off whatever it
/// still answers (as many apps do).
const SLOW_PY: &str = r#"
import http.server, os, time
NAME = f"{os.environ['NAP_APP']}@{os.environ['NAP_INSTANCE']} {os.environ['NAP_RELEASE']}"
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.do_POST()
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(0.05)
        body = f"{NAME} \n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// Clients sending one request after another until told to stop; each answer that is not
/// a 200 from the app is kept.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<(usize, Vec<String>)>>,
}

impl Load {
    fn start(router_port: u16, host: &'static str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut answered, mut failures) = (0, Vec::new());
                    while !stop.load(Ordering::SeqCst) {
                        // A POST: the router may not send it again to another
                        // instance once one had it, so only draining saves it.
                        match http(router_port, "POST", "/", &[("Host", host)], "order") {
                            Some((200, body)) if body.starts_with("web@") => answered += 1,
                            other => failures.push(format!("{other:?}")),
                        }
                    }
                    (answered, failures)
                })
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops the clients; how many requests were answered, and the failures.
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let (mut answered, mut failures) = (0, Vec::new());
        for client in self.clients.drain(..) {
            let (a, f) = client.join().expect("load client");
            answered += a;
            failures.extend(f);
        }
        (answered, failures)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients.drain(..) {
            let _ = client.join();
        }
    }
}

/// Asks the router until an answer starts with `prefix` (the change is visible).
fn until_served(nap: &Nap, prefix: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let answer = http(
            nap.router_port,
            "GET",
            "/",
            &[("Host", "web.localhost")],
            "",
        );
        if answer
            .as_ref()
            .is_some_and(|(_, body)| body.contains(prefix))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the router never served {prefix:?}; last {answer:?}"
        );
    }
}

#[test]
fn no_request_fails_across_push_restart_rollback_and_scale_down() {
    let nap = Nap::start();
    let alice = nap.user("alice", "ed25519", false);
    let repo = alice.repo(
        "web",
        &[
            ("slow.py", SLOW_PY),
            ("profile", "command: python3 slow.py\nscale: 2\n"),
        ],
    );
    alice.deploy(&repo, "web");
    until_served(&nap, " v1 ");

    let load = Load::start(nap.router_port, "web.localhost", 4);
    until_served(&nap, " v1 ");
    alice.commit(&repo, &[("version", "2")], "v2");
    alice.deploy(&repo, "web");
    until_served(&nap, " v2 ");
    for command in [
        &["restart", "web"][..],
        &["rollback", "web"],
        &["scale", "web", "1"],
    ] {
        let output = alice.ssh(command);
        assert!(output.status.success(), "{command:?}: {:?}", text(&output));
    }
    until_served(&nap, " v3 ");
    let (answered, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        answered + failures.len()
    );
    assert!(answered > 0);
    assert_eq!(nap.ps("web").len(), 1);
}
