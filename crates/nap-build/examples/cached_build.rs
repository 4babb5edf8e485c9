//! Measures what a fully cached build adds to a push: `nap-build` on a fresh release tree
//! whose dependencies are unchanged, for a Python and a Node app, next to a sandboxed `true`
//! (the sandbox's own start-up), and for a Python app with a larger dependency tree.
//!
//! `cargo run -p nap-build --example cached_build` (as root, as nap runs in production, or as
//! an ordinary user). Offline: pip installs a wheel made here, npm a `file:` dependency.
//!
//! Measured 2026-12-02 on 2 shared vCPUs at load average 7 to 9 (ext4, as root): a sandboxed
//! `true` 37 ms (median); cached Python build, one small module, 76 ms; cached Node build,
//! one `file:` dependency, 103 ms; cached Python build with 2000 modules (16 MB) 0.96 s at
//! best and 20 s median, the copy of the dependencies competing for the disk with the other
//! builds on the machine (`cp -a` of the same tree on the host: 0.65 to 1.8 s, `cp -al` 0.16
//! to 0.22 s).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nap_build::{BuildRequest, ReleasePhaseRequest};
use nap_sandbox::{Identity, Protected, Sandbox, SandboxOptions};

const RUNS: usize = 15;

struct Bench {
    data: PathBuf,
    sandbox: Sandbox,
    identity: Identity,
    storage: PathBuf,
    cache: PathBuf,
    next: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let root = tempfile::Builder::new()
        .prefix("nap-build-bench.")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let identity = if nix::unistd::geteuid().is_root() {
        Identity::AppUser {
            uid: 239_999,
            gid: 239_999,
        }
    } else {
        Identity::DaemonUser
    };
    let sandbox = Sandbox::probe(&SandboxOptions {
        bwrap: None,
        ro_paths: Vec::new(),
        protected: Protected {
            data_dir: data.clone(),
            home: None,
            control_socket: data.join("nap.sock"),
        },
        state_dir: data.join("sandbox"),
    })
    .await
    .expect("a sandbox");
    let mut bench = Bench {
        storage: data.join("storage"),
        cache: data.join("cache"),
        data,
        sandbox,
        identity,
        next: 0,
    };
    println!(
        "sandboxed `true` (the sandbox's own start-up): {}",
        bench.sandboxed_true().await
    );
    for (label, modules) in [
        ("python, 1 small module", 1),
        ("python, 2000 modules (16 MB)", 2000),
    ] {
        bench.fresh_cache();
        let figure = bench
            .cached("python", &|release| python_tree(release, modules))
            .await;
        println!("cached build, {label}: {figure}");
    }
    bench.fresh_cache();
    let figure = bench.cached("node", &node_tree).await;
    println!("cached build, node, 1 file: dependency: {figure}");
}

impl Bench {
    fn fresh_cache(&mut self) {
        let _ = std::fs::remove_dir_all(&self.cache);
        for dir in [&self.cache, &self.storage] {
            nap_sandbox::prepare_writable_dir(dir, self.identity).expect("dir");
        }
    }

    fn release(&mut self, fill: &dyn Fn(&Path)) -> PathBuf {
        self.next += 1;
        let release = self.data.join(format!("releases/v{}", self.next));
        std::fs::create_dir_all(&release).expect("release");
        fill(&release);
        if let Identity::AppUser { uid, gid } = self.identity {
            std::os::unix::fs::chown(&release, Some(uid), Some(gid)).expect("chown");
        }
        release
    }

    fn request(&self, release: &Path) -> BuildRequest {
        let env: BTreeMap<String, String> = [
            ("PIP_NO_INDEX", "1"),
            ("PIP_FIND_LINKS", "/app/vendor"),
            ("npm_config_offline", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        BuildRequest {
            app: "bench".to_owned(),
            release: release.to_owned(),
            storage: self.storage.clone(),
            cache: self.cache.clone(),
            env,
            identity: self.identity,
            build_command: None,
            time_limit: Duration::from_secs(300),
            memory_cgroup: None,
        }
    }

    async fn cached(&mut self, what: &str, fill: &dyn Fn(&Path)) -> String {
        let first = self.release(fill);
        let mut sink = |_: &str| {};
        let built = nap_build::build(&self.sandbox, &self.request(&first), &mut sink)
            .await
            .expect("the first build");
        assert!(!built.reused_cache, "{what}: a fresh cache");
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let release = self.release(fill);
            let built = nap_build::build(&self.sandbox, &self.request(&release), &mut sink)
                .await
                .expect("a cached build");
            assert!(built.reused_cache, "{what}: the cache is used");
            times.push(built.elapsed);
            std::fs::remove_dir_all(&release).expect("rm release");
        }
        figure(times)
    }

    async fn sandboxed_true(&mut self) -> String {
        self.fresh_cache();
        let release = self.release(&|_| {});
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let request = ReleasePhaseRequest {
                app: "bench".to_owned(),
                command: "true".to_owned(),
                release: release.clone(),
                storage: self.storage.clone(),
                env: BTreeMap::new(),
                identity: self.identity,
                time_limit: Duration::from_secs(60),
                memory_cgroup: None,
            };
            let started = Instant::now();
            let mut sink = |_: &str| {};
            nap_build::run_release_phase(&self.sandbox, &request, &mut sink)
                .await
                .expect("true runs");
            times.push(started.elapsed());
        }
        figure(times)
    }
}

fn figure(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.1} ms (min {:.1}, max {:.1}, {} runs)",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    )
}

fn python_tree(release: &Path, modules: usize) {
    std::fs::write(release.join("requirements.txt"), "tinydep\n").expect("requirements");
    let vendor = release.join("vendor");
    std::fs::create_dir_all(&vendor).expect("vendor");
    let script = r##"
import sys, zipfile
dest, modules = sys.argv[1], int(sys.argv[2])
files = {"tinydep/__init__.py": "GREETING = 'hello'\n"}
for i in range(1, modules):
    files[f"tinydep/m{i}.py"] = "# padding\n" * 800
files["tinydep-1.0.dist-info/METADATA"] = "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n"
files["tinydep-1.0.dist-info/WHEEL"] = "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
files["tinydep-1.0.dist-info/RECORD"] = "".join(f"{n},,\n" for n in files) + "tinydep-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(dest + "/tinydep-1.0-py3-none-any.whl", "w") as w:
    for n, t in files.items():
        w.writestr(n, t)
"##;
    let status = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(&vendor)
        .arg(modules.to_string())
        .status()
        .expect("python3");
    assert!(status.success());
}

fn node_tree(release: &Path) {
    let files = [
        (
            "package.json",
            r#"{"name":"bench","version":"1.0.0","private":true,"dependencies":{"tinydep":"file:vendor/tinydep"}}"#,
        ),
        (
            "vendor/tinydep/package.json",
            r#"{"name":"tinydep","version":"1.0.0","main":"index.js"}"#,
        ),
        ("vendor/tinydep/index.js", "exports.greeting = 'hello';\n"),
    ];
    for (path, text) in files {
        let path = release.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
}
