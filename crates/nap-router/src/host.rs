//! Which app a request is for, from its `Host`: `APP.<domain>`, or a custom host.

use std::borrow::Cow;

/// Normalises the configured domain the way hosts are normalised: lower case,
/// no leading or trailing dots (`.Example.COM.` is `example.com`).
pub(crate) fn normalise_domain(domain: &str) -> String {
    domain.trim().trim_matches('.').to_ascii_lowercase()
}

/// The app named by `host` (a `Host` header value or a URI authority): `APP`
/// of `APP.<domain>`, lower-cased. The port is ignored, case does not matter
/// and a trailing dot (a fully qualified name) is tolerated. `None` if `host`
/// is not exactly one DNS label under `domain` (which must be normalised).
/// Borrowed from `host` when it is lower case already, as browsers send it.
pub(crate) fn app_name<'a>(host: &'a str, domain: &str) -> Option<Cow<'a, str>> {
    // An IPv6 literal never names an app (and its colons are no port).
    if host.starts_with('[') {
        return None;
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let label = if domain.is_empty() {
        name
    } else {
        let (label, rest) = name.split_once('.')?;
        if !rest.eq_ignore_ascii_case(domain) {
            return None;
        }
        label
    };
    let is_label = (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !is_label {
        return None;
    }
    Some(if label.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(label.to_ascii_lowercase())
    } else {
        Cow::Borrowed(label)
    })
}

/// `host` (a `Host` header value or a URI authority) as custom hosts are keyed: without
/// its port and a trailing dot, lower case. `None` for an IPv6 literal, a malformed port
/// or an empty name. Borrowed from `host` when nothing needs to change.
pub(crate) fn custom_host(host: &str) -> Option<Cow<'_, str>> {
    if host.starts_with('[') {
        return None;
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    Some(if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(host: &str, domain: &str, expected: Option<&str>) {
        assert_eq!(
            app_name(host, &normalise_domain(domain)).as_deref(),
            expected,
            "host {host:?}"
        );
    }

    #[test]
    fn app_under_the_domain() {
        check("web.localhost", "localhost", Some("web"));
        check("web.localhost:8000", "localhost", Some("web"));
        check("WEB.LocalHost:8000", "localhost", Some("web"));
        check("web.localhost.", "localhost", Some("web"));
        check("web.localhost.:80", "localhost", Some("web"));
        check(
            "my-app2.apps.example.com",
            "Apps.Example.com.",
            Some("my-app2"),
        );
        check("web.localhost:", "localhost", Some("web"));
    }

    #[test]
    fn anything_else_is_no_app() {
        check("localhost", "localhost", None);
        check("localhost:8000", "localhost", None);
        check(".localhost", "localhost", None);
        check("a.b.localhost", "localhost", None);
        check("web.example.com", "localhost", None);
        check("web.localhostx", "localhost", None);
        check("weblocalhost", "localhost", None);
        check("we_b.localhost", "localhost", None);
        check("we b.localhost", "localhost", None);
        check("web.localhost:80x", "localhost", None);
        check("[::1]:8000", "localhost", None);
        check("127.0.0.1:8000", "localhost", None);
        check("", "localhost", None);
        check(&format!("{}.localhost", "a".repeat(64)), "localhost", None);
        check(
            &format!("{}.localhost", "a".repeat(63)),
            "localhost",
            Some(&"a".repeat(63)),
        );
    }

    #[test]
    fn custom_hosts_lose_port_dot_and_case() {
        let check = |host: &str, expected: Option<&str>| {
            assert_eq!(custom_host(host).as_deref(), expected, "host {host:?}");
        };
        check("www.example.com", Some("www.example.com"));
        check("WWW.Example.com:8443", Some("www.example.com"));
        check("www.example.com.", Some("www.example.com"));
        check("www.example.com:", Some("www.example.com"));
        check("www.example.com:x", None);
        check("[::1]:80", None);
        check(":80", None);
        check("", None);
    }

    #[test]
    fn empty_domain_means_bare_labels() {
        check("web", "", Some("web"));
        check("web:8000", "", Some("web"));
        check("web.localhost", "", None);
    }
}

/// Properties over generated `Host` values: every request's header is the
/// client's to choose.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Cases per property: modest, so that CI stays quick.
    const CASES: u32 = 512;

    fn domain() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("localhost".to_owned()),
            "[a-zA-Z0-9-]{1,10}(\\.[a-zA-Z0-9-]{1,10}){0,2}\\.?",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]

        /// Whatever the header, the answer is no app or a label that is
        /// exactly the host's first label under the domain.
        #[test]
        fn any_host_names_no_app_or_exactly_one_label(host in any::<String>(), domain in domain()) {
            let domain = normalise_domain(&domain);
            if let Some(app) = app_name(&host, &domain) {
                prop_assert!((1..=63).contains(&app.len()), "{app:?}");
                prop_assert!(
                    app.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                    "{app:?}"
                );
                let lower = host.to_ascii_lowercase();
                prop_assert!(lower.starts_with(app.as_ref()), "{host:?} gave {app:?}");
                if !domain.is_empty() {
                    prop_assert!(lower.contains(&format!("{app}.{domain}")), "{host:?} gave {app:?}");
                }
            }
        }

        /// Hosts built from a label, the domain in any case, a trailing dot
        /// and a port name the label; anything appended to the label's
        /// place (a second label, a bad port) names none.
        #[test]
        fn built_hosts_name_their_label(
            label in "[a-zA-Z0-9-]{1,63}",
            domain in "[a-z0-9-]{1,10}(\\.[a-z0-9-]{1,10}){0,2}",
            upper in any::<bool>(),
            dot in any::<bool>(),
            port in prop::option::of(0u32..100_000),
            junk in "[^a-zA-Z0-9-]",
        ) {
            let shown_domain = if upper { domain.to_ascii_uppercase() } else { domain.clone() };
            let mut host = format!("{label}.{shown_domain}");
            if dot {
                host.push('.');
            }
            if let Some(port) = port {
                host.push_str(&format!(":{port}"));
            }
            let expected = label.to_ascii_lowercase();
            let named = app_name(&host, &domain).map(|app| app.into_owned());
            prop_assert_eq!(named, Some(expected));
            let nested = format!("x.{host}");
            prop_assert_eq!(app_name(&nested, &domain), None);
            let spoiled = format!("{label}{junk}.{domain}");
            prop_assert_eq!(app_name(&spoiled, &domain), None, "{}", spoiled);
        }
    }
}
