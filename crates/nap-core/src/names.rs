//! App and user names.

use std::fmt;

/// Why a name was refused. The message states the rule, so the user can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The app name breaks the DNS-label rule.
    #[error(
        "invalid app name '{0}': expected 1 to 63 characters, a lowercase letter first, \
         then lowercase letters, digits or '-' (^[a-z][a-z0-9-]{{0,62}}$)"
    )]
    App(String),
    /// The user name breaks the user-name rule.
    #[error(
        "invalid user name '{0}': expected 1 to 32 characters, a lowercase letter first, \
         then lowercase letters, digits, '.', '_' or '-'"
    )]
    User(String),
}

/// A valid app name: `^[a-z][a-z0-9-]{0,62}$`, a DNS label, so `APP.<domain>`
/// routing and unit names work, and nothing in it can climb out of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppName(String);

impl AppName {
    /// Checks `name` against the rule; the error quotes the name (escaped) and the rule.
    pub fn parse(name: &str) -> Result<AppName, NameError> {
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if first_ok && rest_ok && name.len() <= 63 {
            Ok(AppName(name.to_owned()))
        } else {
            Err(NameError::App(name.escape_default().to_string()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A valid user name: `^[a-z][a-z0-9._-]{0,31}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// Checks `name` against the rule.
    pub fn parse(name: &str) -> Result<UserName, NameError> {
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
        });
        if first_ok && rest_ok && name.len() <= 32 {
            Ok(UserName(name.to_owned()))
        } else {
            Err(NameError::User(name.escape_default().to_string()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, ok: bool) {
        assert_eq!(AppName::parse(name).is_ok(), ok, "app name {name:?}");
    }

    #[test]
    fn app_names() {
        for good in ["a", "myapp", "my-app", "a1", "x-", &"a".repeat(63)] {
            check(good, true);
        }
        let long = "a".repeat(64);
        let seventy = "a".repeat(70);
        for bad in [
            "", "MyApp", "my_app", "-x", "../x", "1app", "a.b", "a/b", "app\n", " app", "ä", &long,
            &seventy, "a b", "app.git",
        ] {
            check(bad, false);
        }
    }

    #[test]
    fn app_name_error_states_the_rule_and_escapes() {
        let message = AppName::parse("bad\nname").unwrap_err().to_string();
        assert!(message.contains("bad\\nname"), "{message}");
        assert!(message.contains("^[a-z][a-z0-9-]{0,62}$"), "{message}");
    }

    #[test]
    fn user_names() {
        assert!(UserName::parse("alice").is_ok());
        assert!(UserName::parse("bob.smith_2-x").is_ok());
        for bad in ["", "Alice", "-x", "a/b", "../a", &"a".repeat(33)] {
            assert!(UserName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
