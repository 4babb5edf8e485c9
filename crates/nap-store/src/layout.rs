//! Where everything lives inside the data directory.

use std::path::{Path, PathBuf};

/// The data directory and the paths inside it.
///
/// ```text
/// host_key               ed25519 SSH host key (0600)
/// users.json             users, admin flags, public keys
/// nap.sock               control socket for `nap COMMAND` and the hook (0600)
/// repos/APP.git          bare repositories
/// apps/APP/app.json      owner, desired scale, current release
/// apps/APP/config.json   config vars (0600)
/// apps/APP/releases/vN/  checked-out trees; vN.json beside them
/// logs/APP/APP@I.log     instance output
/// run/                   the supervisor's records of running processes
/// storage/APP/           the app's persistent directory, $NAP_STORAGE (0700, the app's uid)
/// sandbox/               the sandbox's own files (its copies of a few /etc files)
/// domains.json           custom hosts → apps, and each app's HTTPS settings
/// certs/                 certificates by host, and the ACME account (nap-certs)
/// ```
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// A data directory at `root` (made absolute, so paths handed to child
    /// processes stay valid whatever their working directory).
    pub fn new(root: &Path) -> std::io::Result<DataDir> {
        Ok(DataDir {
            root: std::path::absolute(root)?,
        })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The SSH host key.
    pub fn host_key(&self) -> PathBuf {
        self.root.join("host_key")
    }
    /// Users and their keys.
    pub fn users_file(&self) -> PathBuf {
        self.root.join("users.json")
    }
    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("nap.sock")
    }
    /// All bare repositories.
    pub fn repos(&self) -> PathBuf {
        self.root.join("repos")
    }
    /// One app's bare repository.
    pub fn repo(&self, app: &str) -> PathBuf {
        self.repos().join(format!("{app}.git"))
    }
    /// All apps' state.
    pub fn apps(&self) -> PathBuf {
        self.root.join("apps")
    }
    /// One app's state directory.
    pub fn app(&self, app: &str) -> PathBuf {
        self.apps().join(app)
    }
    /// One app's record.
    pub fn app_record(&self, app: &str) -> PathBuf {
        self.app(app).join("app.json")
    }
    /// One app's config vars (env of its instances), kept outside git.
    pub fn app_config(&self, app: &str) -> PathBuf {
        self.app(app).join("config.json")
    }
    /// One app's releases.
    pub fn releases(&self, app: &str) -> PathBuf {
        self.app(app).join("releases")
    }
    /// The tree of release `number`.
    pub fn release_tree(&self, app: &str, number: u32) -> PathBuf {
        self.releases(app).join(format!("v{number}"))
    }
    /// The record of release `number`.
    pub fn release_record(&self, app: &str, number: u32) -> PathBuf {
        self.releases(app).join(format!("v{number}.json"))
    }
    /// All instance logs.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// One app's instance logs.
    pub fn app_logs(&self, app: &str) -> PathBuf {
        self.logs().join(app)
    }
    /// The supervisor's process records.
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    /// Every app's persistent directory.
    pub fn storage(&self) -> PathBuf {
        self.root.join("storage")
    }
    /// One app's persistent directory (`$NAP_STORAGE`): kept across deploys, restarts,
    /// rollbacks and daemon restarts, removed with the app.
    pub fn app_storage(&self, app: &str) -> PathBuf {
        self.storage().join(app)
    }
    /// Every app's build cache.
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }
    /// One app's build cache (`$NAP_CACHE` during a build): the dependencies built last
    /// time, kept between deploys, removed with the app.
    pub fn app_cache(&self, app: &str) -> PathBuf {
        self.cache().join(app)
    }
    /// The sandbox's state: the copies of host files it shows apps under `/etc`.
    pub fn sandbox(&self) -> PathBuf {
        self.root.join("sandbox")
    }
    /// The index of custom hosts (which app each belongs to) and the apps'
    /// HTTPS settings.
    pub fn domains_file(&self) -> PathBuf {
        self.root.join("domains.json")
    }
    /// The certificates of custom hosts (laid out by nap-certs).
    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }
}
