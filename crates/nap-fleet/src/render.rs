//! Rendering the unit templates of `deploy/fleet/` for one app and release.
//!
//! Placeholders are `{{NAME}}`. Free-form values (the command, config vars,
//! the tarball URL and token, etcd endpoints) only ever land inside
//! double-quoted `Environment=` assignments and are escaped for exactly
//! that; every other value is checked to need no escaping at all. The shell
//! scripts of the templates read those variables, so no value is ever
//! spliced into a command line.

use std::path::Path;

use crate::unit::{self, UnitOption, discovery_template, instance_template, parse_unit_file};

/// What a config var `KEY` is called in the unit: `NAP_CONFIG_KEY`.
pub const CONFIG_PREFIX: &str = "NAP_CONFIG_";
/// The variable that names the config vars of a unit: `NAP_CONFIG=KEY …`.
pub const CONFIG_LIST: &str = "NAP_CONFIG";

/// `deploy/fleet/app@.service`, built in.
pub const INSTANCE_TEMPLATE: &str = include_str!("../../../deploy/fleet/app@.service");
/// `deploy/fleet/app_discovery@.service`, built in.
pub const DISCOVERY_TEMPLATE: &str = include_str!("../../../deploy/fleet/app_discovery@.service");

/// The two unit templates, as text with `{{NAME}}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    /// The instance unit (`app@.service`).
    pub instance: String,
    /// The discovery sidekick (`app_discovery@.service`).
    pub discovery: String,
}

impl Default for Templates {
    fn default() -> Templates {
        Templates {
            instance: INSTANCE_TEMPLATE.to_owned(),
            discovery: DISCOVERY_TEMPLATE.to_owned(),
        }
    }
}

impl Templates {
    /// Reads `app@.service` and `app_discovery@.service` from `dir`, for an
    /// operator who changed them.
    pub fn load(dir: &Path) -> std::io::Result<Templates> {
        Ok(Templates {
            instance: std::fs::read_to_string(dir.join("app@.service"))?,
            discovery: std::fs::read_to_string(dir.join("app_discovery@.service"))?,
        })
    }
}

/// Where a node fetches a release from, and the token that lets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tarball {
    /// e.g. `http://10.0.0.1:8080/api/apps/web/releases/v3/tarball`.
    pub url: String,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: String,
}

/// Everything a rendering needs.
#[derive(Debug, Clone)]
pub struct RenderInput {
    /// The app (a DNS label).
    pub app: String,
    /// The release, e.g. `v3`.
    pub release: String,
    /// The set of the release (1, or more after rolling restarts): it picks
    /// the `Conflicts=` glob.
    pub generation: u32,
    /// Run with `/bin/sh -c` in the release tree.
    pub command: String,
    /// The app's config vars. `PORT` and `NAP_*` are nap's and are left out.
    pub env: Vec<(String, String)>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// The release tarball.
    pub tarball: Tarball,
    /// The Unix user the instance runs as on the machine.
    pub user: String,
    /// Where trees go on the machine: `WORK_DIR/APP/INSTANCE`.
    pub work_dir: String,
    /// The machine's own settings for the sidekick (`NAP_NODE_HOST=`).
    pub node_env_file: String,
    /// etcd as the machines reach it; empty: no discovery sidekick.
    pub etcd_endpoints: Vec<String>,
    /// The JSON gateway's prefix: `/v3` (etcd 3.4+), `/v3beta` (3.3).
    pub etcd_api: String,
    /// The lease's TTL in seconds.
    pub etcd_ttl_secs: u64,
    /// How often the sidekick refreshes the lease, in seconds.
    pub etcd_refresh_secs: u64,
}

/// A rendered template: its fleet name, its text, and its options as fleet
/// stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedUnit {
    /// `APP@.service` or `APP_discovery@.service`.
    pub name: String,
    /// The unit file.
    pub text: String,
    /// The same, as fleet's options.
    pub options: Vec<UnitOption>,
}

/// Both templates of an app's release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `APP@.service`.
    pub instance: RenderedUnit,
    /// `APP_discovery@.service`, when etcd endpoints are configured.
    pub discovery: Option<RenderedUnit>,
}

/// Why the units could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot render the fleet units of {app}: {reason}")]
pub struct RenderError {
    /// The app.
    pub app: String,
    /// What is wrong.
    pub reason: String,
}

/// Renders `APP@.service` (and `APP_discovery@.service` when etcd is
/// configured) for one release.
pub fn render(templates: &Templates, input: &RenderInput) -> Result<Rendered, RenderError> {
    let fail = |reason: String| RenderError {
        app: input.app.clone(),
        reason,
    };
    check_input(input).map_err(fail)?;
    let values = placeholder_values(input).map_err(fail)?;
    let config_env = config_env_lines(&input.env).map_err(fail)?;
    let instance = render_one(
        &instance_template(&input.app),
        &templates.instance,
        &values,
        &config_env,
    )
    .map_err(fail)?;
    let discovery = if input.etcd_endpoints.is_empty() {
        None
    } else {
        Some(
            render_one(
                &discovery_template(&input.app),
                &templates.discovery,
                &values,
                &config_env,
            )
            .map_err(fail)?,
        )
    };
    Ok(Rendered {
        instance,
        discovery,
    })
}

fn check_input(input: &RenderInput) -> Result<(), String> {
    if !unit::valid_app(&input.app) {
        return Err(format!("app name {:?} is not a DNS label", input.app));
    }
    if !unit::valid_release(&input.release) {
        return Err(format!(
            "release {:?} must be letters and digits (v3)",
            input.release
        ));
    }
    if input.generation == 0 {
        return Err("generation 0 does not exist".into());
    }
    if input.command.trim().is_empty() || input.command.contains('\0') {
        return Err("the command is empty or contains a NUL byte".into());
    }
    let user_ok = input.user.len() <= 32
        && input
            .user
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && input
            .user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !user_ok {
        return Err(format!("user {:?} is not a Unix login name", input.user));
    }
    for (what, path) in [
        ("work directory", &input.work_dir),
        ("node env file", &input.node_env_file),
    ] {
        let plain = path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b));
        if !path.starts_with('/') || !plain || path.contains("/../") || path.ends_with("/..") {
            return Err(format!(
                "{what} {path:?} must be an absolute path of letters, digits, '/', '_', '.', '-'"
            ));
        }
    }
    for endpoint in &input.etcd_endpoints {
        let ok = endpoint.starts_with("http://")
            && endpoint
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\",'\\%$`".contains(&b));
        if !ok {
            return Err(format!(
                "etcd endpoint {endpoint:?} must be http://HOST:PORT"
            ));
        }
    }
    let api_ok = input.etcd_api.starts_with("/v3")
        && input.etcd_api[3..].bytes().all(|b| b.is_ascii_lowercase());
    if !api_ok {
        return Err(format!(
            "etcd API prefix {:?} is not /v3, /v3beta or /v3alpha",
            input.etcd_api
        ));
    }
    if input.etcd_ttl_secs == 0
        || input.etcd_refresh_secs == 0
        || input.etcd_refresh_secs >= input.etcd_ttl_secs
    {
        return Err(
            "the etcd refresh interval must be shorter than the TTL, and both above 0".into(),
        );
    }
    if input.tarball.url.is_empty() || input.tarball.token.is_empty() {
        return Err("the tarball URL and token must not be empty".into());
    }
    Ok(())
}

fn placeholder_values(input: &RenderInput) -> Result<Vec<(&'static str, String)>, String> {
    let set = unit::InstanceName {
        app: input.app.clone(),
        release: input.release.clone(),
        generation: input.generation,
        index: 1,
        port: 1,
    }
    .set();
    Ok(vec![
        ("APP", input.app.clone()),
        ("RELEASE", input.release.clone()),
        ("SET", set),
        ("USER", input.user.clone()),
        ("APP_USER", unit::app_user(&input.app)),
        ("WORK_DIR", input.work_dir.clone()),
        ("NODE_ENV_FILE", input.node_env_file.clone()),
        (
            "MEMORY",
            input
                .memory
                .map_or_else(|| "infinity".to_owned(), |bytes| bytes.to_string()),
        ),
        ("COMMAND", escape_env_value(&input.command)),
        ("TARBALL_URL", escape_env_value(&input.tarball.url)),
        ("TARBALL_TOKEN", escape_env_value(&input.tarball.token)),
        (
            "ETCD_ENDPOINTS",
            escape_env_value(&input.etcd_endpoints.join(",")),
        ),
        ("ETCD_API", input.etcd_api.clone()),
        ("ETCD_TTL", input.etcd_ttl_secs.to_string()),
        ("ETCD_REFRESH", input.etcd_refresh_secs.to_string()),
    ])
}

/// The config vars as the templates carry them: one
/// `Environment="NAP_CONFIG_KEY=VALUE"` line per var that is the app's to
/// set, then `Environment="NAP_CONFIG=KEY …"` naming them. The unit's ExecStart
/// renames them back just before it runs the app; every other command of
/// the unit (some run as root) sees only names that start with `NAP_`, so
/// an app cannot hand them `LD_PRELOAD`, `PATH` or the like.
fn config_env_lines(env: &[(String, String)]) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    for (key, value) in env {
        let key_ok = key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok || value.contains('\0') {
            return Err(format!("config var {key:?} cannot be set"));
        }
        if key == "PORT" || key.starts_with("NAP_") {
            continue;
        }
        // A later value of the same key wins, as in systemd.
        if !keys.contains(&key.as_str()) {
            keys.push(key);
        }
        lines.push(format!(
            "Environment=\"{CONFIG_PREFIX}{key}={}\"",
            escape_env_value(value)
        ));
    }
    lines.push(format!("Environment=\"{CONFIG_LIST}={}\"", keys.join(" ")));
    Ok(lines)
}

/// Escapes a value for the inside of a double-quoted `Environment=`
/// assignment: systemd undoes C escapes there and expands `%` specifiers.
pub fn escape_env_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)))
            }
            c => out.push(c),
        }
    }
    out
}

fn render_one(
    name: &str,
    template: &str,
    values: &[(&'static str, String)],
    config_env: &[String],
) -> Result<RenderedUnit, String> {
    let mut text = String::with_capacity(template.len() + 1024);
    for (number, line) in template.lines().enumerate() {
        if line.trim() == "{{CONFIG_ENV}}" {
            for env_line in config_env {
                text.push_str(env_line);
                text.push('\n');
            }
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            // Comments stay as written (they may talk about placeholders).
            text.push_str(line);
            text.push('\n');
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            text.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(format!(
                    "{name} template line {}: '{{{{' without '}}}}'",
                    number + 1
                ));
            };
            let key = &after[..end];
            let Some((_, value)) = values.iter().find(|(k, _)| *k == key) else {
                return Err(format!(
                    "{name} template line {}: unknown placeholder {{{{{key}}}}}",
                    number + 1
                ));
            };
            text.push_str(value);
            rest = &after[end + 2..];
        }
        text.push_str(rest);
        text.push('\n');
    }
    let options = parse_unit_file(&text).map_err(|e| format!("{name} as rendered: {e}"))?;
    if options.iter().any(|o| o.section == "Install") {
        return Err(format!(
            "{name} has an [Install] section; fleet's state of such units is unreliable"
        ));
    }
    Ok(RenderedUnit {
        name: name.to_owned(),
        text,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::escape_env_value;

    #[test]
    fn env_values_survive_systemd_unquoting() {
        assert_eq!(
            escape_env_value(r#"a "b" \c 100% $PORT"#),
            r#"a \"b\" \\c 100%% $PORT"#
        );
        assert_eq!(escape_env_value("x\ny\u{1}"), "x\\ny\\x01");
    }
}
