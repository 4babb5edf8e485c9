//! Host names: the custom domains an app is served at, and the names its
//! certificates are stored and served for.

use std::fmt;

/// Why a host name was refused. The message quotes the name and states the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid host name '{name}': {reason}; expected a DNS name such as www.example.com \
     (labels of 1 to 63 letters, digits or '-', not starting or ending with '-', \
     at least two labels, at most 253 characters)"
)]
pub struct HostNameError {
    /// The refused name, escaped so that control characters show.
    pub name: String,
    /// Which part of the rule it breaks.
    pub reason: &'static str,
}

/// A valid, lower-cased DNS host name with at least two labels, such as
/// `www.example.com`: what a custom domain, a certificate's directory and an
/// SNI lookup are keyed by. Nothing in it can climb out of a directory (no
/// `/`, no `..`, no leading dot) and it is never an IP address.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct HostName(String);

impl HostName {
    /// Checks `name` against the rule. Case does not matter and one trailing
    /// dot (a fully qualified name) is dropped: `WWW.Example.com.` is
    /// `www.example.com`.
    pub fn parse(name: &str) -> Result<HostName, HostNameError> {
        let refuse = |reason| HostNameError {
            name: name.escape_default().to_string(),
            reason,
        };
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        if trimmed.is_empty() {
            return Err(refuse("it is empty"));
        }
        if trimmed.len() > 253 {
            return Err(refuse("it is longer than 253 characters"));
        }
        let labels: Vec<&str> = trimmed.split('.').collect();
        if labels.len() < 2 {
            return Err(refuse("it has only one label"));
        }
        for label in &labels {
            if label.is_empty() {
                return Err(refuse("it has an empty label"));
            }
            if label.len() > 63 {
                return Err(refuse("a label is longer than 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(refuse(
                    "it has a character other than letters, digits, '-' and '.'",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(refuse("a label starts or ends with '-'"));
            }
        }
        // `1.2.3.4` is made of valid labels but is an address; no top-level
        // domain is all digits.
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(refuse("it looks like an IP address"));
        }
        Ok(HostName(trimmed.to_ascii_lowercase()))
    }

    /// The name as text, lower case, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl From<HostName> for String {
    fn from(host: HostName) -> String {
        host.0
    }
}

impl TryFrom<String> for HostName {
    type Error = HostNameError;

    fn try_from(name: String) -> Result<HostName, HostNameError> {
        HostName::parse(&name)
    }
}

impl AsRef<str> for HostName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Result<&str, &str>) {
        let got = HostName::parse(input);
        match expected {
            Ok(name) => assert_eq!(got.expect("a valid host").as_str(), name, "{input:?}"),
            Err(reason) => {
                let error = got.expect_err("an invalid host");
                assert_eq!(error.reason, reason, "{input:?}");
                assert!(error.to_string().contains("expected a DNS name"), "{error}");
            }
        }
    }

    #[test]
    fn valid_names_are_normalised() {
        check("www.example.com", Ok("www.example.com"));
        check("WWW.Example.COM.", Ok("www.example.com"));
        check("a-b.c1.example", Ok("a-b.c1.example"));
        check("xn--bcher-kva.example", Ok("xn--bcher-kva.example"));
        check(
            &format!("{}.com", "a".repeat(63)),
            Ok(&format!("{}.com", "a".repeat(63))),
        );
    }

    #[test]
    fn invalid_names_say_why() {
        check("", Err("it is empty"));
        check(".", Err("it is empty"));
        check("localhost", Err("it has only one label"));
        check("a..b", Err("it has an empty label"));
        check(".example.com", Err("it has an empty label"));
        check("../etc.passwd", Err("it has an empty label"));
        check(
            "a/b.com",
            Err("it has a character other than letters, digits, '-' and '.'"),
        );
        check(
            "*.example.com",
            Err("it has a character other than letters, digits, '-' and '.'"),
        );
        check(
            "ex ample.com",
            Err("it has a character other than letters, digits, '-' and '.'"),
        );
        check(
            "exämple.com",
            Err("it has a character other than letters, digits, '-' and '.'"),
        );
        check("-a.example.com", Err("a label starts or ends with '-'"));
        check("a-.example.com", Err("a label starts or ends with '-'"));
        check("127.0.0.1", Err("it looks like an IP address"));
        check(
            &format!("{}.com", "a".repeat(64)),
            Err("a label is longer than 63 characters"),
        );
        let long = vec!["a".repeat(60); 5].join(".");
        check(&long, Err("it is longer than 253 characters"));
    }

    #[test]
    fn control_characters_are_escaped_in_the_message() {
        let error = HostName::parse("a\nb.com").unwrap_err();
        assert!(error.to_string().contains("a\\nb.com"), "{error}");
    }
}
