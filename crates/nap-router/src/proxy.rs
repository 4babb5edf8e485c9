//! What every request needs besides its connection: the router's settings, who the
//! client is, and what a request's Host leads to. Both protocols' paths (`h1` for
//! HTTP/1.x, `h2` for HTTP/2) route through here, so they answer alike.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::StatusCode;
use hyper::header::HeaderValue;
use nap_certs::Challenges;

use crate::table::{App, Table};
use crate::{Options, headers, host};

/// The page of a redirect to HTTPS when there is no HTTPS listener to go to.
pub(crate) const NO_HTTPS: &str =
    "503 Service Unavailable: this host is served over HTTPS only, and HTTPS is off\n";

/// The router's settings: what every request needs besides the routes.
pub(crate) struct Proxy {
    domain: String,
    pub(crate) connect_timeout: Duration,
    /// How long a client may take to send a request head (HTTP/1.x).
    pub(crate) header_read_timeout: Duration,
    /// See [`Options::body_timeout`].
    pub(crate) body_timeout: Duration,
    pub(crate) retry_body_limit: u64,
    /// The ACME HTTP-01 challenges to answer on plain HTTP.
    pub(crate) challenges: Option<Challenges>,
    /// The port of the HTTPS listener, for redirects; `None` without one.
    https_port: Option<u16>,
}

/// What a request's Host leads to; names live as long as `'n`, the app `'t`.
pub(crate) enum Target<'n, 't> {
    /// This app (its name, for messages and the log).
    App(Cow<'n, str>, &'t App),
    /// A custom host whose app wants HTTPS, asked over plain HTTP.
    Redirect(Cow<'n, str>),
    /// `APP.<domain>` of no app.
    NoSuchApp(Cow<'n, str>),
    /// Nothing the router serves.
    Nothing,
}

impl Target<'_, '_> {
    /// The app's name for the log line; `-` for no app.
    pub(crate) fn app_name(&self) -> &str {
        match self {
            Target::App(name, _) => name,
            _ => "-",
        }
    }
}

/// Who is at the other end of a client connection, worked out once per
/// connection rather than per request.
pub(crate) struct Client {
    pub(crate) addr: SocketAddr,
    /// The client's address as it goes into `X-Forwarded-For`.
    pub(crate) forwarded_for: HeaderValue,
    /// `X-Forwarded-Proto`: how the client reached the router.
    pub(crate) proto: HeaderValue,
    /// Whether it came over TLS.
    pub(crate) https: bool,
}

impl Client {
    /// A client that connected from `addr`, over TLS if `https`.
    pub(crate) fn new(addr: SocketAddr, https: bool) -> Client {
        Client {
            addr,
            forwarded_for: headers::forwarded_for_value(addr.ip()),
            proto: HeaderValue::from_static(if https { "https" } else { "http" }),
            https,
        }
    }
}

impl Proxy {
    /// The proxy for `options`; `https_port` is the HTTPS listener's port, if there is
    /// one, which redirects to HTTPS name.
    pub(crate) fn new(options: &Options, https_port: Option<u16>) -> Proxy {
        Proxy {
            domain: host::normalise_domain(&options.domain),
            connect_timeout: options.connect_timeout,
            header_read_timeout: options.header_read_timeout,
            body_timeout: options.body_timeout,
            retry_body_limit: u64::try_from(options.retry_body_limit).unwrap_or(u64::MAX),
            challenges: options.challenges.clone(),
            https_port,
        }
    }

    /// Where a 308 for `host` and `path` (with its query) sends the client: the same
    /// host and path on the HTTPS listener's port. `None` without an HTTPS listener.
    pub(crate) fn redirect_location(&self, host: &str, path: &str) -> Option<String> {
        let port = self.https_port?;
        Some(if port == 443 {
            format!("https://{host}{path}")
        } else {
            format!("https://{host}:{port}{path}")
        })
    }

    /// What a request with Host `host` (as text, if it is text) leads to in `table`;
    /// `https` if it came over TLS.
    pub(crate) fn target<'n, 't: 'n>(
        &self,
        table: &'t Table,
        host: Option<&'n str>,
        https: bool,
    ) -> Target<'n, 't> {
        let name = host.and_then(|text| host::app_name(text, &self.domain));
        // `APP.<domain>` first, the usual case and one lookup; custom hosts after.
        if let Some(name) = name.as_ref()
            && let Some(app) = table.app(name)
        {
            return Target::App(name.clone(), app);
        }
        let custom = host.and_then(host::custom_host);
        match custom
            .as_ref()
            .and_then(|custom| Some((custom, table.host(custom)?)))
        {
            Some((custom, (found, _))) if found.https_redirect && !https => {
                Target::Redirect(custom.clone())
            }
            Some((_, (found, app))) => Target::App(Cow::Borrowed(&found.app), app),
            None => name.map_or(Target::Nothing, Target::NoSuchApp),
        }
    }

    /// The status and page of a target that is not forwarded (not an app, or a
    /// redirect).
    pub(crate) fn refusal(&self, target: &Target<'_, '_>) -> (StatusCode, String) {
        match target {
            Target::NoSuchApp(name) => (
                StatusCode::NOT_FOUND,
                format!("404 Not Found: no app named {name}\n"),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                format!(
                    "404 Not Found: no app here; apps are at http://APP.{}/\n",
                    self.domain
                ),
            ),
        }
    }
}

/// An optional address for the log: the address or `-`.
pub(crate) struct Optional(pub(crate) Option<SocketAddr>);

impl fmt::Display for Optional {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}
