//! Unit files as fleet carries them: a list of `{section, name, value}`
//! options, the three job states, and the names nap gives its units.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One `Name=Value` line of a unit file, in its section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitOption {
    /// `Unit`, `Service`, `X-Fleet`, …
    #[serde(default)]
    pub section: String,
    /// `ExecStart`, `Conflicts`, …
    #[serde(default)]
    pub name: String,
    /// Everything after the `=`, trimmed; continuation lines joined.
    #[serde(default)]
    pub value: String,
}

impl UnitOption {
    /// A new option.
    pub fn new(section: &str, name: &str, value: &str) -> UnitOption {
        UnitOption {
            section: section.to_owned(),
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }
}

/// What is wrong with a unit file's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct UnitFileError {
    /// 1-based.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Parses a unit file into options the way systemd reads it: `#` and `;`
/// start comments, a trailing backslash joins the next line (the backslash
/// becomes a space), names and values are trimmed.
pub fn parse_unit_file(text: &str) -> Result<Vec<UnitOption>, UnitFileError> {
    let mut options = Vec::new();
    let mut section: Option<String> = None;
    let mut lines = text.lines().enumerate();
    while let Some((number, raw)) = lines.next() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(UnitFileError {
                    line: number + 1,
                    reason: "a section header must end with ']'".into(),
                });
            };
            section = Some(name.to_owned());
            continue;
        }
        let Some(section) = &section else {
            return Err(UnitFileError {
                line: number + 1,
                reason: "an option before any [Section]".into(),
            });
        };
        let Some((name, first)) = line.split_once('=') else {
            return Err(UnitFileError {
                line: number + 1,
                reason: format!("expected Name=Value, got {line:?}"),
            });
        };
        let mut value = String::new();
        let mut part = first.to_owned();
        while let Some(joined) = part.strip_suffix('\\') {
            value.push_str(joined);
            value.push(' ');
            part = match lines.next() {
                Some((_, next)) => next.trim_end().to_owned(),
                None => String::new(),
            };
        }
        value.push_str(&part);
        options.push(UnitOption::new(section, name.trim(), value.trim()));
    }
    Ok(options)
}

/// Writes options back as a unit file: sections in the order they first
/// appear, options in their order within each section.
pub fn unit_file_text(options: &[UnitOption]) -> String {
    let mut sections: Vec<&str> = Vec::new();
    for option in options {
        if !sections.contains(&option.section.as_str()) {
            sections.push(&option.section);
        }
    }
    let mut text = String::new();
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&format!("[{section}]\n"));
        for option in options.iter().filter(|o| o.section == *section) {
            text.push_str(&format!("{}={}\n", option.name, option.value));
        }
    }
    text
}

/// The values of option `name` in `section`.
pub fn option_values<'a>(options: &'a [UnitOption], section: &str, name: &str) -> Vec<&'a str> {
    options
        .iter()
        .filter(|o| o.section == section && o.name == name)
        .map(|o| o.value.as_str())
        .collect()
}

/// A unit's job state in fleet: the only three values fleet accepts.
///
/// fleet v1.0.0 does not check `desiredState` on an update: a bogus value is
/// stored and the unit answers 500 from then on. This type is the check:
/// the client can only send one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    /// In the registry only.
    Inactive,
    /// Scheduled and loaded into systemd on a machine, not started.
    Loaded,
    /// Scheduled and started.
    Launched,
}

impl DesiredState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Inactive => "inactive",
            DesiredState::Loaded => "loaded",
            DesiredState::Launched => "launched",
        }
    }
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that fleet does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a fleet unit state (inactive, loaded or launched)")]
pub struct InvalidDesiredState(pub String);

impl FromStr for DesiredState {
    type Err = InvalidDesiredState;

    fn from_str(text: &str) -> Result<DesiredState, InvalidDesiredState> {
        match text {
            "inactive" => Ok(DesiredState::Inactive),
            "loaded" => Ok(DesiredState::Loaded),
            "launched" => Ok(DesiredState::Launched),
            other => Err(InvalidDesiredState(other.to_owned())),
        }
    }
}

/// The template a unit name is an instance of: `web@v3-1.service` →
/// `web@.service`. `None` for templates themselves and plain units.
pub fn template_of(unit: &str) -> Option<String> {
    let (stem, suffix) = unit.rsplit_once('.')?;
    let (prefix, instance) = stem.split_once('@')?;
    (!instance.is_empty() && !prefix.is_empty()).then(|| format!("{prefix}@.{suffix}"))
}

/// Whether `unit` names a template (`NAME@.TYPE`).
pub fn is_template(unit: &str) -> bool {
    unit.rsplit_once('.')
        .is_some_and(|(stem, _)| stem.ends_with('@') && stem.len() > 1)
}

/// The name of an app's instance template in fleet: `APP@.service`.
pub fn instance_template(app: &str) -> String {
    format!("{app}@.service")
}

/// The name of an app's discovery template in fleet: `APP_discovery@.service`.
pub fn discovery_template(app: &str) -> String {
    format!("{app}_discovery@.service")
}

/// The user an app's instances run as on a machine (`User=` with
/// `DynamicUser=yes`: systemd makes it up while they run): `nap-APP`, or for
/// names too long for a Unix login (31 characters), `nap-` and the first ten
/// characters of the name, `-`, and a hash of the whole name. Never a name
/// the machine's own users have (theirs do not start with `nap-`), so no app
/// can run as `root` by being called `root`. All instances of an app on a
/// machine share it; two apps never do.
pub fn app_user(app: &str) -> String {
    const MAX_LOGIN: usize = 31;
    let plain = format!("nap-{app}");
    if plain.len() <= MAX_LOGIN {
        return plain;
    }
    // FNV-1a: stable across Rust versions, unlike std's hasher.
    let hash = app.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let head: String = app.chars().take(10).collect();
    format!("nap-{head}-{hash:016x}")
}

/// The etcd prefix under which an app's instances register:
/// `/nap/apps/APP/instances/`.
pub fn etcd_prefix(app: &str) -> String {
    format!("/nap/apps/{app}/instances/")
}

/// One instance unit of nap, as its name spells it:
/// `APP@SET-INDEX-PORT.service`, where SET is the release (`v3`), or
/// `v3.G` for the G-th set of that release (a rolling restart).
///
/// Everything nap needs to find, address and stop an instance is in the
/// name, so fleet's registry is the only record, and a restarted nap finds
/// its instances by listing units.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceName {
    /// The app.
    pub app: String,
    /// The release, e.g. `v3`.
    pub release: String,
    /// 1 for the release's first set of instances, 2 after its first rolling restart, …
    pub generation: u32,
    /// The instance number (`NAP_INSTANCE`).
    pub index: u32,
    /// The port (`PORT`), unique across the cluster.
    pub port: u16,
}

impl InstanceName {
    /// `v3`, or `v3.2` for a later generation; instances of one set conflict.
    pub fn set(&self) -> String {
        if self.generation <= 1 {
            self.release.clone()
        } else {
            format!("{}.{}", self.release, self.generation)
        }
    }

    /// The instance string, `%i`: `v3-1-20001`.
    pub fn instance(&self) -> String {
        format!("{}-{}-{}", self.set(), self.index, self.port)
    }

    /// `APP@v3-1-20001.service`.
    pub fn unit(&self) -> String {
        format!("{}@{}.service", self.app, self.instance())
    }

    /// `APP_discovery@v3-1-20001.service`.
    pub fn discovery_unit(&self) -> String {
        format!("{}_discovery@{}.service", self.app, self.instance())
    }

    /// `/nap/apps/APP/instances/v3-1-20001`.
    pub fn etcd_key(&self) -> String {
        format!("{}{}", etcd_prefix(&self.app), self.instance())
    }

    /// Reads an instance unit's name; `None` for every other unit (templates,
    /// sidekicks, units that are not nap's).
    pub fn parse_unit(unit: &str) -> Option<InstanceName> {
        let stem = unit.strip_suffix(".service")?;
        let (app, instance) = stem.split_once('@')?;
        InstanceName::parse_instance(app, instance)
    }

    /// Reads `SET-INDEX-PORT` for `app`.
    pub fn parse_instance(app: &str, instance: &str) -> Option<InstanceName> {
        if !valid_app(app) {
            return None;
        }
        let mut parts = instance.split('-');
        let (set, index, port) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let (release, generation) = match set.split_once('.') {
            Some((release, generation)) => (release, canonical_number(generation)?),
            None => (set, 1),
        };
        if !valid_release(release) || generation == 0 || (generation == 1 && set.contains('.')) {
            return None;
        }
        Some(InstanceName {
            app: app.to_owned(),
            release: release.to_owned(),
            generation,
            index: canonical_number(index)?,
            port: u16::try_from(canonical_number(port)?)
                .ok()
                .filter(|port| *port != 0)?,
        })
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.unit())
    }
}

/// Digits without a leading zero, so every number has one spelling.
fn canonical_number(text: &str) -> Option<u32> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

/// nap's app names: `^[a-z][a-z0-9-]{0,62}$`.
pub fn valid_app(app: &str) -> bool {
    let mut bytes = app.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && app.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Releases that fit in a unit name: letters and digits (`v3`).
pub fn valid_release(release: &str) -> bool {
    !release.is_empty() && release.len() <= 32 && release.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_systemd_reads() {
        let text = "# comment\n[Unit]\nDescription = a b \n; other comment\n\n[Service]\nExecStart=/bin/sh -c 'a; \\\n  b'\nEnvironment=\"A=1\"\n\n[X-Fleet]\nConflicts=web@v1-*.service\n";
        let options = parse_unit_file(text).unwrap();
        assert_eq!(
            options,
            vec![
                UnitOption::new("Unit", "Description", "a b"),
                UnitOption::new("Service", "ExecStart", "/bin/sh -c 'a;    b'"),
                UnitOption::new("Service", "Environment", "\"A=1\""),
                UnitOption::new("X-Fleet", "Conflicts", "web@v1-*.service"),
            ]
        );
        let again = parse_unit_file(&unit_file_text(&options)).unwrap();
        assert_eq!(again, options);
        assert!(parse_unit_file("Name=1\n").is_err());
        assert!(parse_unit_file("[Unit]\nno equals sign\n").is_err());
    }

    #[test]
    fn names() {
        let name = InstanceName {
            app: "web".into(),
            release: "v3".into(),
            generation: 1,
            index: 2,
            port: 20001,
        };
        assert_eq!(name.unit(), "web@v3-2-20001.service");
        assert_eq!(name.discovery_unit(), "web_discovery@v3-2-20001.service");
        assert_eq!(name.etcd_key(), "/nap/apps/web/instances/v3-2-20001");
        assert_eq!(InstanceName::parse_unit(&name.unit()), Some(name.clone()));
        let later = InstanceName {
            generation: 4,
            ..name
        };
        assert_eq!(later.unit(), "web@v3.4-2-20001.service");
        assert_eq!(InstanceName::parse_unit(&later.unit()), Some(later));
        for not_ours in [
            "web@.service",
            "web_discovery@v3-2-20001.service",
            "web@v3-2.service",
            "web@v3-2-20001-1.service",
            "web@v3.1-2-20001.service",
            "web@v3-02-20001.service",
            "web@v3-2-0.service",
            "web@v3-2-70000.service",
            "web@v3-2-20001.socket",
            "Web@v3-2-20001.service",
        ] {
            assert_eq!(InstanceName::parse_unit(not_ours), None, "{not_ours}");
        }
        assert_eq!(
            template_of("web@v3-1-2.service").as_deref(),
            Some("web@.service")
        );
        assert_eq!(template_of("web@.service"), None);
        assert_eq!(template_of("web.service"), None);
        assert!(is_template("web_discovery@.service"));
        assert_eq!(app_user("web"), "nap-web");
        assert_eq!(app_user("root"), "nap-root", "never a machine's own user");
        let long = "a-very-long-app-name-that-needs-a-hash";
        assert_eq!(app_user(long).len(), 31);
        assert!(app_user(long).starts_with("nap-a-very-lon-"));
        assert_ne!(app_user(long), app_user(&format!("{long}2")));
        assert!(!is_template("web@1.service"));
        assert_eq!("launched".parse(), Ok(DesiredState::Launched));
        assert_eq!(
            "bogus".parse::<DesiredState>(),
            Err(InvalidDesiredState("bogus".into()))
        );
    }
}
