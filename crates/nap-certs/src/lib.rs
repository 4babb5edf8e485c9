//! TLS for nap's router: certificates per host, stored in the data
//! directory and checked on upload; the rustls server config that serves
//! them by SNI and picks up a new one at the next handshake; ACME (RFC 8555)
//! orders answered over HTTP-01; and renewal before expiry.
//!
//! **Architecture Invariant:** the only crate of nap that knows rustls,
//! X.509 or ACME. The router sees an [`HttpsAcceptor`] and a [`Challenges`]
//! registry, the daemon a [`CertStore`], an [`Acme`] client and
//! [`renew`]; nothing here knows apps, users or HTTP routing.

mod acme;
mod certificate;
mod challenges;
mod host;
mod record;
mod renewal;
mod store;
mod tls;

pub use acme::{Acme, AcmeError, AcmeOptions, LETS_ENCRYPT_DIRECTORY, describe_error};
pub use certificate::{
    CertificateInfo, CheckError, CheckedCertificate, MAX_CHAIN_LENGTH, MAX_INPUT_BYTES, NotCovered,
};
pub use challenges::{CHALLENGE_PATH_PREFIX, ChallengeLookup, Challenges};
pub use host::{HostName, HostNameError};
pub use record::{Attempt, CertRecord, CertificateRecord, Source, Timestamp};
pub use renewal::{RenewError, renew};
pub use store::{CertStore, CertStoreError, Due, RenewalPolicy};
pub use tls::{
    CertResolver, DEFAULT_HANDSHAKE_TIMEOUT, HandshakeError, HttpsAcceptor, HttpsStream,
    TlsSetupError, server_config,
};
