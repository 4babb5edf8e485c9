//! The repositories the push figures push, made once per run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::bail;

use crate::Options;
use crate::servers::{SERVER_PATH, run_ok};

/// A tiny HTTP listener for the 100-instance RSS figure (python, ~9 MiB each; that is the
/// instances' memory, not the daemon's).
const TINY_SERVER: &str = r#"import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(64)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    c.close()
"#;

/// The profile of the small-fast figure's app: `busybox httpd` is listening within a
/// few milliseconds of its start, so the deploy measures nap rather than the app.
pub const FAST_PROFILE: &str =
    "command: busybox httpd -f -p 127.0.0.1:$PORT\nscale: 3\nmemory: 128M\n";

/// The repositories pushed.
pub struct Repos {
    pub small: PathBuf,
    /// `small` with [`FAST_PROFILE`] and an `index.html` for `GET /`.
    pub fast: PathBuf,
    pub scale1: PathBuf,
    pub tiny: PathBuf,
    pub big: Option<PathBuf>,
    /// `big` pushed into a bare repository with stock git (a received pack, as nap's repos
    /// hold), for the checkout figure.
    pub big_bare: Option<PathBuf>,
}

/// `git -C DIR` with a fixed identity, no system configuration and [`SERVER_PATH`].
pub fn git(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.invalid",
        ])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("PATH", SERVER_PATH);
    command
}

fn mkrepo(options: &Options, dir: &Path, args: [&str; 3]) -> anyhow::Result<()> {
    let started = Instant::now();
    run_ok(
        Command::new("python3")
            .arg(&options.mkrepo)
            .arg(dir)
            .args(args)
            .env("PATH", SERVER_PATH),
    )?;
    eprintln!(
        "nap-bench: made {} ({} files × {} KB, {} commits) in {:.1} s",
        dir.display(),
        args[0],
        args[1],
        args[2],
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

impl Repos {
    pub fn make(options: &Options, dir: &Path) -> anyhow::Result<Repos> {
        if !options.mkrepo.exists() {
            bail!(
                "{} does not exist (pass --mkrepo)",
                options.mkrepo.display()
            );
        }
        let small = dir.join("small");
        mkrepo(options, &small, ["10", "4", "1"])?;

        let scale1 = dir.join("scale1");
        run_ok(git(dir).args(["clone", "-q"]).arg(&small).arg(&scale1))?;
        std::fs::write(
            scale1.join("profile"),
            "command: python3 -m http.server $PORT\nscale: 1\nmemory: 128M\n",
        )?;
        run_ok(git(&scale1).args(["commit", "-qam", "scale 1"]))?;

        let fast = dir.join("fast");
        run_ok(git(dir).args(["clone", "-q"]).arg(&small).arg(&fast))?;
        std::fs::write(fast.join("profile"), FAST_PROFILE)?;
        std::fs::write(
            fast.join("index.html"),
            "<!doctype html><title>fast</title>\n",
        )?;
        run_ok(git(&fast).args(["add", "-A"]))?;
        run_ok(git(&fast).args(["commit", "-qm", "busybox httpd"]))?;

        let tiny = dir.join("tiny");
        std::fs::create_dir_all(&tiny)?;
        run_ok(git(&tiny).args(["init", "-q", "-b", "master"]))?;
        std::fs::write(tiny.join("srv.py"), TINY_SERVER)?;
        std::fs::write(
            tiny.join("profile"),
            "command: python3 srv.py\nscale: 1\nmemory: 64M\n",
        )?;
        run_ok(git(&tiny).args(["add", "-A"]))?;
        run_ok(git(&tiny).args(["commit", "-qm", "tiny"]))?;

        let (big, big_bare) = if options.wants("big") || options.wants("checkout") {
            let big = dir.join("big");
            mkrepo(options, &big, ["5000", "16", "20"])?;
            if options.repack {
                run_ok(git(&big).args(["repack", "-adq"]))?;
            }
            let bare = dir.join("big-received.git");
            run_ok(git(dir).args(["init", "-q", "--bare"]).arg(&bare))?;
            run_ok(git(&big).arg("push").arg("-q").arg(&bare).arg("master"))?;
            let pack_bytes: u64 = std::fs::read_dir(bare.join("objects/pack"))?
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum();
            eprintln!(
                "nap-bench: big repository's pack: {:.1} MB",
                pack_bytes as f64 / 1e6
            );
            (Some(big), Some(bare))
        } else {
            (None, None)
        };
        Ok(Repos {
            small,
            fast,
            scale1,
            tiny,
            big,
            big_bare,
        })
    }
}
