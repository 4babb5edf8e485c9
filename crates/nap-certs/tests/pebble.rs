//! Debian's pebble (the ACME test server of Let's Encrypt) on 127.0.0.1 and
//! the DNS resolver it asks. Shared with the whole-product tests (the
//! workspace's `tests/`, which include this file by path), so it needs only
//! what both have: tokio, rcgen, rustls-pki-types, serde_json, nap-certs.
//!
//! The resolver is a few lines of UDP in this process rather than
//! `pebble-challtestsrv`: it binds its own port (no free-port race), needs no
//! readiness wait and no process to clean up, and answers only A records, so
//! pebble (which asks for AAAA first and dials the first address) connects
//! to 127.0.0.1 where the responder listens.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use nap_certs::AcmeOptions;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A port nothing listens on right now (the OS's pick, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Answers every DNS query for an A record with 127.0.0.1 and every other
/// query with an empty answer. Stopped when dropped.
pub struct DnsResponder {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DnsResponder {
    pub async fn start() -> DnsResponder {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS");
        let addr = socket.local_addr().expect("DNS address");
        let task = tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            loop {
                let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
                    return;
                };
                if let Some(answer) = dns_answer(&buffer[..length]) {
                    let _ = socket.send_to(&answer, peer).await;
                }
            }
        });
        DnsResponder { addr, task }
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The answer to one query (RFC 1035 §4.1): the header with QR and AA set,
/// the question copied, and for type A one record pointing at the question's
/// name (offset 12) with 127.0.0.1.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    loop {
        let length = *query.get(end)? as usize;
        end += 1;
        if length == 0 {
            break;
        }
        end += length;
    }
    let question = query.get(12..end + 4)?;
    let query_type = u16::from_be_bytes([query[end], query[end + 1]]);
    let answers: u16 = if query_type == 1 { 1 } else { 0 };
    let mut answer = Vec::with_capacity(64);
    answer.extend_from_slice(&query[0..2]);
    answer.push(0x84 | (query[2] & 0x01)); // QR, AA, RD copied
    answer.push(0x00); // no recursion, NOERROR
    answer.extend_from_slice(&[0, 1]);
    answer.extend_from_slice(&answers.to_be_bytes());
    answer.extend_from_slice(&[0, 0, 0, 0]);
    answer.extend_from_slice(question);
    if answers == 1 {
        answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1]);
    }
    Some(answer)
}

/// A running pebble with its own config, API certificate and ports. Killed
/// (and its directory removed) when dropped.
pub struct Pebble {
    pub acme_port: u16,
    pub management_port: u16,
    /// The CA of pebble's own HTTPS API certificate (made by the test).
    pub api_root: PathBuf,
    dir: tempfile::TempDir,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on 127.0.0.1:`http_port` and
    /// resolving names through `dns`.
    pub fn start(http_port: u16, dns: SocketAddr) -> Pebble {
        let dir = tempfile::tempdir().expect("pebble's directory");
        let api_root = write_api_certificate(dir.path());
        let acme_port = free_port();
        let management_port = free_port();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme_port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": dir.path().join("api.crt"),
                "privateKey": dir.path().join("api.key"),
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).expect("write pebble's config");
        let mut child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(dns.to_string())
            // Deterministic runs: no random validation delays, no rejected
            // nonces, and every order validated afresh (no reused authz).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pebble (Debian package pebble)");

        // pebble logs to stdout; it is ready once it says where its
        // directory is (printed just before it serves).
        let output = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let output = Arc::clone(&output);
            let ready_tx = ready_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("ACME directory available at") {
                        let _ = ready_tx.send(());
                    }
                    output.lock().expect("pebble output").push(line);
                }
            });
        }
        let mut pebble = Pebble {
            acme_port,
            management_port,
            api_root,
            dir,
            child,
            output,
        };
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            panic!("pebble did not start:\n{}", pebble.output());
        }
        // The line comes just before pebble's listen call; wait for the
        // socket itself.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", acme_port)).is_err() {
            if let Ok(Some(status)) = pebble.child.try_wait() {
                panic!("pebble exited ({status}):\n{}", pebble.output());
            }
            assert!(
                Instant::now() < deadline,
                "pebble does not listen:\n{}",
                pebble.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        pebble
    }

    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// Options for nap's client: this pebble, its API's root, quick polls.
    pub fn options(&self) -> AcmeOptions {
        let mut options = AcmeOptions::new(self.directory_url());
        options.contact = vec!["ops@nap.test".into()];
        options.root_certificate = Some(self.api_root.clone());
        options.poll_interval = Duration::from_millis(50);
        options.timeout = Duration::from_secs(30);
        options
    }

    /// The root that signs the certificates pebble issues, from its
    /// management API (`/roots/0`), fetched with curl.
    pub fn issuing_root(&self) -> (String, CertificateDer<'static>) {
        let url = format!("https://127.0.0.1:{}/roots/0", self.management_port);
        let curl = Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--cacert"])
            .arg(&self.api_root)
            .arg(&url)
            .output()
            .expect("run curl");
        assert!(
            curl.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&curl.stderr)
        );
        let pem = String::from_utf8(curl.stdout).expect("pebble's root is text");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("pebble's root is PEM");
        (pem, der)
    }

    /// Everything pebble printed, for failure messages.
    pub fn output(&self) -> String {
        self.output.lock().expect("pebble output").join("\n")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("pebble's output:\n{}", self.output());
        }
    }
}

/// Makes a CA and, signed by it, the certificate of pebble's HTTPS API for
/// 127.0.0.1 and localhost; returns the CA's file.
fn write_api_certificate(dir: &std::path::Path) -> PathBuf {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pebble API test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("self-sign the CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("API key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("API names");
    let api = params
        .signed_by(&key, &issuer)
        .expect("sign the API certificate");
    std::fs::write(dir.join("api.crt"), api.pem()).expect("write the API certificate");
    std::fs::write(dir.join("api.key"), key.serialize_pem()).expect("write the API key");
    let root = dir.join("api-ca.pem");
    std::fs::write(&root, ca.pem()).expect("write the API CA");
    root
}
