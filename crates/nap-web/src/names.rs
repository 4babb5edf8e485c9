//! App names, checked before anything else looks at them.

/// Whether `name` follows nap's rule for app names, `^[a-z][a-z0-9-]{0,62}$`
/// (a DNS label). A name that does not cannot be an app, so requests for it
/// are answered 404 before the backend is asked anything.
pub(crate) fn is_app_name(name: &str) -> bool {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    starts_with_letter
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::is_app_name;

    #[test]
    fn app_names() {
        for good in ["a", "web", "my-app-2", &"a".repeat(63)] {
            assert!(is_app_name(good), "{good}");
        }
        for bad in [
            "",
            "2web",
            "-web",
            "Web",
            "we_b",
            "web.x",
            "we b",
            "wéb",
            &"a".repeat(64),
        ] {
            assert!(!is_app_name(bad), "{bad}");
        }
    }
}
