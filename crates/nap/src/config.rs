//! `nap serve` settings: embedded defaults, then the YAML config file, then
//! flags (flags win). Every flag has a key of the same name in the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// The config file; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub ssh: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub router: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub domain: Option<String>,
    pub git_user: Option<String>,
    pub deploy_branches: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub auth_timeout_secs: Option<u64>,
    pub ports: Option<String>,
    pub max_scale: Option<u32>,
    pub health_grace_ms: Option<u64>,
    pub boot_timeout_secs: Option<u64>,
    pub deploy_lock_timeout_secs: Option<u64>,
    /// Seconds a one-off `run` may take before it is killed.
    pub run_timeout_secs: Option<u64>,
    /// Most files a pushed tree may have.
    pub max_files: Option<usize>,
    /// Most bytes a pushed tree's files may add up to.
    pub max_bytes: Option<u64>,
    /// Networks (`10.20.0.0/16`) besides the public internet that non-admins'
    /// `deploy --from` may reach.
    pub deploy_from_networks: Option<Vec<String>>,
    /// Seconds an instance taken out of the router's rotation may finish its requests.
    pub drain_timeout_secs: Option<u64>,
    pub cgroups: Option<bool>,
    pub secure_cookies: Option<bool>,
    /// `local` (default) or `fleet`.
    pub runtime: Option<String>,
    pub fleet_endpoint: Option<String>,
    pub etcd_endpoints: Option<Vec<String>>,
    pub fleet_nap_url: Option<String>,
    /// `sandbox` (default) or `none`.
    pub isolation: Option<String>,
    /// Host paths every sandbox sees read-only.
    pub sandbox_ro_paths: Option<Vec<PathBuf>>,
    /// The bwrap binary; default: `bwrap` in PATH.
    pub sandbox_bwrap: Option<PathBuf>,
    /// `FIRST-LAST`: the uids apps get when nap runs as root.
    pub app_uid_range: Option<String>,
    /// The ACME server's directory URL (default: Let's Encrypt).
    pub acme_directory: Option<String>,
    /// Contacts of the ACME account (`mailto:` is added to a bare address).
    pub acme_contact: Option<Vec<String>>,
    /// A PEM root to trust for the ACME server's own HTTPS (a private or test CA).
    pub acme_root: Option<PathBuf>,
    /// Whether apps without a setting of their own get certificates from ACME.
    pub acme_auto: Option<bool>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        serde_saphyr::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                e.to_string().lines().next().unwrap_or("")
            )
        })
    }
}

/// Flags of `nap serve` that override the file.
#[derive(Debug, Default, clap::Args)]
pub struct ServeFlags {
    /// SSH front door address.
    #[arg(long, value_name = "ADDR")]
    pub ssh: Option<SocketAddr>,
    /// Web manager and JSON API address [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// App router address [default: 127.0.0.1:8000].
    #[arg(long, value_name = "ADDR")]
    pub router: Option<SocketAddr>,
    /// App router's HTTPS address [default: 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR")]
    pub https: Option<SocketAddr>,
    /// Apps are reached at APP.DOMAIN through the router [default: localhost].
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// YAML config file; every flag has a key; flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The SSH login name of git remotes.
    #[arg(long, value_name = "NAME")]
    pub git_user: Option<String>,
    /// Branch whose pushes deploy (repeatable); default master and main.
    #[arg(long = "deploy-branch", value_name = "BRANCH")]
    pub deploy_branches: Vec<String>,
    /// Most SSH connections at once.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Ports for instances, FIRST-LAST [default: 20000-29999].
    #[arg(long, value_name = "FIRST-LAST")]
    pub ports: Option<String>,
    /// Most instances of one app [default: 64].
    #[arg(long, value_name = "N")]
    pub max_scale: Option<u32>,
    /// Milliseconds a new instance that does not accept on $PORT yet must stay up to count as
    /// healthy; one that accepts is healthy at once [default: 1000].
    #[arg(long, value_name = "MS")]
    pub health_grace_ms: Option<u64>,
    /// Run every instance in a sandbox (`sandbox`), or not at all (`none`: every app can then
    /// read nap's data) [default: sandbox].
    #[arg(long, value_name = "sandbox|none")]
    pub isolation: Option<String>,
}

/// `sandbox` or `none`.
fn isolation(text: &str) -> anyhow::Result<nap_daemon::Isolation> {
    match text {
        "sandbox" => Ok(nap_daemon::Isolation::Sandbox),
        "none" => Ok(nap_daemon::Isolation::None),
        other => bail!(
            "isolation '{}': expected sandbox (every instance in a sandbox) or none (no sandbox: apps can read nap's data)",
            other.escape_debug()
        ),
    }
}

/// `FIRST-LAST` → `FIRST..=LAST`: uids for apps, never 0 and never the overflow uid 65534
/// (what user namespaces show for unmapped ids).
fn uid_range(text: &str) -> anyhow::Result<std::ops::RangeInclusive<u32>> {
    let parsed = text.split_once('-').and_then(|(first, last)| {
        Some((
            first.trim().parse::<u32>().ok()?,
            last.trim().parse::<u32>().ok()?,
        ))
    });
    match parsed {
        Some((first, last))
            if first >= 1
                && first <= last
                && last < u32::MAX
                && !(first..=last).contains(&65534) =>
        {
            Ok(first..=last)
        }
        _ => bail!(
            "app_uid_range '{}': expected FIRST-LAST with 1 <= FIRST <= LAST < 4294967295, not containing 65534 (nobody), e.g. 200000-265535",
            text.escape_debug()
        ),
    }
}

/// `FIRST-LAST` → `FIRST..LAST+1`.
fn port_range(text: &str) -> anyhow::Result<std::ops::Range<u16>> {
    let parsed = text.split_once('-').and_then(|(first, last)| {
        Some((
            first.trim().parse::<u16>().ok()?,
            last.trim().parse::<u16>().ok()?,
        ))
    });
    match parsed {
        Some((first, last)) if first >= 1024 && first <= last && last < u16::MAX => {
            Ok(first..last + 1)
        }
        _ => bail!(
            "ports '{}': expected FIRST-LAST with 1024 <= FIRST <= LAST < 65535, e.g. 20000-29999",
            text.escape_debug()
        ),
    }
}

/// The ACME keys, checked: the directory is an `https://` URL (or `http://`
/// on a loopback address, which only a test server has), a contact is an
/// email address or a `mailto:` URL.
fn acme_settings(
    directory: Option<String>,
    contact: Option<Vec<String>>,
    root: Option<PathBuf>,
    auto: Option<bool>,
) -> anyhow::Result<nap_daemon::AcmeSettings> {
    let mut settings = nap_daemon::AcmeSettings::default();
    if let Some(directory) = directory {
        if !directory.starts_with("https://") {
            bail!(
                "acme_directory '{}': expected an https:// URL like {}",
                directory.escape_debug(),
                settings.directory
            );
        }
        settings.directory = directory;
    }
    for address in contact.unwrap_or_default() {
        let bare = address.strip_prefix("mailto:").unwrap_or(&address);
        let plausible = bare.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !bare.contains([' ', ',', '\n'])
        });
        if !plausible {
            bail!(
                "acme_contact '{}': expected an email address like admin@example.com",
                address.escape_debug()
            );
        }
        settings.contact.push(format!("mailto:{bare}"));
    }
    if let Some(root) = root {
        if !root.is_file() {
            bail!(
                "acme_root {}: no such file (expected a PEM certificate)",
                root.display()
            );
        }
        settings.root = Some(root);
    }
    settings.auto_default = auto.unwrap_or(false);
    Ok(settings)
}

pub fn settings(
    data_flag: Option<PathBuf>,
    flags: ServeFlags,
) -> anyhow::Result<nap_daemon::Settings> {
    let file = match &flags.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let data = data_flag
        .or(file.data)
        .or_else(|| std::env::var_os("NAP_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("nap-data"));
    let git_user = flags
        .git_user
        .or(file.git_user)
        .unwrap_or_else(|| "iwanna".into());
    if git_user.is_empty()
        || !git_user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!(
            "git_user '{}': expected letters, digits, '-' or '_'",
            git_user.escape_debug()
        );
    }
    let deploy_branches = if flags.deploy_branches.is_empty() {
        file.deploy_branches
            .unwrap_or_else(|| vec!["master".into(), "main".into()])
    } else {
        flags.deploy_branches
    };
    if deploy_branches.is_empty() {
        bail!("deploy_branches: expected at least one branch");
    }
    for branch in &deploy_branches {
        if branch.is_empty() || branch.contains(['/', ' ', '~', '^', ':', '\\']) {
            bail!(
                "deploy branch '{}': expected a plain branch name like master",
                branch.escape_debug()
            );
        }
    }
    let domain = flags
        .domain
        .or(file.domain)
        .unwrap_or_else(|| "localhost".into())
        .to_ascii_lowercase();
    let domain_ok = !domain.is_empty()
        && domain.len() <= 200
        && domain.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !domain_ok {
        bail!(
            "domain '{}': expected a DNS name like localhost or apps.example.com",
            domain.escape_debug()
        );
    }
    let fleet = match file.runtime.as_deref().unwrap_or("local") {
        "local" => None,
        "fleet" => Some(nap_daemon::fleet::FleetSettings {
            endpoint: file.fleet_endpoint.context(
                "runtime: fleet needs fleet_endpoint (http://host:port or unix:///path)",
            )?,
            etcd_endpoints: file.etcd_endpoints.unwrap_or_default(),
            nap_url: file.fleet_nap_url.context(
                "runtime: fleet needs fleet_nap_url, nap's HTTP address as the machines reach it",
            )?,
        }),
        other => bail!(
            "runtime '{}': expected local or fleet",
            other.escape_debug()
        ),
    };
    let isolation = isolation(
        flags
            .isolation
            .as_deref()
            .or(file.isolation.as_deref())
            .unwrap_or("sandbox"),
    )?;
    let sandbox = nap_daemon::SandboxSettings {
        bwrap: file.sandbox_bwrap,
        ro_paths: file.sandbox_ro_paths.unwrap_or_default(),
        app_uids: match &file.app_uid_range {
            Some(text) => uid_range(text)?,
            None => nap_daemon::DEFAULT_APP_UIDS,
        },
    };
    let acme = acme_settings(
        file.acme_directory,
        file.acme_contact,
        file.acme_root,
        file.acme_auto,
    )?;
    let nap_bin = std::env::current_exe().context("cannot find the nap binary itself")?;
    Ok(nap_daemon::Settings {
        data,
        ssh: flags
            .ssh
            .or(file.ssh)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 2222))),
        http: flags
            .http
            .or(file.http)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        router: flags
            .router
            .or(file.router)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8000))),
        https: flags
            .https
            .or(file.https)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443))),
        acme,
        domain,
        git_user,
        deploy_branches,
        nap_bin,
        git: PathBuf::from("git"),
        max_connections: flags
            .max_connections
            .or(file.max_connections)
            .unwrap_or(256),
        auth_timeout: Duration::from_secs(file.auth_timeout_secs.unwrap_or(30)),
        ports: port_range(
            flags
                .ports
                .or(file.ports)
                .as_deref()
                .unwrap_or("20000-29999"),
        )?,
        max_scale: flags.max_scale.or(file.max_scale).unwrap_or(64),
        health_grace: Duration::from_millis(
            flags
                .health_grace_ms
                .or(file.health_grace_ms)
                .unwrap_or(1000),
        ),
        boot_timeout: Duration::from_secs(file.boot_timeout_secs.unwrap_or(10)),
        deploy_lock_timeout: Duration::from_secs(file.deploy_lock_timeout_secs.unwrap_or(600)),
        // An hour, as a one-off dyno's session on Heroku: long enough for a console or a
        // data migration, short enough that a forgotten one does not run for ever.
        run_timeout: Duration::from_secs(file.run_timeout_secs.unwrap_or(3600)),
        // Generous: far above any app's source, far below what fills a disk.
        max_files: file.max_files.unwrap_or(200_000),
        max_bytes: file.max_bytes.unwrap_or(4 << 30),
        deploy_from_networks: deploy_from_networks(file.deploy_from_networks.unwrap_or_default())?,
        drain_timeout: Duration::from_secs(file.drain_timeout_secs.unwrap_or(30)),
        cgroups: file.cgroups.unwrap_or(true),
        secure_cookies: file.secure_cookies.unwrap_or(false),
        fleet,
        isolation,
        sandbox,
    })
}

/// The `deploy_from_networks` key, each network read.
fn deploy_from_networks(texts: Vec<String>) -> anyhow::Result<Vec<nap_daemon::Network>> {
    texts
        .iter()
        .map(|text| {
            text.parse::<nap_daemon::Network>()
                .context("config key deploy_from_networks")
        })
        .collect()
}
