//! OpenSSH public key lines, as users paste them from `~/.ssh/id_*.pub`.

use ssh_key::{HashAlg, PublicKey};

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing but blank lines or comments.
    #[error(
        "no public key given: expected one OpenSSH public key line like 'ssh-ed25519 AAAA... you@host'"
    )]
    Empty,
    /// More than one key line.
    #[error("expected exactly one public key line, found {0}")]
    Several(usize),
    /// The line does not parse as an OpenSSH public key.
    #[error(
        "not an OpenSSH public key ({0}): expected a line like 'ssh-ed25519 AAAA... you@host' \
         (authorized_keys options and private keys are not accepted)"
    )]
    Malformed(String),
    /// A key type nap does not accept.
    #[error(
        "key type {0} is not accepted: use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa of 2048 bits or more"
    )]
    Unsupported(String),
    /// An RSA key that is too short to be safe.
    #[error("RSA key of {0} bits is too short: at least 2048 bits are required")]
    RsaTooShort(u32),
}

/// A public key that nap accepts, in its canonical forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    /// `type base64` without the comment: the key's identity.
    pub openssh: String,
    /// The algorithm name, e.g. `ssh-ed25519`.
    pub kind: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The comment from the line, if any (informational only).
    pub comment: String,
}

/// Parses exactly one OpenSSH public key line (blank lines and `#` comments
/// around it are ignored) and checks that nap accepts its type.
pub fn parse_public_key(text: &str) -> Result<ParsedKey, KeyError> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let line = match lines.as_slice() {
        [] => return Err(KeyError::Empty),
        [one] => *one,
        many => return Err(KeyError::Several(many.len())),
    };
    let key = PublicKey::from_openssh(line).map_err(|e| KeyError::Malformed(e.to_string()))?;
    from_public_key(&key)
}

/// Canonical forms of an already decoded key, after checking its type.
/// The SSH front door uses this for the key a client authenticated with.
pub fn from_public_key(key: &PublicKey) -> Result<ParsedKey, KeyError> {
    let data = key.key_data();
    let kind = key.algorithm().as_str().to_owned();
    if let Some(rsa) = data.rsa() {
        let bits = rsa.key_size();
        if bits < 2048 {
            return Err(KeyError::RsaTooShort(bits));
        }
    } else if !(data.is_ed25519() || data.is_ecdsa()) {
        return Err(KeyError::Unsupported(kind));
    }
    let mut bare = key.clone();
    bare.set_comment("");
    let openssh = bare
        .to_openssh()
        .map_err(|e| KeyError::Malformed(e.to_string()))?
        .trim()
        .to_owned();
    Ok(ParsedKey {
        openssh,
        kind,
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        comment: key.comment().as_str_lossy().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@host";

    #[test]
    fn accepts_ed25519_and_strips_the_comment() {
        let key = parse_public_key(&format!("# mine\n\n{ED25519}\n")).unwrap();
        assert_eq!(key.kind, "ssh-ed25519");
        assert!(key.openssh.starts_with("ssh-ed25519 AAAA"));
        assert!(!key.openssh.contains("alice"));
        assert!(key.fingerprint.starts_with("SHA256:"));
        assert_eq!(key.comment, "alice@host");
    }

    #[test]
    fn refuses_garbage_options_and_several_lines() {
        assert_eq!(parse_public_key("  \n# x\n"), Err(KeyError::Empty));
        assert_eq!(
            parse_public_key(&format!("{ED25519}\n{ED25519}")),
            Err(KeyError::Several(2))
        );
        assert!(matches!(
            parse_public_key("hello world"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            parse_public_key(&format!("command=\"sh\" {ED25519}")),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            parse_public_key("-----BEGIN OPENSSH PRIVATE KEY-----"),
            Err(KeyError::Malformed(_))
        ));
    }
}
