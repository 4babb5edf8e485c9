//! Where a git URL given to `deploy --from` points, read the way git and
//! the programs it runs read it.
//!
//! A check of the URL's text (`127.0.0.1`, `localhost`) lets through every
//! other way of writing the same host; this module parses every form git
//! accepts for the transports nap allows (http, https, git, ssh and the
//! scp-like `user@host:path`), finds the host and port git will connect to,
//! and reads the host as an address in every spelling the resolver takes
//! ([`parse_ipv4`], [`parse_ipv6`]). [`check_global`] then says whether an
//! address is on the public internet. Anything that git or curl might read
//! differently from this parser (percent-escapes in a host, a second `@`,
//! backslashes, `?` and `#`) is refused rather than guessed at.
//!
//! Resolving names and pinning the address for the fetch need IO and live
//! in the daemon; this module does none.

mod address;

use std::net::IpAddr;
use std::ops::Range;

pub use address::{
    AddressKind, Network, NetworkError, NotGlobal, check_global, name_is_loopback, parse_ipv4,
    parse_ipv6,
};

/// Longest URL taken: enough for any real repository.
pub const MAX_URL_LEN: usize = 2048;

/// A network transport of git's that nap lets `deploy --from` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `http://`, through curl.
    Http,
    /// `https://`, through curl.
    Https,
    /// `git://`, git's own TCP protocol.
    Git,
    /// `ssh://`, `git+ssh://`, `ssh+git://` and `user@host:path`.
    Ssh,
}

impl Transport {
    /// git's name for it, as `GIT_ALLOW_PROTOCOL` lists it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Https => "https",
            Transport::Git => "git",
            Transport::Ssh => "ssh",
        }
    }

    /// The port a URL without one uses.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Http => 80,
            Transport::Https => 443,
            Transport::Git => 9418,
            Transport::Ssh => 22,
        }
    }
}

/// The host of a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An address, in whatever spelling it was written.
    Address(IpAddr),
    /// A name for the resolver.
    Name(String),
}

/// A network URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    /// How git reaches it.
    pub transport: Transport,
    /// What git connects to.
    pub host: Host,
    /// The host as written, without brackets or zone (`0x7f000001`,
    /// `example.com.`, `::1`): curl looks names up by this text.
    pub host_text: String,
    /// The port, explicit or the transport's default.
    pub port: u16,
    /// Where the host is in the URL, brackets included.
    pub host_span: Range<usize>,
    /// Written as `[user@]host:path` rather than as a URL.
    pub scp_like: bool,
}

impl RemoteUrl {
    /// `url` (the text this was parsed from) with its host replaced by
    /// `address`, so that git connects to that address and nothing else.
    pub fn with_address(&self, url: &str, address: IpAddr) -> String {
        let address = match address {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        format!(
            "{}{address}{}",
            &url[..self.host_span.start],
            &url[self.host_span.end..]
        )
    }
}

/// What a git URL is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitUrl {
    /// A path or `file://` URL: this machine's disk.
    Local,
    /// A repository reached over the network.
    Remote(RemoteUrl),
}

/// Why a text is not a git URL nap takes. The message follows "URL 'X': ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Nothing like a URL.
    #[error("expected a git URL like https://host/repo.git or user@host:repo.git")]
    NotAUrl,
    /// Longer than [`MAX_URL_LEN`].
    #[error("longer than {MAX_URL_LEN} characters")]
    TooLong,
    /// It would read as an option.
    #[error("expected a git URL, not something that starts with '-'")]
    OptionLike,
    /// A character that has no place in a git URL, or that git, curl and
    /// ssh do not read alike.
    #[error("contains {0:?}, which nap does not take in a git URL")]
    Character(char),
    /// `TRANSPORT::ADDRESS`, git's remote helpers (`ext::` runs commands).
    #[error(
        "git's TRANSPORT::ADDRESS remote helpers run programs on this machine and are never allowed"
    )]
    Helper,
    /// A scheme other than the allowed ones.
    #[error(
        "transport '{0}' is not allowed: expected https://, http://, git:// or ssh:// (or user@host:path)"
    )]
    Scheme(String),
    /// A host that is neither a name nor an address.
    #[error("expected a host name, an IPv4 address or an [IPv6] address, not {0:?}")]
    Host(String),
    /// A port that is not one.
    #[error("expected a port from 1 to 65535, not {0:?}")]
    Port(String),
    /// A user name git or ssh could misread.
    #[error("user {0:?}: expected letters, digits, '.', '_' or '-' (not first)")]
    User(String),
    /// git:// has no user.
    #[error("git:// URLs take no user name")]
    NoUserForGit,
    /// More than one `@`: git, curl and ssh split such a host differently.
    #[error("more than one '@' before the host; write an '@' in a password as %40")]
    Ats,
}

/// Parses `url` the way `git fetch` reads it. Local paths and `file://`
/// URLs are [`GitUrl::Local`]; network URLs are parsed down to the host and
/// port that git (or curl, or ssh) will connect to.
pub fn parse_git_url(url: &str) -> Result<GitUrl, UrlError> {
    if url.is_empty() {
        return Err(UrlError::NotAUrl);
    }
    if url.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    if url.starts_with('-') {
        return Err(UrlError::OptionLike);
    }
    if let Some(c) = url
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || *c == '\\')
    {
        return Err(UrlError::Character(c));
    }
    if is_helper(url) {
        return Err(UrlError::Helper);
    }
    if let Some(colon) = url_scheme_end(url) {
        let transport = match &url[..colon] {
            "file" => return Ok(GitUrl::Local),
            "http" => Transport::Http,
            "https" => Transport::Https,
            "git" => Transport::Git,
            "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
            other => return Err(UrlError::Scheme(other.to_owned())),
        };
        return parse_url_form(url, transport, colon + 3).map(GitUrl::Remote);
    }
    // git's rule: a path, unless a ':' comes before the first '/'.
    match (url.find(':'), url.find('/')) {
        (Some(colon), slash) if slash.is_none_or(|slash| colon < slash) => {
            parse_scp_like(url).map(GitUrl::Remote)
        }
        (None, None) => Err(UrlError::NotAUrl),
        _ => Ok(GitUrl::Local),
    }
}

/// `TRANSPORT::ADDRESS` as git's `transport_get` recognises it.
fn is_helper(url: &str) -> bool {
    let bytes = url.as_bytes();
    if !bytes.first().is_some_and(u8::is_ascii_alphabetic) {
        return false;
    }
    let end = bytes
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || b"+-.".contains(b)))
        .unwrap_or(bytes.len());
    url[end..].starts_with("::")
}

/// Where the scheme of `SCHEME://` ends, as git's `is_url` finds it.
fn url_scheme_end(url: &str) -> Option<usize> {
    let colon = url.find(':')?;
    let scheme = &url.as_bytes()[..colon];
    let valid = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b));
    (valid && url[colon..].starts_with("://")).then_some(colon)
}

/// `SCHEME://[USER@]HOST[:PORT]/PATH`.
fn parse_url_form(url: &str, transport: Transport, start: usize) -> Result<RemoteUrl, UrlError> {
    let web = matches!(transport, Transport::Http | Transport::Https);
    if web && let Some(c) = url[start..].chars().find(|c| matches!(c, '?' | '#')) {
        // A query or fragment would be appended to by git; none is needed.
        return Err(UrlError::Character(c));
    }
    let rest = &url[start..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let (user, hostport, offset) = split_user(authority, start)?;
    if let Some(user) = user {
        match transport {
            Transport::Http | Transport::Https => check_userinfo(user)?,
            Transport::Git => return Err(UrlError::NoUserForGit),
            Transport::Ssh => check_ssh_user(user)?,
        }
    }
    // git strips brackets around any host for git:// and ssh; curl takes
    // only IPv6 addresses in them.
    let parsed = split_host_port(hostport, offset, !web)?;
    Ok(RemoteUrl {
        transport,
        port: port(parsed.port, transport)?,
        host: parsed.host,
        host_text: parsed.text,
        host_span: parsed.span,
        scp_like: false,
    })
}

/// `[USER@]HOST:PATH`, `[USER@][IPV6]:PATH` and `[[USER@]HOST:PORT]:PATH`.
fn parse_scp_like(url: &str) -> Result<RemoteUrl, UrlError> {
    let transport = Transport::Ssh;
    let first_colon = url.find(':').unwrap_or(url.len());
    let bracket = match url.find("@[") {
        Some(at) if at < first_colon => Some(at + 1),
        _ if url.starts_with('[') => Some(0),
        _ => None,
    };
    let Some(open) = bracket else {
        // No brackets: the host ends at the first ':'; no port.
        let (user, host, offset) = split_user(&url[..first_colon], 0)?;
        if let Some(user) = user {
            check_ssh_user(user)?;
        }
        let parsed = split_host_port(host, offset, true)?;
        if parsed.port.is_some() {
            return Err(UrlError::Host(host.to_owned()));
        }
        return Ok(RemoteUrl {
            transport,
            port: transport.default_port(),
            host: parsed.host,
            host_text: parsed.text,
            host_span: parsed.span,
            scp_like: true,
        });
    };
    if open > 0 {
        check_ssh_user(&url[..open - 1])?;
    }
    let close = url[open..]
        .find(']')
        .map(|close| open + close)
        .ok_or_else(|| UrlError::Host(url[open..].to_owned()))?;
    if !url[close + 1..].starts_with(':') {
        return Err(UrlError::Host(url[open..].to_owned()));
    }
    let inner = &url[open + 1..close];
    if let Some((v6, _zone)) = parse_ipv6(inner) {
        return Ok(RemoteUrl {
            transport,
            host: Host::Address(IpAddr::V6(v6)),
            host_text: host_text_of_v6(inner),
            port: transport.default_port(),
            host_span: open..close + 1,
            scp_like: true,
        });
    }
    // `[user@host:port]`: git's way of giving a port in this form.
    let (user, hostport, offset) = split_user(inner, open + 1)?;
    match user {
        Some(_) if open > 0 => return Err(UrlError::Ats),
        Some(user) => check_ssh_user(user)?,
        None => {}
    }
    // `[user@::1]`: git hands ssh `user@::1`.
    if let Some((v6, _zone)) = parse_ipv6(hostport) {
        return Ok(RemoteUrl {
            transport,
            host: Host::Address(IpAddr::V6(v6)),
            host_text: host_text_of_v6(hostport),
            port: transport.default_port(),
            host_span: offset..close,
            scp_like: true,
        });
    }
    let parsed = split_host_port(hostport, offset, false)?;
    Ok(RemoteUrl {
        transport,
        port: port(parsed.port, transport)?,
        host: parsed.host,
        host_text: parsed.text,
        host_span: parsed.span,
        scp_like: true,
    })
}

/// `USER@REST` or `REST`, with REST's offset in the URL.
fn split_user(text: &str, offset: usize) -> Result<(Option<&str>, &str, usize), UrlError> {
    match text.match_indices('@').count() {
        0 => Ok((None, text, offset)),
        1 => {
            let (user, rest) = text.split_once('@').expect("one '@' is there");
            Ok((Some(user), rest, offset + user.len() + 1))
        }
        _ => Err(UrlError::Ats),
    }
}

/// A host and its port, as found in an authority.
struct HostPort<'a> {
    host: Host,
    text: String,
    span: Range<usize>,
    port: Option<&'a str>,
}

fn split_host_port(
    text: &str,
    offset: usize,
    names_in_brackets: bool,
) -> Result<HostPort<'_>, UrlError> {
    let bad_host = || UrlError::Host(text.to_owned());
    if let Some(bracketed) = text.strip_prefix('[') {
        let close = bracketed.find(']').ok_or_else(bad_host)?;
        let (inner, after) = (&bracketed[..close], &bracketed[close + 1..]);
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or_else(bad_host)?),
        };
        let (host, host_text) = match parse_ipv6(inner) {
            Some((v6, _zone)) => (Host::Address(IpAddr::V6(v6)), host_text_of_v6(inner)),
            None if names_in_brackets => (plain_host(inner)?, inner.to_owned()),
            None => return Err(bad_host()),
        };
        return Ok(HostPort {
            host,
            text: host_text,
            span: offset..offset + close + 2,
            port,
        });
    }
    let (host_text, port) = match text.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    Ok(HostPort {
        host: plain_host(host_text)?,
        text: host_text.to_owned(),
        span: offset..offset + host_text.len(),
        port,
    })
}

/// An IPv6 host's text without its zone.
fn host_text_of_v6(inner: &str) -> String {
    inner.split('%').next().unwrap_or(inner).to_owned()
}

/// A host outside brackets: an IPv4 address in any spelling, or a name of
/// letters, digits, `-` and `_` in dot-separated labels (a trailing dot
/// allowed). Percent-escapes are refused: git decodes them in git:// and
/// ssh:// URLs and curl in http ones, so `%31%32%37.0.0.1` is 127.0.0.1.
fn plain_host(text: &str) -> Result<Host, UrlError> {
    if let Some(v4) = parse_ipv4(text) {
        return Ok(Host::Address(IpAddr::V4(v4)));
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(Host::Name(text.to_owned()))
    } else {
        Err(UrlError::Host(text.to_owned()))
    }
}

fn port(text: Option<&str>, transport: Transport) -> Result<u16, UrlError> {
    match text {
        // git and curl both take `host:` for the default port.
        None | Some("") => Ok(transport.default_port()),
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0 && text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| UrlError::Port(text.to_owned())),
    }
}

/// An ssh login: nothing ssh could take for an option or split again.
fn check_ssh_user(user: &str) -> Result<(), UrlError> {
    let valid = user
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(UrlError::User(user.to_owned()))
    }
}

/// RFC 3986 userinfo: unreserved characters, sub-delimiters, `:` and
/// percent-escapes.
fn check_userinfo(userinfo: &str) -> Result<(), UrlError> {
    let mut chars = userinfo.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let escaped = chars.next().is_some_and(|c| c.is_ascii_hexdigit())
                && chars.next().is_some_and(|c| c.is_ascii_hexdigit());
            if !escaped {
                return Err(UrlError::Character('%'));
            }
        } else if !(c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:".contains(c)) {
            return Err(UrlError::Character(c));
        }
    }
    Ok(())
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
