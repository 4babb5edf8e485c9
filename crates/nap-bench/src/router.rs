//! The router figure: nap's router and nginx as reverse proxies in front of the same two
//! nginx backends, loaded by `wrk`, with keep-alive, with a new connection per request,
//! and over HTTPS with keep-alive (each terminating TLS with the same certificate).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::Options;
use crate::nginx::{self, HOST, Nginx, Role, STATIC_FILE, Tls};
use crate::report::{Measure, Row, Target, Unit, median};
use crate::servers::run_ok;

/// wrk's load: one thread, as in the issue that asked for this figure. On 2 cores a second
/// wrk thread takes CPU from the proxy and the backends it measures; one thread drives
/// about 30k requests/s straight at a backend here, well above either proxy.
const WRK_THREADS: usize = 1;
/// Enough connections to keep both proxies' workers busy, few enough that queueing in
/// the proxy does not dominate the latencies.
const WRK_CONNECTIONS: usize = 32;
/// The length of one measured run, and of the warm-up run of each side.
const RUN: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(2);

/// wrk's summary, printed by its `done` hook as one line of numbers (latencies in µs).
/// wrk sends the URL's host as SNI and resolves it too; `bench.localhost` does not resolve
/// here, so every address is 127.0.0.1.
const WRK_SCRIPT: &str = r#"wrk.resolve = function(host, service)
  wrk.addrs = wrk.lookup("127.0.0.1", service)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("nap-bench-wrk %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"#;

/// One wrk run.
#[derive(Debug, Clone, Copy)]
struct Load {
    requests_per_second: f64,
    p50: f64,
    p99: f64,
    /// Connect, read, write and timeout errors, and responses that were not 2xx or 3xx.
    errors: u64,
}

/// Whether the client keeps its connections open.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    KeepAlive,
    /// `Connection: close`: a new connection per request.
    Close,
    /// HTTPS (TLS 1.3), keep-alive.
    Https,
}

impl Mode {
    fn describe(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive",
            Mode::Close => "new connection per request",
            Mode::Https => "HTTPS keep-alive",
        }
    }
}

fn wrk(script: &Path, port: u16, mode: Mode, duration: Duration) -> anyhow::Result<Load> {
    let mut command = Command::new("wrk");
    command
        .arg(format!("--threads={WRK_THREADS}"))
        .arg(format!("--connections={WRK_CONNECTIONS}"))
        .arg(format!("--duration={}s", duration.as_secs()))
        .arg("--latency")
        .arg("--script")
        .arg(script)
        .args(["--header", &format!("Host: {HOST}")]);
    if mode == Mode::Close {
        command.args(["--header", "Connection: close"]);
    }
    command.arg(match mode {
        Mode::Https => format!("https://{HOST}:{port}/{STATIC_FILE}"),
        _ => format!("http://127.0.0.1:{port}/{STATIC_FILE}"),
    });
    let output = run_ok(&mut command)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<f64> = text
        .lines()
        .find_map(|line| line.strip_prefix("nap-bench-wrk "))
        .with_context(|| format!("wrk printed no summary:\n{text}"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read wrk's summary:\n{text}"))?;
    let [
        requests,
        duration_us,
        p50_us,
        p99_us,
        connect,
        read,
        write,
        status,
        timeout,
    ] = numbers[..]
    else {
        bail!(
            "wrk's summary has {} numbers, not 9:\n{text}",
            numbers.len()
        );
    };
    if requests == 0.0 || duration_us == 0.0 {
        bail!("wrk made no request:\n{text}");
    }
    Ok(Load {
        requests_per_second: requests / (duration_us / 1e6),
        p50: p50_us / 1e6,
        p99: p99_us / 1e6,
        errors: (connect + read + write + status + timeout) as u64,
    })
}

/// Samples of one proxy in one mode.
#[derive(Default)]
struct Side {
    loads: Vec<Load>,
}

impl Side {
    fn measure(&self, pick: fn(&Load) -> f64, unit: Unit) -> Measure {
        Measure {
            samples: self.loads.iter().map(pick).collect(),
            unit,
        }
    }

    fn errors(&self) -> u64 {
        self.loads.iter().map(|load| load.errors).sum()
    }
}

/// A self-signed certificate for [`HOST`] (ECDSA P-256, valid for two days) and its
/// key, made with `openssl` for both proxies.
fn certificate(dir: &Path) -> anyhow::Result<Tls> {
    let tls = Tls {
        certificate: dir.join("bench-cert.pem"),
        key: dir.join("bench-key.pem"),
    };
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "2", "-subj", &format!("/CN={HOST}")])
            .args(["-addext", &format!("subjectAltName=DNS:{HOST}")])
            .arg("-keyout")
            .arg(&tls.key)
            .arg("-out")
            .arg(&tls.certificate),
    )?;
    Ok(tls)
}

/// The protocol and cipher suite OpenSSL's client (the library wrk uses) negotiates
/// with 127.0.0.1:`port`, for the report.
fn negotiated(port: u16) -> String {
    let output = Command::new("openssl")
        .args(["s_client", "-brief", "-servername", HOST, "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .output();
    let Ok(output) = output else {
        return "(openssl s_client did not run)".to_owned();
    };
    // `-brief` prints "Protocol version: TLSv1.3" and "Ciphersuite: …" on stderr.
    let text = String::from_utf8_lossy(&output.stderr);
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .map_or("?", str::trim)
            .to_owned()
    };
    format!(
        "{} {} {}",
        field("Protocol version:"),
        field("Ciphersuite:"),
        field("Server Temp Key:")
    )
}

/// The router figure's rows: for each mode, requests/s, p50 and p99, nap beside nginx.
pub fn figure(options: &Options, dir: &Path) -> Vec<Row> {
    match measure(options, dir) {
        Ok(rows) => rows,
        Err(error) => {
            eprintln!("nap-bench: router: {error:#}");
            vec![Row {
                figure: "router: nap's router ÷ nginx, requests/s".to_owned(),
                outcome: Err(format!("{error:#}")),
                target: Target::RatioAtLeast(1.0),
                notes: Vec::new(),
            }]
        }
    }
}

/// Everything the figure runs: the backends, nginx in front of them (HTTP and HTTPS), and
/// nap's router (HTTP and HTTPS), each checked to answer 200. Stopped when dropped, the
/// proxies first.
struct Stage {
    router: crate::router_under_test::RouterUnderTest,
    proxy: Nginx,
    /// Kept running for the proxies; stopped last.
    _backends: [Nginx; 2],
    upstreams: Vec<u16>,
    /// The HTTPS ports of nginx and of nap's router.
    nginx_https: u16,
    nap_https: u16,
}

impl Stage {
    fn start(dir: &Path) -> anyhow::Result<Stage> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        std::fs::create_dir_all(dir)?;
        nginx::write_static_file(dir)?;
        let backends = [
            Nginx::start(dir, "backend-1", 1, Role::Static { root: dir })?,
            Nginx::start(dir, "backend-2", 1, Role::Static { root: dir })?,
        ];
        let upstreams: Vec<u16> = backends.iter().map(|backend| backend.port).collect();
        let tls = certificate(dir)?;
        let proxy = Nginx::start(
            dir,
            "proxy",
            cores,
            Role::Proxy {
                upstreams: &upstreams,
                tls: Some(&tls),
            },
        )?;
        let instances: Vec<SocketAddr> = upstreams
            .iter()
            .map(|&port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .collect();
        let router = crate::router_under_test::RouterUnderTest::start(
            &instances,
            Some((&tls, &dir.join("nap-certs"))),
        )?;
        for (name, port) in [("nginx", proxy.port), ("nap's router", router.port)] {
            let status = nginx::status_of(port, HOST)?;
            if status != 200 {
                bail!("{name} answers GET /{STATIC_FILE} with {status}, not 200");
            }
        }
        let (Some(nginx_https), Some(nap_https)) = (proxy.tls_port, router.https_port) else {
            bail!("a proxy has no HTTPS listener");
        };
        Ok(Stage {
            router,
            proxy,
            _backends: backends,
            upstreams,
            nginx_https,
            nap_https,
        })
    }
}

/// `--serve-router`: starts what the figure measures and prints where it listens, then
/// waits until standard input ends; for profiling the router (e.g. under
/// `valgrind --tool=callgrind`, which then sees only nap's router in this process).
pub fn serve_for_profiling(dir: &Path) -> anyhow::Result<()> {
    let stage = Stage::start(dir)?;
    println!(
        "nap-bench: router http 127.0.0.1:{} https 127.0.0.1:{}; nginx http 127.0.0.1:{} https 127.0.0.1:{}; \
         backends {:?}; Host {HOST}; close standard input to stop",
        stage.router.port, stage.nap_https, stage.proxy.port, stage.nginx_https, stage.upstreams
    );
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())?;
    drop(stage);
    Ok(())
}

fn measure(options: &Options, dir: &Path) -> anyhow::Result<Vec<Row>> {
    let stage = Stage::start(dir)?;
    let script = dir.join("summary.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let (nginx_https, nap_https) = (stage.nginx_https, stage.nap_https);
    let ciphers = [("nginx", nginx_https), ("nap", nap_https)]
        .map(|(name, port)| format!("{name} {}", negotiated(port)))
        .join(", ");

    let mut rows = Vec::new();
    let mut direct = Vec::new();
    for mode in [Mode::KeepAlive, Mode::Close, Mode::Https] {
        let (mut nap, mut reference) = (Side::default(), Side::default());
        let (nap_port, nginx_port) = match mode {
            Mode::Https => (nap_https, nginx_https),
            _ => (stage.router.port, stage.proxy.port),
        };
        wrk(&script, nginx_port, mode, WARM_UP)?;
        wrk(&script, nap_port, mode, WARM_UP)?;
        for run in 1..=options.runs {
            // Alternate who goes first, so that neither always follows the other's
            // leftovers (TIME_WAIT sockets, a warm cache).
            let order = if run % 2 == 1 {
                [true, false]
            } else {
                [false, true]
            };
            for is_nap in order {
                let port = if is_nap { nap_port } else { nginx_port };
                let load = wrk(&script, port, mode, RUN)?;
                eprintln!(
                    "nap-bench: router {} run {run}: {} {:.0}/s, p50 {:.2} ms, p99 {:.2} ms{}",
                    mode.describe(),
                    if is_nap { "nap" } else { "nginx" },
                    load.requests_per_second,
                    load.p50 * 1000.0,
                    load.p99 * 1000.0,
                    if load.errors > 0 {
                        format!(", {} errors", load.errors)
                    } else {
                        String::new()
                    }
                );
                if is_nap {
                    nap.loads.push(load);
                } else {
                    reference.loads.push(load);
                }
            }
        }
        if mode == Mode::KeepAlive {
            direct.push(wrk(&script, stage.upstreams[0], mode, RUN)?.requests_per_second);
        }
        let errors = format!(
            "errors (socket errors + non-2xx answers, all runs): nap {}, nginx {}",
            nap.errors(),
            reference.errors()
        );
        let what = mode.describe();
        let mut notes = vec![errors];
        if mode == Mode::Https {
            notes.push(format!(
                "TLS: one self-signed ECDSA P-256 certificate for {HOST} on both (nap's from its certificate store, \
                 as after `certs:add`); nginx `ssl_protocols TLSv1.3`; negotiated with OpenSSL's client: {ciphers}"
            ));
        }
        rows.push(Row {
            figure: format!("router, {what}: requests/s, nap ÷ nginx"),
            outcome: Ok((
                nap.measure(|l| l.requests_per_second, Unit::PerSecond),
                Some(reference.measure(|l| l.requests_per_second, Unit::PerSecond)),
            )),
            target: Target::RatioAtLeast(1.0),
            notes,
        });
        rows.push(Row {
            figure: format!("router, {what}: p50 latency"),
            outcome: Ok((
                nap.measure(|l| l.p50, Unit::Latency),
                Some(reference.measure(|l| l.p50, Unit::Latency)),
            )),
            target: Target::Informational,
            notes: Vec::new(),
        });
        rows.push(Row {
            figure: format!("router, {what}: p99 latency"),
            outcome: Ok((
                nap.measure(|l| l.p99, Unit::Latency),
                Some(reference.measure(|l| l.p99, Unit::Latency)),
            )),
            target: Target::RatioAtMost(1.0),
            notes: Vec::new(),
        });
    }
    if let Some(first) = rows.first_mut() {
        first.notes.extend([
            format!(
                "load: `wrk --threads={WRK_THREADS} --connections={WRK_CONNECTIONS} --duration={}s --latency -H 'Host: {HOST}' [-H 'Connection: close']` \
                 for GET /{STATIC_FILE} ({} bytes); one thread so that wrk leaves the proxy and the backends most of the 2 cores; \
                 one warm-up run of {}s per side and mode; the sides alternate",
                RUN.as_secs(),
                std::fs::metadata(dir.join(STATIC_FILE)).map_or(0, |m| m.len()),
                WARM_UP.as_secs(),
            ),
            format!(
                "backends: two nginx servers (`worker_processes 1`, access_log off) serving the file; straight at one of them wrk measured {:.0}/s",
                median(&direct)
            ),
            format!(
                "nginx: `worker_processes {}` (= cores), `upstream` with `keepalive 64`, `proxy_http_version 1.1`, `Connection \"\"`, \
                 Host and X-Forwarded-For/-Proto/-Host set as nap sets them, access_log off, keepalive_requests 1000000",
                stage.proxy.workers
            ),
            "nap: `nap_router::serve_listeners` (HTTP and HTTPS) with `Options::default()` (one worker thread per core) \
             and a fixed snapshot of the two backends, in this process, under the `info` log filter `nap serve` uses"
                .to_owned(),
        ]);
    }
    drop(stage);
    Ok(rows)
}
