//! `nap serve` refusing to start: what it says, and that it changes nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Nap, nap_bin};

/// A `nap serve` that is killed when the test ends, whatever happened.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `nap serve` on `data` (every port chosen by the kernel) and returns its exit status
/// and stderr, or fails if it is still running after a generous while (it should not start).
pub(crate) fn serve_expecting_refusal(data: &Path) -> (bool, String) {
    serve_expecting_refusal_with(data, &[])
}

/// Like [`serve_expecting_refusal`], with extra `nap serve` arguments.
pub(crate) fn serve_expecting_refusal_with(data: &Path, extra: &[&str]) -> (bool, String) {
    let log = data.with_extension("log");
    let child = Command::new(nap_bin())
        .args(["serve", "--data"])
        .arg(data)
        .args(["--ssh", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--router", "127.0.0.1:0", "--https", "127.0.0.1:0"])
        .args(["--ports", "29900-29909"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start nap serve");
    let mut serve = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = serve.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "nap serve started instead of refusing: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.success(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[test]
fn an_unreadable_secret_stops_the_daemon_and_is_left_as_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // A directory where the secret should be: unreadable as a file, even for root.
    let secret = data.join("secret");
    std::fs::create_dir_all(&secret).expect("mkdir");
    std::fs::write(secret.join("kept"), "mine").expect("write");
    let (started, stderr) = serve_expecting_refusal(&data);
    assert!(!started, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot read the daemon's secret {}",
            secret.display()
        )) && stderr.contains("move it away to make a new one"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(secret.join("kept")).expect("still there"),
        "mine"
    );
}

#[test]
fn a_secret_nap_did_not_write_stops_the_daemon_and_is_left_as_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let secret = data.join("secret");
    std::fs::write(&secret, "too short\n").expect("write");
    let (started, stderr) = serve_expecting_refusal(&data);
    assert!(!started, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the daemon's secret {} is not what nap writes there",
            secret.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&secret).expect("still there"),
        "too short\n"
    );
}

#[test]
fn the_secret_is_made_once_and_kept_across_restarts() {
    let mut nap = Nap::start();
    let secret = nap.data.join("secret");
    let first = std::fs::read_to_string(&secret).expect("made on first start");
    assert_eq!(first.len(), 64, "{first:?}");
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
    nap.restart();
    assert_eq!(std::fs::read_to_string(&secret).expect("kept"), first);
}
