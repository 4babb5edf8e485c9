//! The one access rule. SSH, the local CLI, the pre-receive hook and the web
//! API all call [`check_access`]; nobody else decides who may touch an app.

use crate::AppName;

/// Who is asking: a registered user, possibly an admin. The local operator CLI
/// acts as an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's name.
    pub user: String,
    /// Admins may act on every app and manage keys.
    pub admin: bool,
}

/// What the caller wants to do with an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Look at it: fetch, ps, logs, releases.
    Read,
    /// Change it: push, scale, restart, destroy.
    Write,
    /// Create it if it does not exist (a first push), otherwise write it.
    CreateOrWrite,
}

/// Why access was refused. The messages never reveal anything about an app
/// the caller may not see beyond the fact that its name is taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The app exists and belongs to someone else.
    #[error("app {0} belongs to another user")]
    NotYours(String),
    /// The app does not exist.
    #[error("app {0} does not exist")]
    NoSuchApp(String),
    /// Only admins may do this.
    #[error("only admins may {0}")]
    AdminOnly(&'static str),
}

/// Decides whether `caller` may perform `action` on `app`, whose owner is
/// `owner` (`None` when the app does not exist).
pub fn check_access(
    caller: &Caller,
    app: &AppName,
    owner: Option<&str>,
    action: Action,
) -> Result<(), AccessError> {
    match (owner, action) {
        (None, Action::CreateOrWrite) => Ok(()),
        (None, _) => Err(AccessError::NoSuchApp(app.to_string())),
        (Some(_), _) if caller.admin => Ok(()),
        (Some(owner), _) if owner == caller.user => Ok(()),
        (Some(_), _) => Err(AccessError::NotYours(app.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_admins_and_strangers() {
        let app = AppName::parse("web").unwrap();
        let alice = Caller {
            user: "alice".into(),
            admin: false,
        };
        let bob = Caller {
            user: "bob".into(),
            admin: false,
        };
        let root = Caller {
            user: "root".into(),
            admin: true,
        };
        for action in [Action::Read, Action::Write, Action::CreateOrWrite] {
            assert_eq!(check_access(&alice, &app, Some("alice"), action), Ok(()));
            assert_eq!(check_access(&root, &app, Some("alice"), action), Ok(()));
            assert_eq!(
                check_access(&bob, &app, Some("alice"), action),
                Err(AccessError::NotYours("web".into()))
            );
        }
        assert_eq!(
            check_access(&bob, &app, None, Action::CreateOrWrite),
            Ok(())
        );
        assert_eq!(
            check_access(&root, &app, None, Action::Read),
            Err(AccessError::NoSuchApp("web".into()))
        );
    }
}
