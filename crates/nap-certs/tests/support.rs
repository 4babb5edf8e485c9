//! What every test needs: certificates made with rcgen or the openssl CLI, a
//! TLS client, and a tiny HTTPS server built on the crate's config.

use std::convert::Infallible;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nap_certs::{CertStore, CheckedCertificate, HostName, HttpsAcceptor, Source};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use x509_cert::der::Decode;

pub const DAY: Duration = Duration::from_secs(24 * 3600);

pub fn host(name: &str) -> HostName {
    HostName::parse(name).expect("a valid test host")
}

/// A chain and key as PEM, as a user would paste them.
#[derive(Clone)]
pub struct Made {
    pub chain_pem: String,
    pub key_pem: String,
}

impl Made {
    /// Chain then key, the `certs:add` input.
    pub fn bundle(&self) -> Vec<u8> {
        format!("{}{}", self.chain_pem, self.key_pem).into_bytes()
    }

    pub fn check(&self) -> CheckedCertificate {
        CheckedCertificate::parse(&self.bundle(), SystemTime::now())
            .expect("a valid test certificate")
    }
}

fn offset(time: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(time)
}

/// Leaf parameters: `names` as DNS SANs, valid `from`..`until`.
pub fn leaf_params(names: &[&str], from: SystemTime, until: SystemTime) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("valid SANs");
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("no name"),
    );
    params.not_before = offset(from);
    params.not_after = offset(until);
    params
}

/// A self-signed ECDSA P-256 certificate for `names`.
pub fn self_signed(names: &[&str], from: SystemTime, until: SystemTime) -> Made {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate a key");
    let cert = leaf_params(names, from, until)
        .self_signed(&key)
        .expect("self-sign");
    Made {
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A self-signed certificate for `names`, valid from a day ago for `days`.
pub fn valid_for(names: &[&str], days: u32) -> Made {
    let now = SystemTime::now();
    self_signed(names, now - DAY, now + DAY * days)
}

/// A test certificate authority: root → leaf, so that a client can trust
/// the root and verify the served chain for real.
pub struct TestCa {
    pub root: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate a CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let now = SystemTime::now();
        params.not_before = offset(now - DAY);
        params.not_after = offset(now + DAY * 30);
        let root = params.self_signed(&key).expect("self-sign the CA");
        TestCa {
            root,
            issuer: Issuer::new(params, key),
        }
    }

    pub fn root_der(&self) -> CertificateDer<'static> {
        self.root.der().clone()
    }

    /// A leaf for `names` signed by this CA; the chain is leaf then root.
    pub fn issue(&self, names: &[&str], from: SystemTime, until: SystemTime) -> Made {
        self.issue_with(leaf_params(names, from, until))
    }

    pub fn issue_with(&self, params: CertificateParams) -> Made {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate a key");
        let leaf = params.signed_by(&key, &self.issuer).expect("sign the leaf");
        Made {
            chain_pem: format!("{}{}", leaf.pem(), self.root.pem()),
            key_pem: key.serialize_pem(),
        }
    }

    /// A currently valid leaf for `names`.
    pub fn leaf(&self, names: &[&str]) -> Made {
        let now = SystemTime::now();
        self.issue(names, now - DAY, now + DAY * 10)
    }
}

/// A leaf for `name` allowed only for TLS clients.
pub fn client_only_params(name: &str) -> CertificateParams {
    let now = SystemTime::now();
    let mut params = leaf_params(&[name], now - DAY, now + DAY);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// Runs a program and returns its stdout; panics with its stderr on failure.
pub fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A self-signed certificate for `name` made by the openssl CLI with the
/// given `-newkey` argument (`rsa:2048`, `ec -pkeyopt …`, `ed25519`).
pub fn openssl_self_signed(dir: &Path, name: &str, newkey: &[&str]) -> Made {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj"];
    let subject = format!("/CN={name}");
    let san = format!("subjectAltName=DNS:{name}");
    args.push(&subject);
    // Not a CA: rustls refuses a CA certificate as a server's own.
    args.extend([
        "-addext",
        &san,
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-newkey",
    ]);
    args.extend(newkey);
    let (key_arg, cert_arg) = (key.to_string_lossy(), cert.to_string_lossy());
    args.extend(["-keyout", &key_arg, "-out", &cert_arg]);
    run("openssl", &args, dir);
    Made {
        chain_pem: std::fs::read_to_string(&cert).expect("read the certificate"),
        key_pem: std::fs::read_to_string(&key).expect("read the key"),
    }
}

/// Checks and stores `made` for `host` as an upload.
pub fn upload(store: &CertStore, host: &HostName, made: &Made) {
    let checked = made.check();
    assert!(checked.covers(host), "the test certificate covers {host}");
    store
        .save(host, &checked, Source::Uploaded, SystemTime::now())
        .expect("store the certificate");
}

/// What the server presented in a handshake.
#[derive(Debug)]
pub struct Presented {
    pub names: Vec<String>,
    pub issuer: String,
    pub alpn: Option<Vec<u8>>,
    pub version: rustls::ProtocolVersion,
}

/// A client config trusting `roots` only, offering `alpn`.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("a usable root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("ring supports the versions")
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A real handshake with SNI `server_name` against 127.0.0.1:`port`,
/// verifying the chain against `roots`.
pub async fn handshake(
    port: u16,
    server_name: &str,
    roots: &[CertificateDer<'static>],
) -> Result<Presented, std::io::Error> {
    handshake_with(
        port,
        server_name,
        client_config(roots, rustls::DEFAULT_VERSIONS, &[b"h2", b"http/1.1"]),
    )
    .await
}

pub async fn handshake_with(
    port: u16,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Presented, std::io::Error> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(server_name.to_owned()).expect("a valid server name");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let connection = tls.get_ref().1;
    let leaf = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server presented a certificate");
    let parsed = x509_cert::Certificate::from_der(leaf).expect("an X.509 leaf");
    let names = parsed
        .tbs_certificate()
        .get_extension::<x509_cert::ext::pkix::SubjectAltName>()
        .expect("a SAN extension")
        .map(|(_, san)| {
            san.0
                .into_iter()
                .filter_map(|name| match name {
                    x509_cert::ext::pkix::name::GeneralName::DnsName(dns) => {
                        Some(dns.as_str().to_owned())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Presented {
        names,
        issuer: parsed.tbs_certificate().issuer().to_string(),
        alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
        version: connection
            .protocol_version()
            .expect("a finished handshake has a version"),
    })
}

/// A tiny HTTPS server on 127.0.0.1 built on the store's config, answering
/// every request with "hello HOST over HTTP/VERSION". Stopped when dropped.
pub struct HttpsServer {
    pub port: u16,
    task: JoinHandle<()>,
}

impl HttpsServer {
    pub async fn start(store: &CertStore) -> HttpsServer {
        // The way the router will get its acceptor.
        let acceptor = store
            .https_acceptor(nap_certs::DEFAULT_HANDSHAKE_TIMEOUT)
            .expect("an acceptor");
        HttpsServer::start_with(acceptor).await
    }

    pub async fn start_with(acceptor: HttpsAcceptor) -> HttpsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.server_name().unwrap_or("no SNI").to_owned();
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let body = format!("hello {sni} over {:?}\n", request.version());
                        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        HttpsServer { port, task }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `curl --resolve HOST:PORT:127.0.0.1 --cacert ROOT https://HOST:PORT/`;
/// `Ok(body)` or `Err(stderr)`. Awaited, so that a server in this test's
/// runtime can answer it.
pub async fn curl(
    dir: &Path,
    host: &str,
    port: u16,
    root_pem: &str,
    extra: &[&str],
) -> Result<String, String> {
    let root = dir.join(format!("curl-root-{host}-{port}.pem"));
    std::fs::write(&root, root_pem).expect("write the root for curl");
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}/");
    let output = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--resolve",
            &resolve,
            "--cacert",
        ])
        .arg(&root)
        .args(extra)
        .arg(&url)
        .output()
        .await
        .expect("run curl");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
