//! What `deploy NEW --from URL` may reach: a non-admin's URL must lead to
//! the public internet only, never to this machine, its private networks or
//! a cloud's metadata service.
//!
//! The URL is parsed by [`nap_core::remote`] down to the host git will
//! connect to. For a non-admin, an address is checked as it is; a name is
//! resolved here and refused if *any* of its addresses is not global. The
//! addresses checked are then [`Pin`]ned for the fetch (git_exec.rs makes
//! git connect to them and nothing else), so a second DNS answer, given to
//! git a moment later, cannot differ from the one checked. Admins keep
//! every transport git allows here, local paths included, unchecked.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use nap_core::remote::{
    self, GitUrl, Host, Network, NotGlobal, RemoteUrl, UrlError, check_global, name_is_loopback,
};

/// Longest a name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a URL that passed the check is, and how the fetch must reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Checked {
    /// A path or `file://` URL (admins only).
    Local,
    /// A network URL.
    Remote {
        /// The URL, parsed.
        url: RemoteUrl,
        /// The addresses checked, which the fetch must use and nothing
        /// else; `None` for an admin, whose URL is not checked.
        pin: Option<Pin>,
    },
}

/// The checked addresses of a URL's host, all global.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pin {
    /// At least one, in the resolver's order.
    pub(crate) addresses: Vec<IpAddr>,
}

/// Why `deploy --from` refuses a URL. The text is the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a git URL nap takes.
    Syntax {
        /// The URL as it may be shown.
        shown: String,
        /// What is wrong.
        error: UrlError,
    },
    /// A local path or `file://` URL from a non-admin.
    Local {
        /// The URL as it may be shown.
        shown: String,
    },
    /// The host is, or resolves to, an address that is not global.
    NotGlobal {
        /// The URL as it may be shown.
        shown: String,
        /// The name that resolved to it, if the host was one.
        name: Option<String>,
        /// The address.
        address: IpAddr,
        /// What it is.
        why: NotGlobal,
    },
    /// `localhost` or a name under it.
    LoopbackName {
        /// The URL as it may be shown.
        shown: String,
        /// The name.
        name: String,
    },
    /// The name does not resolve (in time).
    Unresolvable {
        /// The URL as it may be shown.
        shown: String,
        /// The name.
        name: String,
        /// What the resolver said.
        reason: String,
    },
}

const ONLY_ADMINS: &str = "only admins may deploy from this machine's or private networks";

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Syntax { shown, error } => write!(f, "deploy --from: URL '{shown}': {error}"),
            Refused::Local { shown } => write!(
                f,
                "deploy --from: {shown}: local paths and file:// URLs are for admins only"
            ),
            Refused::NotGlobal {
                shown,
                name: None,
                address,
                why,
            } => write!(
                f,
                "deploy --from: {shown} is {address}, {why}; {ONLY_ADMINS}"
            ),
            Refused::NotGlobal {
                shown,
                name: Some(name),
                address,
                why,
            } => write!(
                f,
                "deploy --from: {shown}: {name} resolves to {address}, {why}; {ONLY_ADMINS}"
            ),
            Refused::LoopbackName { shown, name } => write!(
                f,
                "deploy --from: {shown}: {name} is this machine (a loopback name); {ONLY_ADMINS}"
            ),
            Refused::Unresolvable {
                shown,
                name,
                reason,
            } => write!(f, "deploy --from: {shown}: cannot resolve {name}: {reason}"),
        }
    }
}

/// Checks `url` (shown in messages as `shown`, without its password) for a
/// caller who is an admin or not; a non-admin's names are resolved. An
/// address in one of `allowed` (the operator's `deploy_from_networks`)
/// passes although it is not global.
pub(crate) async fn check(
    url: &str,
    shown: &str,
    admin: bool,
    allowed: &[Network],
) -> Result<Checked, Refused> {
    check_with(url, shown, admin, allowed, |name, port| async move {
        let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
            .await
            .map_err(|_| format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs()))?
            .map_err(|e| e.to_string())?;
        Ok(found.map(|address| address.ip()).collect())
    })
    .await
}

/// [`check`] with the resolver given: `resolve(name, port)` answers every
/// address of `name`.
pub(crate) async fn check_with<R, F>(
    url: &str,
    shown: &str,
    admin: bool,
    allowed: &[Network],
    resolve: R,
) -> Result<Checked, Refused>
where
    R: FnOnce(String, u16) -> F,
    F: Future<Output = Result<Vec<IpAddr>, String>>,
{
    let shown = shown.escape_debug().to_string();
    // Global, or in a network the operator lets non-admins reach.
    let permitted = |address: IpAddr| {
        check_global(address).or_else(|why| {
            if allowed.iter().any(|network| network.contains(address)) {
                Ok(())
            } else {
                Err(why)
            }
        })
    };
    let parsed = remote::parse_git_url(url).map_err(|error| Refused::Syntax {
        shown: shown.clone(),
        error,
    })?;
    let url = match parsed {
        GitUrl::Local if admin => return Ok(Checked::Local),
        GitUrl::Local => return Err(Refused::Local { shown }),
        GitUrl::Remote(url) if admin => return Ok(Checked::Remote { url, pin: None }),
        GitUrl::Remote(url) => url,
    };
    let addresses = match &url.host {
        Host::Address(address) => {
            permitted(*address).map_err(|why| Refused::NotGlobal {
                shown: shown.clone(),
                name: None,
                address: *address,
                why,
            })?;
            vec![*address]
        }
        Host::Name(name) => {
            if name_is_loopback(name) {
                return Err(Refused::LoopbackName {
                    shown,
                    name: name.clone(),
                });
            }
            let unresolvable = |reason: String| Refused::Unresolvable {
                shown: shown.clone(),
                name: name.clone(),
                reason,
            };
            let mut addresses = resolve(name.clone(), url.port)
                .await
                .map_err(unresolvable)?;
            // The kernel connects to a mapped address's IPv4 one; the
            // pin says so plainly.
            for address in &mut addresses {
                *address = address.to_canonical();
            }
            addresses.dedup();
            if addresses.is_empty() {
                return Err(unresolvable("no address".to_owned()));
            }
            // Any one address that is not global refuses the name: the
            // fetch may try each of them.
            for address in &addresses {
                permitted(*address).map_err(|why| Refused::NotGlobal {
                    shown: shown.clone(),
                    name: Some(name.clone()),
                    address: *address,
                    why,
                })?;
            }
            addresses
        }
    };
    Ok(Checked::Remote {
        url,
        pin: Some(Pin { addresses }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> Vec<&'static str> {
        vec!["8.8.4.4"]
    }

    async fn non_admin(url: &str, answer: Vec<&str>) -> Result<Checked, Refused> {
        let answer: Vec<IpAddr> = answer.iter().map(|a| a.parse().unwrap()).collect();
        check_with(url, url, false, &[], |_, _| async move { Ok(answer) }).await
    }

    #[tokio::test]
    async fn every_spelling_of_this_machine_is_refused_with_the_address() {
        for (url, message) in [
            (
                "http://0x7f000001:8080/",
                "deploy --from: http://0x7f000001:8080/ is 127.0.0.1, a loopback address; only admins may deploy from this machine's or private networks",
            ),
            ("http://2130706433:8080/", "is 127.0.0.1, a loopback"),
            ("http://0177.0.0.1:8080/", "is 127.0.0.1, a loopback"),
            ("http://127.1:8080/", "is 127.0.0.1, a loopback"),
            ("http://0:8080/", "is 0.0.0.0, the unspecified address"),
            ("http://[::1]:8080/", "is ::1, a loopback"),
            (
                "http://[::ffff:127.0.0.1]:8080/",
                "is ::ffff:127.0.0.1, which is 127.0.0.1, a loopback",
            ),
            (
                "https://[::ffff:7f00:1]/r",
                "is ::ffff:127.0.0.1, which is 127.0.0.1, a loopback",
            ),
            ("http://169.254.169.254/latest/", "a link-local address"),
            ("git://10.1.2.3/r", "is 10.1.2.3, a private address"),
            ("ssh://git@[fd00::1]/r", "is fd00::1, a private address"),
            ("git@100.64.0.1:r", "a shared (carrier-grade NAT) address"),
            ("http://LOCALHOST:8080/", "LOCALHOST is this machine"),
            ("http://localhost.:8080/", "localhost. is this machine"),
            ("http://app.localhost/", "app.localhost is this machine"),
        ] {
            let refused = non_admin(url, public()).await.unwrap_err().to_string();
            assert!(refused.contains(message), "{url}: {refused}");
            assert!(refused.ends_with(ONLY_ADMINS), "{url}: {refused}");
        }
    }

    #[tokio::test]
    async fn a_name_is_refused_if_any_address_is_not_global() {
        let refused = non_admin("https://evil.example/r", vec!["8.8.4.4", "10.0.0.7"])
            .await
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "deploy --from: https://evil.example/r: evil.example resolves to 10.0.0.7, a private address; {ONLY_ADMINS}"
            )
        );
        let refused = non_admin("https://evil.example/r", vec!["::ffff:169.254.169.254"])
            .await
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("resolves to 169.254.169.254, a link-local address"),
            "{refused}"
        );
        let refused = non_admin("https://evil.example/r", vec![])
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("cannot resolve evil.example"));
    }

    #[tokio::test]
    async fn global_hosts_pass_with_their_addresses_pinned() {
        let Ok(Checked::Remote { url, pin }) = non_admin(
            "https://repo.example/r",
            vec!["198.51.99.1", "2606:4700::1"],
        )
        .await
        else {
            panic!("refused");
        };
        assert_eq!(url.host, Host::Name("repo.example".into()));
        let pinned: Vec<IpAddr> = ["198.51.99.1", "2606:4700::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(pin, Some(Pin { addresses: pinned }));
        let Ok(Checked::Remote { pin, .. }) = non_admin("git://8.8.8.8/r", vec![]).await else {
            panic!("refused");
        };
        assert_eq!(
            pin,
            Some(Pin {
                addresses: vec!["8.8.8.8".parse().unwrap()]
            })
        );
    }

    #[tokio::test]
    async fn admins_keep_their_rights_and_are_not_resolved() {
        for url in [
            "http://0x7f000001:8080/",
            "http://localhost:8080/",
            "git://10.0.0.1/r",
            "file:///srv/r.git",
            "/srv/r.git",
        ] {
            let checked = check_with(url, url, true, &[], |_, _| async {
                Err::<Vec<IpAddr>, _>("resolved".to_owned())
            })
            .await;
            assert!(
                matches!(
                    checked,
                    Ok(Checked::Local | Checked::Remote { pin: None, .. })
                ),
                "{url}: {checked:?}"
            );
        }
        assert!(matches!(
            non_admin("file:///srv/r.git", public()).await,
            Err(Refused::Local { .. })
        ));
        assert!(matches!(
            check_with("ext::sh", "ext::sh", true, &[], |_, _| async {
                Ok(vec!["8.8.4.4".parse().unwrap()])
            })
            .await,
            Err(Refused::Syntax { .. })
        ));
    }

    /// The real resolver: `localhost` and this machine's own name.
    #[tokio::test]
    async fn names_of_this_machine_are_refused() {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .expect("the kernel names this machine")
            .trim()
            .to_owned();
        // A name the machine answers itself (/etc/hosts): no DNS query
        // leaves it. It is this machine, on loopback or a private network.
        let url = format!("http://{hostname}:8080/");
        let refused = check(&url, &url, false, &[]).await.unwrap_err().to_string();
        assert!(
            refused.contains(&format!("{hostname} resolves to ")) && refused.ends_with(ONLY_ADMINS),
            "{refused}"
        );
        let refused = check("http://localhost/", "http://localhost/", false, &[])
            .await
            .unwrap_err();
        assert!(matches!(refused, Refused::LoopbackName { .. }));
    }

    /// The operator's `deploy_from_networks`: an address in one passes and is
    /// pinned; every other non-global address, and `localhost`, is still refused.
    #[tokio::test]
    async fn networks_the_operator_allows_pass_and_nothing_else() {
        let allowed: Vec<Network> = vec!["10.20.0.0/16".parse().unwrap()];
        let answer = |addresses: &'static [&'static str]| {
            move |_, _| async move {
                Ok::<Vec<IpAddr>, String>(addresses.iter().map(|a| a.parse().unwrap()).collect())
            }
        };
        let Ok(Checked::Remote { pin, .. }) =
            check_with("git://10.20.1.2/r", "u", false, &allowed, answer(&[])).await
        else {
            panic!("refused");
        };
        assert_eq!(
            pin.unwrap().addresses,
            vec!["10.20.1.2".parse::<IpAddr>().unwrap()]
        );
        let passed = check_with(
            "https://git.corp/r",
            "u",
            false,
            &allowed,
            answer(&["10.20.9.9"]),
        );
        assert!(matches!(
            passed.await,
            Ok(Checked::Remote { pin: Some(_), .. })
        ));
        for (url, addresses) in [
            ("git://10.21.0.1/r", &[][..]),
            ("http://127.0.0.1/r", &[][..]),
            ("https://git.corp/r", &["10.20.9.9", "10.0.0.1"][..]),
        ] {
            let refused = check_with(url, url, false, &allowed, answer(addresses)).await;
            assert!(
                matches!(refused, Err(Refused::NotGlobal { .. })),
                "{url}: {refused:?}"
            );
        }
        let refused = check_with("http://localhost/", "u", false, &allowed, answer(&[])).await;
        assert!(matches!(refused, Err(Refused::LoopbackName { .. })));
    }
}
