//! The server's ed25519 host key: made once, then reused forever, so clients
//! never see "host key changed".

use std::path::{Path, PathBuf};

use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;

/// The host key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// Reading or writing the file failed.
    #[error("host key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file exists but does not hold an OpenSSH private key. nap never
    /// replaces it: clients would then see a changed host key.
    #[error(
        "host key {path} is not a valid OpenSSH private key ({message}); move it away to make a new one"
    )]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// Writing the new key failed.
    #[error(transparent)]
    Store(#[from] nap_store::StoreError),
}

/// Loads the host key at `path`, creating an ed25519 key (mode 0600) if the
/// file does not exist.
pub fn load_or_create_host_key(path: &Path) -> Result<PrivateKey, HostKeyError> {
    let io = |source| HostKeyError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(text.as_bytes()).map_err(|e| HostKeyError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = nap_stdx::random_bytes::<32>().map_err(io)?;
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| HostKeyError::Invalid {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
            nap_store::atomic_write(path, text.as_bytes(), 0o600)?;
            tracing::info!(path = %path.display(), "created a new ed25519 host key");
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_then_reused_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host_key");
        let first = load_or_create_host_key(&path).unwrap();
        let second = load_or_create_host_key(&path).unwrap();
        assert_eq!(first.public_key(), second.public_key());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_broken_key_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host_key");
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            load_or_create_host_key(&path),
            Err(HostKeyError::Invalid { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage");
    }
}
