//! Which certificate names cover which host. [`HostName`] itself lives in
//! nap-core, which does no IO, so that the daemon, the web manager and the
//! router's feed check host names by the one rule.

pub use nap_core::{HostName, HostNameError};

/// Whether a certificate name (a DNS subjectAltName, lower-cased) covers
/// `host`: the same name, or a wildcard `*.example.com` that stands for
/// exactly one label (`www.example.com`, not `example.com` nor
/// `a.b.example.com`). A wildcard directly under a top-level domain
/// (`*.com`) and partial wildcards (`w*.example.com`) cover nothing, as in
/// browsers.
pub(crate) fn name_covers(certificate_name: &str, host: &HostName) -> bool {
    let host = host.as_str();
    if let Some(parent) = certificate_name.strip_prefix("*.") {
        let parent_has_two_labels = parent.contains('.') && !parent.contains('*');
        return parent_has_two_labels
            && host
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == parent);
    }
    certificate_name == host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn covers(name: &str, host: &str) -> bool {
        name_covers(name, &HostName::parse(host).unwrap())
    }

    #[test]
    fn exact_names_and_one_label_wildcards() {
        assert!(covers("www.example.com", "www.example.com"));
        assert!(!covers("www.example.com", "example.com"));
        assert!(covers("*.example.com", "www.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "www.example.org"));
        assert!(!covers("*.com", "example.com"));
        assert!(!covers("w*.example.com", "www.example.com"));
        assert!(!covers("*.*.example.com", "a.b.example.com"));
    }
}
