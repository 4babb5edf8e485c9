//! Renewing a certificate: order a new one and replace the stored one only
//! when that succeeded.

use std::time::SystemTime;

use crate::acme::{Acme, AcmeError, describe_error};
use crate::host::HostName;
use crate::record::{CertRecord, Source};
use crate::store::{CertStore, CertStoreError};

/// Why a renewal failed. The certificate that was served before is still
/// stored and served.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// No certificate came from the ACME server; the failure is recorded in
    /// the host's `cert.json`.
    #[error("renewing the certificate of {host}: {source}")]
    Acme {
        /// The host.
        host: HostName,
        /// Why.
        source: AcmeError,
    },
    /// The new certificate, or the record of a failure, could not be
    /// written.
    #[error("renewing the certificate of {host}: {source}")]
    Store {
        /// The host.
        host: HostName,
        /// Why.
        source: CertStoreError,
    },
}

/// Orders a certificate for `host` and stores it in place of the current one
/// (uploaded or from ACME), which is served until the new one is stored.
/// Also how a host gets its first certificate. Every attempt is recorded in
/// the host's record at `now`: a success with the new certificate, a
/// failure with its message beside the old certificate.
pub async fn renew(
    store: &CertStore,
    acme: &Acme,
    host: &HostName,
    now: SystemTime,
) -> Result<CertRecord, RenewError> {
    match acme.issue(std::slice::from_ref(host)).await {
        Ok(certificate) => store
            .save(host, &certificate, Source::Acme, now)
            .map_err(|source| RenewError::Store {
                host: host.clone(),
                source,
            }),
        Err(source) => {
            let message = describe_error(&source);
            tracing::warn!(%host, error = %message, "certificate renewal failed");
            if let Err(error) = store.record_failure(host, now, &message) {
                // The renewal's own error is the one to report; this one
                // only means the record says less than it should.
                tracing::warn!(%host, %error, "renewal failure not recorded");
            }
            Err(RenewError::Acme {
                host: host.clone(),
                source,
            })
        }
    }
}
