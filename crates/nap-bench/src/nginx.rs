//! nginx servers the benchmark starts for the router figure: two static backends and a
//! reverse proxy, each with its own configuration in a temp directory, on a free
//! 127.0.0.1 port.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cleanup::ChildGuard;
use crate::servers::{SERVER_PATH, free_port};

pub const NGINX: &str = "/usr/sbin/nginx";

/// The file the backends serve: small, so that neither the backends nor the copying of
/// bodies are what is measured.
pub const STATIC_FILE: &str = "index.html";
const STATIC_BODY: &str =
    "<!doctype html><title>nap-bench</title><p>A small static file from an nginx backend.\n";

/// The Host every request of the figure carries: nap's router serves `APP.localhost`.
pub const HOST: &str = "bench.localhost";

/// One running nginx (master and workers, in a process group of their own).
pub struct Nginx {
    _guard: ChildGuard,
    pub port: u16,
    /// The HTTPS port of a proxy started with [`Role::Proxy`]'s `tls`.
    pub tls_port: Option<u16>,
    /// `worker_processes`, for the report.
    pub workers: usize,
}

/// Writes the file the backends serve into `dir` (the backends' root).
pub fn write_static_file(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(dir.join(STATIC_FILE), STATIC_BODY)?;
    Ok(())
}

/// The `server`/`upstream` part of a configuration, given the port to listen on.
pub enum Role<'a> {
    /// Serves `root`'s files.
    Static { root: &'a Path },
    /// A reverse proxy in front of `upstreams`, set up as one would for an app: keep-alive
    /// to the upstreams and the same `X-Forwarded-*` headers nap's router sends. With
    /// `tls`, the same server also terminates TLS on a second port.
    Proxy {
        upstreams: &'a [u16],
        tls: Option<&'a Tls>,
    },
}

/// The certificate and key files (PEM) a proxy serves HTTPS with.
pub struct Tls {
    pub certificate: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl Role<'_> {
    fn http_block(&self, port: u16, tls_port: Option<u16>) -> String {
        match self {
            Role::Static { root } => format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       root {root};\n\
                 \x20   }}\n",
                root = root.display()
            ),
            Role::Proxy { upstreams, tls } => {
                let servers: String = upstreams
                    .iter()
                    .map(|port| format!("        server 127.0.0.1:{port};\n"))
                    .collect();
                // TLS 1.3 only, as rustls negotiates with wrk's OpenSSL; tickets for
                // resumption are on by default, as in nap's rustls config.
                let tls = match (tls, tls_port) {
                    (Some(tls), Some(tls_port)) => format!(
                        "        listen 127.0.0.1:{tls_port} ssl;\n\
                         \x20       ssl_certificate {};\n\
                         \x20       ssl_certificate_key {};\n\
                         \x20       ssl_protocols TLSv1.3;\n",
                        tls.certificate.display(),
                        tls.key.display()
                    ),
                    _ => String::new(),
                };
                format!(
                    "    upstream app {{\n\
                     {servers}\
                     \x20       keepalive 64;\n\
                     \x20       keepalive_requests 1000000;\n\
                     \x20   }}\n\
                     \x20   server {{\n\
                     \x20       listen 127.0.0.1:{port};\n\
                     {tls}\
                     \x20       location / {{\n\
                     \x20           proxy_pass http://app;\n\
                     \x20           proxy_http_version 1.1;\n\
                     \x20           proxy_set_header Connection \"\";\n\
                     \x20           proxy_set_header Host $http_host;\n\
                     \x20           proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                     \x20           proxy_set_header X-Forwarded-Proto $scheme;\n\
                     \x20           proxy_set_header X-Forwarded-Host $http_host;\n\
                     \x20       }}\n\
                     \x20   }}\n"
                )
            }
        }
    }
}

fn config(
    dir: &Path,
    name: &str,
    workers: usize,
    (port, tls_port): (u16, Option<u16>),
    role: &Role<'_>,
) -> String {
    let temp = dir.join(format!("{name}-temp"));
    let temp = temp.display();
    // As root, nginx's workers would run as `nobody`, who cannot enter the benchmark's
    // private temp directories; they serve 127.0.0.1 only, for the benchmark's run.
    let user = if nix::unistd::geteuid().is_root() {
        "user root;\n"
    } else {
        ""
    };
    format!(
        "daemon off;\n\
         master_process on;\n\
         worker_processes {workers};\n\
         {user}\
         pid {dir}/{name}.pid;\n\
         error_log {dir}/{name}.error.log warn;\n\
         events {{\n\
         \x20   worker_connections 4096;\n\
         }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {temp}/body;\n\
         \x20   proxy_temp_path {temp}/proxy;\n\
         \x20   fastcgi_temp_path {temp}/fastcgi;\n\
         \x20   uwsgi_temp_path {temp}/uwsgi;\n\
         \x20   scgi_temp_path {temp}/scgi;\n\
         \x20   # Neither side closes a keep-alive connection during a run (nap's router\n\
         \x20   # does not either); nginx's default closes one every 1000 requests.\n\
         \x20   keepalive_requests 1000000;\n\
         {block}\
         }}\n",
        dir = dir.display(),
        block = role.http_block(port, tls_port),
    )
}

impl Nginx {
    /// Starts nginx as `name` in `dir` (configuration, pid, logs and temp files all
    /// there) and waits until it answers `GET /index.html` with 200.
    pub fn start(dir: &Path, name: &str, workers: usize, role: Role<'_>) -> anyhow::Result<Nginx> {
        // nginx makes the last component of a temp path only.
        std::fs::create_dir_all(dir.join(format!("{name}-temp")))?;
        let mut last_error = None;
        // A free port can be taken between asking and binding; try a few.
        for _attempt in 0..5 {
            let port = free_port()?;
            let tls_port = match role {
                Role::Proxy { tls: Some(_), .. } => Some(free_port()?),
                _ => None,
            };
            let conf = dir.join(format!("{name}.conf"));
            std::fs::write(&conf, config(dir, name, workers, (port, tls_port), &role))?;
            let startup_log = dir.join(format!("{name}.startup.log"));
            let child = Command::new(NGINX)
                .arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(&startup_log)
                .arg("-c")
                .arg(&conf)
                .env("PATH", SERVER_PATH)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .with_context(|| format!("cannot start {NGINX}"))?;
            let mut guard = ChildGuard::new(child, &format!("nginx {name}"), true);
            match wait_until_serving(&mut guard, port, Duration::from_secs(10)) {
                Ok(()) => {
                    return Ok(Nginx {
                        _guard: guard,
                        port,
                        tls_port,
                        workers,
                    });
                }
                Err(error) => {
                    guard.stop(Duration::from_secs(2));
                    last_error = Some(format!(
                        "nginx {name} did not serve on port {port}: {error:#}\n{}{}",
                        read_log(&startup_log),
                        read_log(&dir.join(format!("{name}.error.log")))
                    ));
                }
            }
        }
        bail!(last_error.unwrap_or_else(|| format!("nginx {name} did not start")))
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_until_serving(guard: &mut ChildGuard, port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if status_of(port, HOST).is_ok_and(|status| status == 200) {
            return Ok(());
        }
        if guard.exited() {
            bail!("it exited");
        }
        if Instant::now() > deadline {
            bail!("no answer within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The status of `GET /index.html` with `Host: host` on 127.0.0.1:`port`.
pub fn status_of(port: u16, host: &str) -> anyhow::Result<u16> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /{STATIC_FILE} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP response: {:?}", response.lines().next()))
}
