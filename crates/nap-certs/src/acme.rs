//! Ordering certificates from an ACME server (RFC 8555) with instant-acme,
//! answering HTTP-01 through the [`Challenges`] registry.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier,
    NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use serde::{Deserialize, Serialize};

use crate::certificate::{CheckError, CheckedCertificate};
use crate::challenges::Challenges;
use crate::host::HostName;
use crate::store::CertStore;

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Where and how to order certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeOptions {
    /// The ACME server's directory URL.
    pub directory_url: String,
    /// Contact URIs for the account (`mailto:ops@example.com`); a bare
    /// address gets `mailto:`. May be empty.
    pub contact: Vec<String>,
    /// A PEM file with the one root certificate to trust for the ACME
    /// server's own HTTPS API (a test CA such as pebble's); `None` trusts
    /// the system's roots.
    pub root_certificate: Option<PathBuf>,
    /// How long one order may take, validation included.
    pub timeout: Duration,
    /// How long to wait before asking the server again whether an order is
    /// ready (growing by half each time).
    pub poll_interval: Duration,
}

impl AcmeOptions {
    /// Options for the server at `directory_url`, with the default timing.
    pub fn new(directory_url: impl Into<String>) -> AcmeOptions {
        AcmeOptions {
            directory_url: directory_url.into(),
            contact: Vec::new(),
            root_certificate: None,
            timeout: Duration::from_secs(180),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl Default for AcmeOptions {
    fn default() -> AcmeOptions {
        AcmeOptions::new(LETS_ENCRYPT_DIRECTORY)
    }
}

/// Why no certificate came from the ACME server.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The server could not be reached, or refused the account.
    #[error("ACME server {directory}: {source}")]
    Server {
        /// The directory URL.
        directory: String,
        /// What the client said.
        source: instant_acme::Error,
    },
    /// The root certificate for the server's API could not be read.
    #[error("ACME root certificate {path}: {source}")]
    RootCertificate {
        /// The configured file.
        path: PathBuf,
        /// What the client said.
        source: instant_acme::Error,
    },
    /// The account file could not be read or written.
    #[error(transparent)]
    AccountFile(#[from] nap_store::StoreError),
    /// A step of the order failed (the server refused it or went away).
    #[error("ordering a certificate for {hosts}: {source}")]
    Order {
        /// The hosts of the order.
        hosts: String,
        /// What the client said.
        source: instant_acme::Error,
    },
    /// The server offered no HTTP-01 challenge.
    #[error("the ACME server offers no HTTP-01 challenge for {host}")]
    NoHttp01Challenge {
        /// The host.
        host: String,
    },
    /// An authorization is neither pending nor valid (revoked, expired…).
    #[error("the ACME server's authorization for {host} is {status}")]
    Authorization {
        /// The host.
        host: String,
        /// Its status.
        status: String,
    },
    /// The server could not validate a host over HTTP-01.
    #[error("the ACME server could not validate {}", describe_failures(.failures))]
    Validation {
        /// Each host that failed, with the server's reason.
        failures: Vec<(String, String)>,
    },
    /// The certificate request could not be made.
    #[error("making the certificate request: {0}")]
    Csr(#[source] rcgen::Error),
    /// The server returned something nap cannot serve.
    #[error("the ACME server returned an unusable certificate: {0}")]
    Unusable(#[source] CheckError),
    /// The server returned a certificate for other names.
    #[error("the ACME server returned a certificate that does not cover {host}")]
    NotCovered {
        /// The missing host.
        host: HostName,
    },
    /// The order took longer than [`AcmeOptions::timeout`].
    #[error("ordering a certificate took longer than {0:?}")]
    TimedOut(Duration),
}

fn describe_failures(failures: &[(String, String)]) -> String {
    failures
        .iter()
        .map(|(host, reason)| format!("{host} ({reason})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The account file: the credentials (with the account's private key) and
/// what they were made for, so that a changed directory URL gets a new
/// account instead of a confusing refusal.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory_url: String,
    contact: Vec<String>,
    credentials: AccountCredentials,
}

/// An ACME client for one server and account, answering HTTP-01 through a
/// [`Challenges`] registry. The account is created on first use (its key
/// stored 0600 in the store) and loaded from the store afterwards.
pub struct Acme {
    options: AcmeOptions,
    challenges: Challenges,
    account_file: PathBuf,
    account: tokio::sync::Mutex<Option<Account>>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("options", &self.options)
            .field("account_file", &self.account_file)
            .finish()
    }
}

impl Acme {
    /// A client that keeps its account in `store` and publishes its
    /// challenges in `challenges` (the registry the router answers from).
    /// Nothing is sent before the first order.
    pub fn new(store: &CertStore, options: AcmeOptions, challenges: Challenges) -> Acme {
        // instant-acme builds its HTTPS client on rustls' process-wide
        // provider; make it ring, as everywhere else in nap. An `Err` only
        // says that one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Acme {
            options,
            challenges,
            account_file: store.account_file(),
            account: tokio::sync::Mutex::new(None),
        }
    }

    /// The options this client was made with.
    pub fn options(&self) -> &AcmeOptions {
        &self.options
    }

    /// Orders one certificate for `hosts` (one or more): answers each
    /// host's HTTP-01 challenge, finalizes with a fresh ECDSA P-256 key and
    /// returns the checked chain and key. Nothing is stored; dropping the
    /// future withdraws the challenges.
    pub async fn issue(&self, hosts: &[HostName]) -> Result<CheckedCertificate, AcmeError> {
        match tokio::time::timeout(self.options.timeout, self.issue_unbounded(hosts)).await {
            Ok(result) => result,
            Err(_) => Err(AcmeError::TimedOut(self.options.timeout)),
        }
    }

    async fn issue_unbounded(&self, hosts: &[HostName]) -> Result<CheckedCertificate, AcmeError> {
        let names: Vec<String> = hosts.iter().map(HostName::to_string).collect();
        let order_error = |source| AcmeError::Order {
            hosts: names.join(", "),
            source,
        };
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(order_error)?;

        // The guards keep the challenges answered until this function
        // returns or its future is dropped.
        let mut published = Vec::new();
        let mut tried_and_failed = None;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(order_error)?;
            let host = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => {
                    return Err(AcmeError::Authorization {
                        host,
                        status: format!("{status:?}").to_lowercase(),
                    });
                }
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| AcmeError::NoHttp01Challenge { host: host.clone() })?;
            published.push(self.challenges.publish(
                challenge.token.clone(),
                challenge.key_authorization().as_str().to_owned(),
            ));
            tracing::debug!(%host, "HTTP-01 challenge published");
            match challenge.set_ready().await {
                Ok(()) => {}
                // The server may have tried the challenge before it answered, and then
                // the answer carries the challenge's problem.
                Err(instant_acme::Error::Api(problem)) if is_validation_problem(&problem) => {
                    tried_and_failed = Some(problem_text(&problem));
                    break;
                }
                Err(error) => return Err(order_error(error)),
            }
        }
        if let Some(fallback) = tried_and_failed {
            return Err(validation_failures(&mut order, fallback).await);
        }

        let retry = RetryPolicy::new()
            .initial_delay(self.options.poll_interval)
            .backoff(1.5)
            .timeout(self.options.timeout);
        // An order whose validation failed is `invalid`, and instant-acme
        // returns the order's problem as an error; either way, the
        // challenges say best what went wrong for each host.
        match order.poll_ready(&retry).await {
            Ok(OrderStatus::Ready) => {}
            Ok(status) => {
                let fallback = format!("the order is {status:?}").to_lowercase();
                return Err(validation_failures(&mut order, fallback).await);
            }
            Err(instant_acme::Error::Api(problem)) => {
                return Err(validation_failures(&mut order, problem_text(&problem)).await);
            }
            Err(error) => return Err(order_error(error)),
        }
        drop(published);

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(AcmeError::Csr)?;
        let mut params = CertificateParams::new(names.clone()).map_err(AcmeError::Csr)?;
        params.distinguished_name = DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(AcmeError::Csr)?;
        order.finalize_csr(csr.der()).await.map_err(order_error)?;
        let chain = order.poll_certificate(&retry).await.map_err(order_error)?;

        let pem = format!("{chain}\n{}", key.serialize_pem());
        let certificate = CheckedCertificate::parse(pem.as_bytes(), SystemTime::now())
            .map_err(AcmeError::Unusable)?;
        if let Some(host) = hosts.iter().find(|host| !certificate.covers(host)) {
            return Err(AcmeError::NotCovered { host: host.clone() });
        }
        tracing::info!(
            hosts = %names.join(","),
            not_after = %certificate.info().not_after,
            "certificate issued by ACME"
        );
        Ok(certificate)
    }

    /// The account, loaded or created once and then kept (cheap to clone).
    async fn account(&self) -> Result<Account, AcmeError> {
        let mut cached = self.account.lock().await;
        if let Some(account) = cached.as_ref() {
            return Ok(account.clone());
        }
        let account = self.load_or_create_account().await?;
        *cached = Some(account.clone());
        Ok(account)
    }

    async fn load_or_create_account(&self) -> Result<Account, AcmeError> {
        let directory = self.options.directory_url.clone();
        let server_error = |source| AcmeError::Server {
            directory: directory.clone(),
            source,
        };
        let contact: Vec<String> = self
            .options
            .contact
            .iter()
            .map(|contact| {
                if contact.contains(':') {
                    contact.clone()
                } else {
                    format!("mailto:{contact}")
                }
            })
            .collect();
        let contact_refs: Vec<&str> = contact.iter().map(String::as_str).collect();

        let stored: Option<StoredAccount> = nap_store::read_json(&self.account_file)?;
        if let Some(stored) = stored.filter(|stored| stored.directory_url == directory) {
            let same_contact = stored.contact == contact;
            let account = self
                .builder()?
                .from_credentials(stored.credentials)
                .await
                .map_err(server_error)?;
            if !same_contact {
                account
                    .update_contacts(&contact_refs)
                    .await
                    .map_err(server_error)?;
                if let Some(mut stored) = nap_store::read_json::<StoredAccount>(&self.account_file)?
                {
                    stored.contact = contact;
                    nap_store::write_json(&self.account_file, &stored)?;
                }
            }
            tracing::debug!(%directory, "ACME account loaded");
            return Ok(account);
        }

        // Using nap's automatic certificates is agreeing to the CA's terms,
        // as with Caddy; the README says so where it explains the setting.
        let (account, credentials) = self
            .builder()?
            .create(
                &NewAccount {
                    contact: &contact_refs,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory.clone(),
                None,
            )
            .await
            .map_err(server_error)?;
        nap_store::write_json(
            &self.account_file,
            &StoredAccount {
                directory_url: directory.clone(),
                contact,
                credentials,
            },
        )?;
        tracing::info!(%directory, "ACME account created");
        Ok(account)
    }

    fn builder(&self) -> Result<AccountBuilder, AcmeError> {
        match &self.options.root_certificate {
            Some(path) => {
                Account::builder_with_root(path).map_err(|source| AcmeError::RootCertificate {
                    path: path.clone(),
                    source,
                })
            }
            None => Account::builder().map_err(|source| AcmeError::Server {
                directory: self.options.directory_url.clone(),
                source,
            }),
        }
    }
}

/// A problem's detail, or the problem as the client prints it.
fn problem_text(problem: &instant_acme::Problem) -> String {
    problem
        .detail
        .clone()
        .unwrap_or_else(|| problem.to_string())
}

/// Whether `problem` says that the server tried a challenge and it failed (the
/// validation types of RFC 8555 §6.7), rather than that it refused a request.
fn is_validation_problem(problem: &instant_acme::Problem) -> bool {
    const VALIDATION: [&str; 6] = [
        "caa",
        "connection",
        "dns",
        "incorrectResponse",
        "tls",
        "unauthorized",
    ];
    problem
        .r#type
        .as_deref()
        .and_then(|kind| kind.strip_prefix("urn:ietf:params:acme:error:"))
        .is_some_and(|kind| VALIDATION.contains(&kind))
}

/// Why an order became invalid: each failed challenge's problem, or
/// `fallback` (the order's) for a host whose challenge says nothing.
async fn validation_failures(order: &mut Order, fallback: String) -> AcmeError {
    let mut failures = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let Ok(mut authorization) = authorization else {
            continue;
        };
        if let Err(error) = authorization.refresh().await {
            tracing::debug!(%error, "cannot refresh a failed authorization");
        }
        if authorization.status == AuthorizationStatus::Valid {
            continue;
        }
        let host = authorization.identifier().to_string();
        let reason = authorization
            .challenges
            .iter()
            .find(|challenge| challenge.r#type == ChallengeType::Http01)
            .and_then(|challenge| challenge.error.as_ref())
            .map(|problem| {
                problem
                    .detail
                    .clone()
                    .or_else(|| problem.r#type.clone())
                    .unwrap_or_else(|| "no reason given".to_owned())
            })
            .unwrap_or_else(|| fallback.clone());
        failures.push((host, reason));
    }
    AcmeError::Validation { failures }
}

/// The message of `error` with its causes, for records and logs:
/// `"outer: cause: root cause"`, skipping a cause the text already holds.
pub fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str) -> instant_acme::Problem {
        instant_acme::Problem {
            r#type: Some(format!("urn:ietf:params:acme:error:{kind}")),
            detail: Some("what the server said".to_owned()),
            status: Some(403),
            subproblems: Vec::new(),
        }
    }

    /// A challenge the server tried before answering `set_ready` fails the order as a
    /// validation, with its reason; a refused request stays an order error.
    #[test]
    fn validation_problems_are_told_from_refusals() {
        for kind in [
            "unauthorized",
            "connection",
            "dns",
            "incorrectResponse",
            "tls",
            "caa",
        ] {
            assert!(is_validation_problem(&problem(kind)), "{kind}");
        }
        for kind in ["rateLimited", "malformed", "badNonce", "serverInternal"] {
            assert!(!is_validation_problem(&problem(kind)), "{kind}");
        }
        let untyped = instant_acme::Problem {
            r#type: None,
            ..problem("unauthorized")
        };
        assert!(!is_validation_problem(&untyped));
        assert_eq!(problem_text(&problem("dns")), "what the server said");
    }
}
