//! The figures: each runs nap and its reference alternately, warm-up first where cheap.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::Options;
use crate::cleanup::{BenchDir, ChildGuard, kill_processes_in};
use crate::report::{Measure, Row, Target, Unit, median, render};
use crate::repos::{FAST_PROFILE, Repos, git};
use crate::servers::{Client, NapServer, SERVER_PATH, Sshd, receive_pack_path, run_ok};

/// Instance ports of the main daemon and of the RSS daemons; above the kernel's ephemeral
/// range (32768-60999), so no client socket takes them.
const MAIN_PORTS: &str = "61000-61499";
const RSS_PORTS: &str = "61500-61799";
/// Ports for the python processes started directly (the scale figure's baseline).
const DIRECT_PORTS: u16 = 61800;

/// Concurrent sessions of the sessions figure.
const SESSIONS: usize = 32;

/// `GET /` answered with 200.
fn answers(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let head = String::from_utf8_lossy(&head[..read]);
    head.starts_with("HTTP/1.") && head.contains(" 200")
}

/// Waits until every port answers HTTP 200.
pub(crate) fn wait_answer(ports: &[u16], limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    for &port in ports {
        while !answers(port) {
            if Instant::now() > deadline {
                bail!("port {port} did not answer HTTP within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// The ports of `app`'s instances, which must be `expected` many.
pub(crate) fn ports_of(nap: &NapServer, app: &str, expected: usize) -> anyhow::Result<Vec<u16>> {
    let rows = nap.ps(app)?;
    if rows.len() != expected {
        let states: Vec<String> = rows
            .iter()
            .map(|r| format!("{} {} {}", r.instance, r.release, r.state))
            .collect();
        bail!(
            "{app}: expected {expected} instances, ps shows {}: {states:?}",
            rows.len()
        );
    }
    Ok(rows.iter().map(|r| r.port).collect())
}

/// Pushes `repo` to nap as `app` and waits until its `scale` instances answer HTTP.
/// Returns (total, time until `git push` returned).
pub(crate) fn nap_deploy(
    nap: &NapServer,
    repo: &Path,
    app: &str,
    scale: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    nap.target.push(repo, app, None)?;
    let pushed = started.elapsed();
    let ports = ports_of(nap, app, scale)?;
    wait_answer(&ports, Duration::from_secs(60))?;
    Ok((started.elapsed(), pushed))
}

/// Pushes `repo` over OpenSSH into a new bare repository `bare` (created before the clock
/// starts), then deletes it.
fn reference_push(
    sshd: &Sshd,
    repo: &Path,
    name: &str,
    receive_pack: &str,
    keep: bool,
) -> anyhow::Result<Duration> {
    let bare = sshd.repos.join(name);
    run_ok(git(repo).args(["init", "-q", "--bare"]).arg(&bare))?;
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(&sshd.target.user)
            .arg(&bare),
    )?;
    let path = bare.to_str().context("path is not UTF-8")?;
    let started = Instant::now();
    sshd.target
        .push(repo, path.trim_start_matches('/'), Some(receive_pack))?;
    let elapsed = started.elapsed();
    if !keep {
        std::fs::remove_dir_all(&bare)?;
    }
    Ok(elapsed)
}

/// Flushes dirty pages, then lets the disk settle: on this kind of VM disk, creating
/// files in the first second after a `sync` is several times slower.
fn sync() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(1));
}

pub(crate) fn ms(seconds: f64) -> String {
    Unit::Seconds.show(seconds)
}

/// Everything a figure may use.
struct Bench<'a> {
    options: &'a Options,
    bin: &'a Path,
    client: &'a Client,
    repos: &'a Repos,
    sshd: Option<&'a Sshd>,
    nap: Option<&'a NapServer>,
    receive_pack: String,
}

pub(crate) type Outcome = anyhow::Result<(Measure, Option<Measure>, Vec<String>)>;

impl Bench<'_> {
    fn sshd(&self) -> anyhow::Result<&Sshd> {
        self.sshd.context("sshd did not start")
    }

    fn nap(&self) -> anyhow::Result<&NapServer> {
        self.nap.context("nap serve did not start")
    }

    /// Push + deploy of `repo` (scale 3) vs a bare OpenSSH push of it, alternating.
    ///
    /// `big`: no warm-up, and nothing is deleted until the end of the benchmark: on this
    /// kind of disk (ext4 with `discard` on a VM) creating files right after deleting
    /// thousands is several times slower, which would bleed into the next run.
    fn push_figure(&self, name: &str, repo: &Path, big: bool) -> Outcome {
        let warm_up = !big;
        let nap = self.nap()?;
        let sshd = self.sshd()?;
        let mut nap_total = Measure::new(Unit::Seconds);
        let mut reference = Measure::new(Unit::Seconds);
        let mut pushed = Vec::new();
        let first = usize::from(!warm_up);
        for run in first..=self.options.runs {
            let app = format!("{name}-{run}");
            sync();
            let (total, push) = nap_deploy(nap, repo, &app, 3)?;
            if !big {
                nap.destroy(&app)?;
            }
            sync();
            let reference_time =
                reference_push(sshd, repo, &format!("{app}.git"), &self.receive_pack, big)?;
            eprintln!(
                "nap-bench: {name} run {run}: nap {} (push returned at {}), OpenSSH {}",
                ms(total.as_secs_f64()),
                ms(push.as_secs_f64()),
                ms(reference_time.as_secs_f64())
            );
            if run > 0 {
                nap_total.push_duration(total);
                pushed.push(push.as_secs_f64());
                reference.push_duration(reference_time);
            }
        }
        let notes = vec![
            format!(
                "nap: `git push` itself returned after {} (median); the rest is `nap ps` + the first HTTP answers",
                ms(median(&pushed))
            ),
            format!(
                "reference: `git init --bare` before the clock; git push over ssh -> /usr/sbin/sshd -> {}",
                self.receive_pack
            ),
            sshd.note.clone(),
            if warm_up {
                "one warm-up run of each side first, not counted; `sync` + 1 s before each push"
                    .to_owned()
            } else {
                "no warm-up run; `sync` + 1 s before each push; apps and repositories are deleted only at the end (see the checkout note)".to_owned()
            },
        ];
        Ok((nap_total, Some(reference), notes))
    }

    /// What a push of `repo` costs before nap does anything of its own: an ssh session
    /// with nap, and the same push to a local bare repository (git's own work, no ssh).
    fn floors(&self, repo: &Path) -> anyhow::Result<Vec<String>> {
        let nap = self.nap()?;
        let dir = BenchDir::new("nap-bench-floor-")?;
        let (mut sessions, mut local) = (Vec::new(), Vec::new());
        for run in 0..self.options.runs {
            let started = Instant::now();
            run_ok(&mut nap.target.ssh(&["apps"]))?;
            sessions.push(started.elapsed().as_secs_f64());
            let bare = dir.path().join(format!("local-{run}.git"));
            run_ok(git(dir.path()).args(["init", "-q", "--bare"]).arg(&bare))?;
            let started = Instant::now();
            run_ok(git(repo).arg("push").arg("-q").arg(&bare).arg("master"))?;
            local.push(started.elapsed().as_secs_f64());
        }
        Ok(vec![format!(
            "floors (medians): an ssh session with nap (`ssh nap apps`) {}; `git push` of the same repository \
             to a local bare repository, no ssh (git's own work, both sides pay it) {}",
            ms(median(&sessions)),
            ms(median(&local))
        )])
    }

    /// nap-git's checkout of the big tree vs `git archive | tar -x`, into `root`.
    fn checkout(&self, root: &Path) -> Outcome {
        let bare = self.repos.big_bare.as_ref().context("no big repository")?;
        let commit = nap_git::open(bare, &nap_git::Quarantine::default())?
            .resolve_commit("master")?
            .id;
        let mut nap = Measure::new(Unit::Seconds);
        let mut reference = Measure::new(Unit::Seconds);
        let mut files = 0;
        for run in 0..=self.options.runs {
            sync();
            let dest = root.join(format!("nap-{run}"));
            let started = Instant::now();
            let repo = nap_git::open(bare, &nap_git::Quarantine::default())?;
            let stats = repo.checkout(&commit, &dest)?;
            let nap_time = started.elapsed();
            files = stats.files;
            sync();

            let dest = root.join(format!("git-{run}"));
            std::fs::create_dir_all(&dest)?;
            let started = Instant::now();
            run_ok(
                Command::new("bash")
                    .args([
                        "-c",
                        r#"set -o pipefail; git --git-dir="$0" archive "$1" | tar -x -C "$2""#,
                    ])
                    .arg(bare)
                    .arg(&commit)
                    .arg(&dest)
                    .env("PATH", SERVER_PATH),
            )?;
            let git_time = started.elapsed();
            eprintln!(
                "nap-bench: checkout run {run}: nap-git {}, git archive | tar -x {}",
                ms(nap_time.as_secs_f64()),
                ms(git_time.as_secs_f64())
            );
            if run > 0 {
                nap.push_duration(nap_time);
                reference.push_duration(git_time);
            }
        }
        let notes = vec![format!(
            "{files} files; nap_git::open + Repo::checkout (default options: all cores) called in-process; \
                 reference: `git archive COMMIT | tar -x -C DEST`; warm page cache, `sync` + 1 s before each run; one warm-up run; \
                 the trees are deleted only at the end: creating files right after deleting thousands is 3-8× slower on this disk (ext4, `discard`)"
        )];
        Ok((nap, Some(reference), notes))
    }

    /// 32 concurrent `ssh host apps` (nap) vs `ssh host true` (OpenSSH), wall time.
    fn sessions(&self) -> Outcome {
        let nap = self.nap()?;
        let sshd = self.sshd()?;
        let mut nap_wall = Measure::new(Unit::Seconds);
        let mut reference = Measure::new(Unit::Seconds);
        let mut single_nap = Vec::new();
        let mut single_ref = Vec::new();
        for run in 0..=self.options.runs {
            let nap_time = concurrent(SESSIONS, || nap.target.ssh(&["apps"]))?;
            let ref_time = concurrent(SESSIONS, || sshd.target.ssh(&["true"]))?;
            single_nap.push(concurrent(1, || nap.target.ssh(&["apps"]))?.as_secs_f64());
            single_ref.push(concurrent(1, || sshd.target.ssh(&["true"]))?.as_secs_f64());
            eprintln!(
                "nap-bench: sessions run {run}: nap {}, OpenSSH {}",
                ms(nap_time.as_secs_f64()),
                ms(ref_time.as_secs_f64())
            );
            if run > 0 {
                nap_wall.push_duration(nap_time);
                reference.push_duration(ref_time);
            }
        }
        let notes = vec![
            format!(
                "one session alone (median): nap `apps` {}, OpenSSH `true` {}",
                ms(median(&single_nap)),
                ms(median(&single_ref))
            ),
            format!(
                "negotiated: nap: {}; OpenSSH: {}",
                nap.target.negotiated(&["whoami"]),
                sshd.target.negotiated(&["true"])
            ),
            sshd.note.clone(),
            "each session is a new `ssh` client process (ed25519 key, no multiplexing); sshd has MaxStartups 100; one warm-up run; nap's sessions run `apps`, OpenSSH's `true`".to_owned(),
        ];
        Ok((nap_wall, Some(reference), notes))
    }

    /// `nap scale APP 50` from 1, until all 50 answer; reference: 50 instances of the same
    /// command started directly.
    fn scale(&self) -> Outcome {
        let nap = self.nap()?;
        let mut total = Measure::new(Unit::Seconds);
        let mut command_times = Vec::new();
        for run in 0..=self.options.runs {
            let app = format!("scale-{run}");
            nap_deploy(nap, &self.repos.scale1, &app, 1)?;
            sync();
            let started = Instant::now();
            nap.cli(&["scale", &app, "50"])?;
            let command = started.elapsed();
            let ports = ports_of(nap, &app, 50)?;
            wait_answer(&ports, Duration::from_secs(60))?;
            let elapsed = started.elapsed();
            nap.destroy(&app)?;
            eprintln!(
                "nap-bench: scale run {run}: all 50 answer after {} (`nap scale` returned at {})",
                ms(elapsed.as_secs_f64()),
                ms(command.as_secs_f64())
            );
            if run > 0 {
                total.push_duration(elapsed);
                command_times.push(command.as_secs_f64());
            }
        }
        let mut direct = Measure::new(Unit::Seconds);
        for _ in 0..self.options.runs {
            direct.push_duration(self.start_directly(49)?);
        }
        let notes = vec![
            format!(
                "`nap scale` itself returned after {} (median), i.e. after the new instances' health checks",
                ms(median(&command_times))
            ),
            "reference column: 49 × `python3 -m http.server $PORT` started directly by the benchmark (no nap), until all answer; the target is absolute".to_owned(),
            "one warm-up run, not counted".to_owned(),
        ];
        Ok((total, Some(direct), notes))
    }

    /// Starts `n` instances of the profile's command directly, waits until all answer,
    /// kills them; the time it took.
    fn start_directly(&self, n: u16) -> anyhow::Result<Duration> {
        let dir = BenchDir::new("nap-bench-direct-")?;
        std::fs::copy(self.repos.small.join("profile"), dir.path().join("profile"))?;
        let started = Instant::now();
        let mut guards = Vec::new();
        for i in 0..n {
            let child: Child = Command::new("/bin/sh")
                .args(["-c", "exec python3 -m http.server $PORT"])
                .env("PATH", SERVER_PATH)
                .env("PORT", (DIRECT_PORTS + i).to_string())
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()?;
            guards.push(ChildGuard::new(child, "python3", true));
        }
        let ports: Vec<u16> = (0..n).map(|i| DIRECT_PORTS + i).collect();
        wait_answer(&ports, Duration::from_secs(60))?;
        let elapsed = started.elapsed();
        for guard in &mut guards {
            guard.stop(Duration::from_secs(5));
        }
        Ok(elapsed)
    }

    /// The daemon's RSS idle, and per instance with 100 supervised instances.
    fn rss(&self) -> anyhow::Result<(Measure, Measure, Vec<String>)> {
        let mut idle = Measure::new(Unit::MiB);
        let mut per_instance = Measure::new(Unit::KiB);
        let mut one = Vec::new();
        let mut hundred = Vec::new();
        let mut to_100 = Vec::new();
        let mut enforced = None;
        for run in 1..=self.options.runs {
            let dir = BenchDir::new("nap-bench-rss-")?;
            let mut nap = NapServer::start(
                self.bin,
                dir.path(),
                self.client,
                RSS_PORTS,
                &self.options.serve_args,
            )?;
            std::thread::sleep(Duration::from_secs(1));
            let idle_kib = nap.rss_kib()?;
            nap.add_key(self.client)?;
            nap_deploy(&nap, &self.repos.tiny, "tiny", 1)?;
            std::thread::sleep(Duration::from_millis(500));
            let one_kib = nap.rss_kib()?;
            let started = Instant::now();
            nap.cli(&["scale", "tiny", "100"])?;
            let ports = ports_of(&nap, "tiny", 100)?;
            wait_answer(&ports, Duration::from_secs(120))?;
            to_100.push(started.elapsed().as_secs_f64());
            enforced = nap.ps("tiny")?.first().map(|r| r.limit_enforced);
            std::thread::sleep(Duration::from_secs(1));
            let hundred_kib = nap.rss_kib()?;
            nap.stop();
            kill_processes_in(dir.path());
            eprintln!(
                "nap-bench: rss run {run}: idle {idle_kib} KiB, 1 instance {one_kib} KiB, 100 instances {hundred_kib} KiB"
            );
            idle.samples.push(idle_kib as f64 / 1024.0);
            per_instance
                .samples
                .push((hundred_kib as f64 - one_kib as f64) / 99.0);
            one.push(one_kib as f64 / 1024.0);
            hundred.push(hundred_kib as f64 / 1024.0);
        }
        let notes = vec![
            "idle: VmRSS of the `nap serve` pid 1 s after its \"listening\" line, before any command".to_owned(),
            format!(
                "per instance: (RSS with 100 instances − RSS with 1) ÷ 99; medians: 1 instance {}, 100 instances {}",
                Unit::MiB.show(median(&one)),
                Unit::MiB.show(median(&hundred))
            ),
            format!(
                "instances: a 10-line python3 HTTP listener; `nap scale tiny 100` until all answer took {} (median); memory limit enforced: {}",
                ms(median(&to_100)),
                enforced.map_or("?".to_owned(), |e| e.to_string())
            ),
            "a fresh daemon per run".to_owned(),
        ];
        Ok((idle, per_instance, notes))
    }
}

/// Starts `n` commands at once and waits for all; the wall time. Every one must succeed.
fn concurrent(n: usize, make: impl Fn() -> Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        children.push(make().spawn().context("cannot start ssh")?);
    }
    let mut failure = None;
    for child in children {
        let output = child.wait_with_output()?;
        if !output.status.success() && failure.is_none() {
            failure = Some(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    let elapsed = started.elapsed();
    if let Some(failure) = failure {
        bail!("a session failed: {failure}");
    }
    Ok(elapsed)
}

fn row(figure: &str, target: Target, outcome: Outcome) -> Row {
    match outcome {
        Ok((nap, reference, notes)) => Row {
            figure: figure.to_owned(),
            outcome: Ok((nap, reference)),
            target,
            notes,
        },
        Err(error) => {
            eprintln!("nap-bench: {figure}: {error:#}");
            Row {
                figure: figure.to_owned(),
                outcome: Err(format!("{error:#}")),
                target,
                notes: Vec::new(),
            }
        }
    }
}

fn first_line(command: &mut Command) -> String {
    command
        .env("PATH", SERVER_PATH)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|e| format!("({e})"))
}

/// The machine and software, for the report.
fn environment(options: &Options, bin: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "?".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("?".to_owned(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let help = grace_default(bin);
    let root = crate::workspace_root();
    let rev =
        first_line(
            Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(["rev-parse", "--short", "HEAD"]),
        );
    let dirty = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["status", "--porcelain"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    format!(
        "Machine: {cores} cores ({cpu}), {memory} RAM, Linux {}\n\
         Software: {}; {}; openssh-server {}; {}\n\
         nap: {} at {rev}{}; instances' PATH={SERVER_PATH}\n\
         nap serve defaults used: {}; boot timeout 10 s (boot_timeout_secs); --max-scale 128 (default 64, raised for 100 instances)\n\
         Extra `nap serve` arguments: {}; big repository repacked first: {}\n\
         Runs: {} measured per figure (medians below); load average at start: {}\n",
        kernel.trim(),
        first_line(Command::new("git").arg("--version")),
        first_line(Command::new("ssh").arg("-V")),
        first_line(Command::new("dpkg-query").args(["-W", "-f", "${Version}", "openssh-server"])),
        first_line(Command::new("python3").arg("--version")),
        bin.display(),
        if dirty {
            " (+ uncommitted changes)"
        } else {
            ""
        },
        help.trim(),
        if options.serve_args.is_empty() {
            "none".to_owned()
        } else {
            options.serve_args.join(" ")
        },
        if options.repack {
            "yes"
        } else {
            "no (as mkrepo.py leaves it: loose objects)"
        },
        options.runs,
        load_average(),
    )
}

/// `[default: N]` of `--health-grace-ms` in `nap serve --help`.
fn grace_default(bin: &Path) -> String {
    let output = Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&output);
    let Some(start) = text.find("--health-grace-ms") else {
        return "(no --health-grace-ms in `nap serve --help`)".into();
    };
    text[start..]
        .split_once("[default: ")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map_or_else(
            || "--health-grace-ms (no default shown)".into(),
            |(value, _)| format!("--health-grace-ms {value} (default)"),
        )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs every selected figure; the report. Fails only if nothing could be measured.
pub fn run_all(options: &Options, bin: &Path) -> anyhow::Result<String> {
    crate::install::ensure(options)?;
    let dir = BenchDir::new("nap-bench-")?;
    let client = Client::new(dir.path())?;
    let header = environment(options, bin);
    eprint!("{header}");
    let repos = Repos::make(options, dir.path())?;

    let wants = |names: &[&str]| names.iter().any(|n| options.wants(n));
    // Its own directory under /tmp: the sessions' user must reach authorized_keys and
    // its repositories, and the main temp dir is private (0700).
    let sshd_dir = BenchDir::new("nap-bench-sshd-")?;
    let sshd = if wants(&["small", "small-fast", "big", "sessions"]) {
        match Sshd::start(sshd_dir.path(), &client) {
            Ok(sshd) => Some(sshd),
            Err(error) => {
                eprintln!("nap-bench: cannot start sshd: {error:#}");
                None
            }
        }
    } else {
        None
    };
    let nap = if wants(&["small", "small-fast", "build", "big", "sessions", "scale"]) {
        let started = NapServer::start(
            bin,
            &dir.path().join("nap"),
            &client,
            MAIN_PORTS,
            &options.serve_args,
        )
        .and_then(|nap| nap.add_key(&client).map(|()| nap));
        match started {
            Ok(nap) => Some(nap),
            Err(error) => {
                eprintln!("nap-bench: cannot start nap serve: {error:#}");
                None
            }
        }
    } else {
        None
    };
    let bench = Bench {
        options,
        bin,
        client: &client,
        repos: &repos,
        sshd: sshd.as_ref(),
        nap: nap.as_ref(),
        receive_pack: receive_pack_path()?,
    };

    let mut rows = Vec::new();
    for figure in crate::FIGURES {
        if !options.wants(figure) {
            continue;
        }
        eprintln!("nap-bench: --- {figure} ---");
        match figure {
            "router" => rows.extend(crate::router::figure(options, &dir.path().join("router"))),
            "checkout" => {
                rows.push(row(
                    "nap's checkout of the big tree ÷ `git archive | tar -x` (ext4 disk, where nap's data lives)",
                    Target::RatioAtMost(0.67),
                    bench.checkout(&dir.path().join("checkouts")),
                ));
                // The same in memory: the code's cost without this VM's disk noise.
                let shm = Path::new("/dev/shm");
                if shm.is_dir() {
                    let outcome = BenchDir::new_in(shm, "nap-bench-checkout-")
                        .and_then(|tmpfs| bench.checkout(tmpfs.path()));
                    rows.push(row(
                        "the same checkout on tmpfs (/dev/shm: CPU only, no disk)",
                        Target::RatioAtMost(0.67),
                        outcome,
                    ));
                }
            }
            "small" => rows.push(row(
                "small push + deploy (scale 3, until all answer) ÷ bare OpenSSH push",
                Target::RatioAtMost(0.5),
                bench.push_figure("small", &repos.small, false),
            )),
            "small-fast" => rows.push(row(
                "the same with an app that starts in < 5 ms (`busybox httpd`) ÷ bare OpenSSH push",
                Target::RatioAtMost(0.5),
                bench
                    .push_figure("small-fast", &repos.fast, false)
                    .and_then(|(nap, reference, mut notes)| {
                        notes.insert(
                            0,
                            format!(
                                "the app's profile: `{}`",
                                FAST_PROFILE.trim().replace('\n', "; ")
                            ),
                        );
                        notes.extend(bench.floors(&repos.fast)?);
                        Ok((nap, reference, notes))
                    }),
            )),
            "build" => rows.push(row(
                "push + deploy with a fully cached Python build ÷ the same without a build",
                Target::Informational,
                BenchDir::new("nap-bench-build-").and_then(|build_dir| {
                    crate::build_cached::figure(bench.nap()?, options.runs, build_dir.path())
                }),
            )),
            "big" => match &repos.big {
                Some(big) => rows.push(row(
                    "big push + deploy (5,000 files, 20 commits) ÷ bare OpenSSH push",
                    Target::RatioAtMost(1.15),
                    bench.push_figure("big", big, true),
                )),
                None => bail!("the big repository was not made"),
            },
            "sessions" => rows.push(row(
                "32 concurrent sessions, wall: OpenSSH `true` ÷ nap `apps`",
                Target::InverseRatioAtLeast(3.0),
                bench.sessions(),
            )),
            "scale" => rows.push(row(
                "scale 1 → 50 until all answer",
                Target::AtMost(2.0),
                bench.scale(),
            )),
            "sandbox" => rows.push(row(
                "instance start: sandboxed ÷ `isolation: none`",
                Target::Informational,
                BenchDir::new("nap-bench-sandbox-").and_then(|sandbox_dir| {
                    crate::sandbox_start::figure(
                        options,
                        bin,
                        &client,
                        &repos.fast,
                        sandbox_dir.path(),
                    )
                }),
            )),
            "rss" => match bench.rss() {
                Ok((idle, per_instance, notes)) => {
                    rows.push(row(
                        "daemon RSS, idle",
                        Target::AtMost(20.0),
                        Ok((idle, None, Vec::new())),
                    ));
                    rows.push(row(
                        "daemon RSS per supervised instance (1 → 100)",
                        Target::AtMost(100.0),
                        Ok((per_instance, None, notes)),
                    ));
                }
                Err(error) => {
                    rows.push(row("daemon RSS", Target::AtMost(20.0), Err(error)));
                }
            },
            _ => {}
        }
    }
    drop(nap);
    drop(sshd);
    let header = format!("{header}Load average at the end: {}\n", load_average());
    if !crate::report::any_measured(&rows) {
        bail!("no figure could be measured:\n{}", render(&header, &rows));
    }
    Ok(render(&header, &rows))
}
