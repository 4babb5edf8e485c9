//! The JSON record kept beside each stored certificate (`cert.json`), made
//! for operators to read with `cat`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x509_cert::der::DateTime;

/// A point in time, shown and stored as RFC 3339 UTC with seconds
/// (`2025-03-01T12:00:00Z`), the resolution of X.509 validity dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(SystemTime);

impl Timestamp {
    /// The timestamp of `time`, cut to whole seconds.
    pub fn new(time: SystemTime) -> Timestamp {
        let seconds = time
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or(0);
        Timestamp(UNIX_EPOCH + std::time::Duration::from_secs(seconds))
    }

    /// The same moment as a `SystemTime`.
    pub fn system_time(self) -> SystemTime {
        self.0
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Timestamp {
        Timestamp::new(time)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::from_system_time(self.0) {
            Ok(date) => write!(f, "{date}"),
            // Past 9999 or before 1970: not a date X.509 can express; show
            // the seconds rather than nothing.
            Err(_) => write!(
                f,
                "{} seconds after 1970",
                self.0
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            ),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let date: DateTime = text.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid time '{text}': expected RFC 3339 UTC like 2025-03-01T12:00:00Z"
            ))
        })?;
        Ok(Timestamp(date.to_system_time()))
    }
}

/// Where a stored certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Given by a user (`certs:add`).
    Uploaded,
    /// Ordered from the ACME server by nap.
    Acme,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Source::Uploaded => "uploaded",
            Source::Acme => "acme",
        })
    }
}

/// What `cert.json` says about one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// The host the entry is for.
    pub host: String,
    /// The certificate served for the host; `None` while nap has tried to
    /// order one and not succeeded yet (see `last_attempt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateRecord>,
    /// The last time nap ordered a certificate for the host from ACME, and
    /// how that went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<Attempt>,
}

/// The certificate of a [`CertRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// Uploaded or ordered.
    pub source: Source,
    /// The DNS names the certificate is for (its subjectAltNames).
    pub names: Vec<String>,
    /// Who signed it (RFC 4514, like `CN=R11,O=Let's Encrypt,C=US`).
    pub issuer: String,
    /// Its serial number, hex bytes separated by colons.
    pub serial: String,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until.
    pub not_after: Timestamp,
    /// When nap stored it.
    pub stored_at: Timestamp,
}

/// One attempt to order a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started.
    pub at: Timestamp,
    /// Why it failed; `None` when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_both_ways() {
        let time = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let stamp = Timestamp::new(time + std::time::Duration::from_millis(999));
        assert_eq!(stamp.to_string(), "2023-11-14T22:13:20Z");
        let json = serde_json::to_string(&stamp).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20Z\"");
        let back: Timestamp = serde_json::from_str(&json).unwrap();
        assert_eq!(back.system_time(), time);
        let error = serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err();
        assert!(
            error.to_string().contains("invalid time 'yesterday'"),
            "{error}"
        );
    }
}
