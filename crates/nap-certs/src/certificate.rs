//! Reading and checking a certificate chain with its private key: what
//! `certs:add` is given on stdin, what ACME returns, and what the store
//! reads back.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_cert::Certificate;
use x509_cert::der::Decode as _;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};

use crate::host::{HostName, name_covers};
use crate::record::Timestamp;
use crate::tls::provider;

/// The most a chain and key may weigh. Real ones are a few kilobytes; the
/// cap keeps a hostile upload from costing memory.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

/// The most certificates a chain may hold (leaf and intermediates).
pub const MAX_CHAIN_LENGTH: usize = 10;

const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");

/// Why a certificate chain and key were refused. Each says what is wrong and
/// what nap expected instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("the input is {size} bytes; a certificate chain and its key fit in {limit} bytes")]
    TooLarge {
        /// How large it was.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A PEM block is broken (bad base64, no END line).
    #[error("the input is not valid PEM: {0}")]
    Pem(String),
    /// There is no `CERTIFICATE` block.
    #[error(
        "no certificate in the input: expected PEM blocks '-----BEGIN CERTIFICATE-----', \
         the server's certificate first, then its intermediates, then the private key"
    )]
    NoCertificate,
    /// There is no private key block.
    #[error(
        "no private key in the input: expected a PEM block '-----BEGIN PRIVATE KEY-----' \
         (or 'RSA PRIVATE KEY', 'EC PRIVATE KEY') after the certificates"
    )]
    NoKey,
    /// The key is encrypted with a passphrase.
    #[error(
        "the private key is encrypted; decrypt it first, for example with \
         `openssl pkey -in key.pem -out key-plain.pem`"
    )]
    EncryptedKey,
    /// More than one private key.
    #[error("the input holds {count} private keys; give only the key of the first certificate")]
    SeveralKeys {
        /// How many keys there were.
        count: usize,
    },
    /// Longer than [`MAX_CHAIN_LENGTH`].
    #[error("the input holds {count} certificates; at most {limit} are accepted")]
    TooManyCertificates {
        /// How many there were.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A `CERTIFICATE` block does not hold an X.509 certificate.
    #[error("certificate {position} of the input is not a valid X.509 certificate: {reason}")]
    BadCertificate {
        /// 1 for the first certificate of the input.
        position: usize,
        /// What the parser said.
        reason: String,
    },
    /// Certificate `position` was not issued by the one after it.
    #[error(
        "certificate {next} of the input is not the issuer of certificate {position}: \
         give the server's certificate first, then each intermediate in order"
    )]
    ChainOutOfOrder {
        /// The certificate whose issuer does not follow it (1-based).
        position: usize,
        /// The one that follows it.
        next: usize,
    },
    /// rustls cannot sign with the key.
    #[error(
        "the private key cannot be used: {reason}; nap accepts RSA (2048 to 8192 bits), \
         ECDSA P-256 or P-384, and Ed25519 keys"
    )]
    UnsupportedKey {
        /// What rustls said.
        reason: String,
    },
    /// The key is not the one of the first certificate.
    #[error(
        "the private key does not match the certificate (the key must belong to the first \
         certificate of the input, the server's own)"
    )]
    KeyMismatch,
    /// Past the certificate's not-after date.
    #[error("the certificate expired on {not_after}")]
    Expired {
        /// When it expired.
        not_after: Timestamp,
    },
    /// Before the certificate's not-before date.
    #[error("the certificate is not valid yet: it is valid from {not_before}")]
    NotYetValid {
        /// When it becomes valid.
        not_before: Timestamp,
    },
    /// No DNS subjectAltName.
    #[error(
        "the certificate names no DNS host (it has no DNS subjectAltName; browsers ignore \
         the common name)"
    )]
    NoDnsNames,
    /// An extended key usage without serverAuth.
    #[error("the certificate is not for TLS servers: its extended key usage lacks serverAuth")]
    NotForServers,
}

/// None of the hosts asked about is covered by the certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the certificate is for {}, which covers none of {}",
    .names.join(", "),
    .hosts.iter().map(HostName::as_str).collect::<Vec<_>>().join(", ")
)]
pub struct NotCovered {
    /// The certificate's DNS names.
    pub names: Vec<String>,
    /// The hosts that were asked about.
    pub hosts: Vec<HostName>,
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Its DNS subjectAltNames, lower case, in order (wildcards as `*.example.com`).
    pub names: Vec<String>,
    /// Its subject (RFC 4514).
    pub subject: String,
    /// Its issuer (RFC 4514), like `CN=R11,O=Let's Encrypt,C=US`.
    pub issuer: String,
    /// Its serial number, hex bytes separated by colons.
    pub serial: String,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until.
    pub not_after: Timestamp,
}

impl CertificateInfo {
    /// Whether the certificate is valid for `host` by name (exactly or by a
    /// one-label wildcard).
    pub fn covers(&self, host: &HostName) -> bool {
        self.names.iter().any(|name| name_covers(name, host))
    }
}

/// A certificate chain with its matching private key, checked: the leaf comes
/// first, each certificate is followed by its issuer, the key belongs to the
/// leaf and rustls can sign with it, the leaf names DNS hosts and may serve
/// TLS. Ready to store and to serve.
#[derive(Debug)]
pub struct CheckedCertificate {
    info: CertificateInfo,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    certified_key: Arc<CertifiedKey>,
}

impl CheckedCertificate {
    /// Checks an upload: PEM text holding the chain (the server's certificate
    /// first, then intermediates) and the private key, in any order of
    /// blocks; the leaf must be valid at `now`. Other PEM blocks and text
    /// between blocks are ignored.
    pub fn parse(pem_text: &[u8], now: SystemTime) -> Result<CheckedCertificate, CheckError> {
        let checked = CheckedCertificate::parse_any_time(pem_text)?;
        checked.check_valid_at(now)?;
        Ok(checked)
    }

    /// Everything [`parse`](Self::parse) checks except the dates: the store
    /// reads back a certificate that may have expired since, and still
    /// serves it rather than none.
    pub(crate) fn parse_any_time(pem_text: &[u8]) -> Result<CheckedCertificate, CheckError> {
        if pem_text.len() > MAX_INPUT_BYTES {
            return Err(CheckError::TooLarge {
                size: pem_text.len(),
                limit: MAX_INPUT_BYTES,
            });
        }
        let (chain, key) = read_pem(pem_text)?;
        let parsed = chain
            .iter()
            .enumerate()
            .map(|(index, der)| {
                Certificate::from_der(der).map_err(|error| CheckError::BadCertificate {
                    position: index + 1,
                    reason: error.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (index, pair) in parsed.windows(2).enumerate() {
            if pair[0].tbs_certificate().issuer() != pair[1].tbs_certificate().subject() {
                return Err(CheckError::ChainOutOfOrder {
                    position: index + 1,
                    next: index + 2,
                });
            }
        }
        let info = describe(&parsed[0])?;
        let signing_key = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|error| CheckError::UnsupportedKey {
                reason: error.to_string(),
            })?;
        let certified_key = CertifiedKey::new(chain.clone(), signing_key);
        // ring's keys all know their public key, so a mismatch is always
        // detected; an "unknown" answer is refused rather than trusted.
        certified_key
            .keys_match()
            .map_err(|_| CheckError::KeyMismatch)?;
        Ok(CheckedCertificate {
            info,
            chain,
            key,
            certified_key: Arc::new(certified_key),
        })
    }

    /// Refuses a certificate that is not valid at `now`.
    pub fn check_valid_at(&self, now: SystemTime) -> Result<(), CheckError> {
        if now < self.info.not_before.system_time() {
            return Err(CheckError::NotYetValid {
                not_before: self.info.not_before,
            });
        }
        if now >= self.info.not_after.system_time() {
            return Err(CheckError::Expired {
                not_after: self.info.not_after,
            });
        }
        Ok(())
    }

    /// What the leaf certificate says.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// Whether the certificate is valid for `host` by name.
    pub fn covers(&self, host: &HostName) -> bool {
        self.info.covers(host)
    }

    /// Those of `hosts` the certificate covers, in their order; refused when
    /// it covers none of them. `certs:add APP` passes the app's hosts and
    /// stores the certificate for each host returned.
    pub fn covered_hosts(&self, hosts: &[HostName]) -> Result<Vec<HostName>, NotCovered> {
        let covered: Vec<HostName> = hosts
            .iter()
            .filter(|host| self.covers(host))
            .cloned()
            .collect();
        if covered.is_empty() {
            return Err(NotCovered {
                names: self.info.names.clone(),
                hosts: hosts.to_vec(),
            });
        }
        Ok(covered)
    }

    /// The chain as PEM, leaf first, re-encoded (comments and other blocks of
    /// the input are gone).
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|der| encode_pem("CERTIFICATE", der))
            .collect()
    }

    /// The private key as PEM, in the encoding it came in.
    pub(crate) fn key_pem(&self) -> String {
        let label = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        encode_pem(label, self.key.secret_der())
    }

    /// The chain and key as rustls serves them.
    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.certified_key)
    }
}

/// Splits PEM text into the certificates (in order) and the one private key.
fn read_pem(
    pem_text: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CheckError> {
    let mut chain = Vec::new();
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem_text) {
        let (kind, der) = section.map_err(|error| CheckError::Pem(describe_pem_error(&error)))?;
        match kind {
            SectionKind::Certificate => chain.push(CertificateDer::from(der)),
            SectionKind::PrivateKey => keys.push(PrivateKeyDer::Pkcs8(der.into())),
            SectionKind::RsaPrivateKey => keys.push(PrivateKeyDer::Pkcs1(der.into())),
            SectionKind::EcPrivateKey => keys.push(PrivateKeyDer::Sec1(der.into())),
            _ => {}
        }
    }
    if chain.is_empty() {
        return Err(CheckError::NoCertificate);
    }
    if chain.len() > MAX_CHAIN_LENGTH {
        return Err(CheckError::TooManyCertificates {
            count: chain.len(),
            limit: MAX_CHAIN_LENGTH,
        });
    }
    // The PEM reader skips blocks it does not know, such as an encrypted
    // key; say what it was instead of "no key".
    let encrypted = contains(pem_text, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(pem_text, b"Proc-Type: 4,ENCRYPTED");
    match keys.len() {
        0 if encrypted => Err(CheckError::EncryptedKey),
        0 => Err(CheckError::NoKey),
        1 => Ok((chain, keys.remove(0))),
        count => Err(CheckError::SeveralKeys { count }),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// pki-types' errors quote whole lines as bytes; say it in words.
fn describe_pem_error(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "the block '{}' has no END line",
            String::from_utf8_lossy(end_marker).escape_default()
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "malformed BEGIN line '{}'",
            String::from_utf8_lossy(line).trim_end().escape_default()
        ),
        pem::Error::Base64Decode(_) => "a block is not valid base64".to_owned(),
        other => other.to_string(),
    }
}

/// Reads what a leaf says about itself, refusing one nap could not serve.
fn describe(leaf: &Certificate) -> Result<CertificateInfo, CheckError> {
    let tbs = leaf.tbs_certificate();
    let bad = |reason: String| CheckError::BadCertificate {
        position: 1,
        reason,
    };
    let mut names = Vec::new();
    if let Some((_, alt_names)) = tbs
        .get_extension::<SubjectAltName>()
        .map_err(|error| bad(format!("subjectAltName: {error}")))?
    {
        for name in alt_names.0 {
            if let GeneralName::DnsName(dns) = name {
                names.push(
                    dns.as_str()
                        .escape_default()
                        .to_string()
                        .to_ascii_lowercase(),
                );
            }
        }
    }
    if names.is_empty() {
        return Err(CheckError::NoDnsNames);
    }
    if let Some((_, usages)) = tbs
        .get_extension::<ExtendedKeyUsage>()
        .map_err(|error| bad(format!("extended key usage: {error}")))?
        && !usages
            .0
            .iter()
            .any(|usage| *usage == SERVER_AUTH || *usage == ANY_EXTENDED_KEY_USAGE)
    {
        return Err(CheckError::NotForServers);
    }
    Ok(CertificateInfo {
        names,
        subject: tbs.subject().to_string(),
        issuer: tbs.issuer().to_string(),
        serial: tbs.serial_number().to_string(),
        not_before: Timestamp::new(tbs.validity().not_before.to_system_time()),
        not_after: Timestamp::new(tbs.validity().not_after.to_system_time()),
    })
}

/// PEM as OpenSSL writes it: base64 in lines of 64 characters.
fn encode_pem(label: &str, der: &[u8]) -> String {
    let base64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in base64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}
