//! Judging the entries of a profile: which keys, which values.

use crate::command::validate_command;
use crate::error::{CommandError, Position, ProfileError, ProfileErrorKind, quote_found};
use crate::memory::parse_memory;
use crate::raw::{Entry, Node, Raw, read_entries};
use crate::suggest::closest_known_key;
use crate::{KNOWN_KEYS, Limits, Parsed, Profile};

/// Parses and validates the text of a profile.
///
/// `file` is only used in messages (`profile:2:8: ...`). On success the
/// warnings name unknown keys, one line each with their place in the file.
/// On failure the error is the first problem in file order, except a missing
/// `command`, which is reported last.
pub fn parse(file: &str, text: &str, limits: &Limits) -> Result<Parsed, ProfileError> {
    let Some(entries) = read_entries(file, text)? else {
        return Err(ProfileError::new(
            file,
            Position::START,
            ProfileErrorKind::Empty,
        ));
    };

    let mut seen: Vec<(String, u32)> = Vec::new();
    let mut command = None;
    let mut scale = None;
    let mut memory = None;
    let mut build = None;
    let mut release = None;
    let mut healthcheck = None;
    let mut healthcheck_timeout = None;
    let mut timeout_at = None;
    let mut warnings = Vec::new();
    // An unknown key that looks like `command`, to point at when `command` is missing.
    let mut near_miss: Option<(String, Position)> = None;

    for entry in &entries {
        let name = checked_key_name(file, text, entry)?;
        if let Some((_, first_line)) = seen.iter().find(|(seen_name, _)| *seen_name == name) {
            return Err(ProfileError::new(
                file,
                entry.key.at,
                ProfileErrorKind::DuplicateKey {
                    key: name,
                    first_line: *first_line,
                },
            ));
        }
        seen.push((name.clone(), entry.key.at.line));

        let value = &entry.value;
        let fail = |kind| ProfileError::new(file, value.at, kind);
        match name.as_str() {
            "command" => command = Some(read_command(value).map_err(fail)?),
            "scale" => scale = read_scale(value, limits).map_err(fail)?,
            "memory" => memory = read_memory(value).map_err(fail)?,
            "build" => build = read_step("build", value).map_err(fail)?,
            "release" => release = read_step("release", value).map_err(fail)?,
            "healthcheck" => healthcheck = read_healthcheck(value).map_err(fail)?,
            "healthcheck_timeout" => {
                healthcheck_timeout = read_healthcheck_timeout(value).map_err(fail)?;
                timeout_at = Some(entry.key.at);
            }
            _ => {
                let suggestion = closest_known_key(&name);
                if suggestion == Some("command") && near_miss.is_none() {
                    near_miss = Some((name.clone(), entry.key.at));
                }
                let hint = match suggestion {
                    Some(known) => format!("did you mean '{known}'?"),
                    None => format!("known keys: {}", KNOWN_KEYS.join(", ")),
                };
                warnings.push(format!(
                    "{file}:{}:{}: unknown key {} ({hint})",
                    entry.key.at.line,
                    entry.key.at.column,
                    quote_found(&name)
                ));
            }
        }
    }

    let Some(command) = command else {
        let (near_miss, at) = match near_miss {
            Some((name, at)) => (Some(name), at),
            None => (None, Position::START),
        };
        return Err(ProfileError::new(
            file,
            at,
            ProfileErrorKind::MissingCommand { near_miss },
        ));
    };
    if let (Some(at), Some(_), None) = (timeout_at, healthcheck_timeout, &healthcheck) {
        warnings.push(format!(
            "{file}:{}:{}: healthcheck_timeout has no effect without healthcheck",
            at.line, at.column
        ));
    }
    Ok(Parsed {
        profile: Profile {
            command,
            scale,
            memory,
            build,
            release,
            healthcheck,
            healthcheck_timeout,
        },
        warnings,
    })
}

/// The name of a top-level key, which must be a scalar at the start of its line.
pub(crate) fn checked_key_name(
    file: &str,
    text: &str,
    entry: &Entry,
) -> Result<String, ProfileError> {
    let Some(name) = entry.key_name() else {
        return Err(ProfileError::new(
            file,
            entry.key.at,
            ProfileErrorKind::KeyNotAName {
                found: entry.key.raw.describe().to_owned(),
            },
        ));
    };
    if entry.key.at.column != 1 {
        // Whatever precedes the key on its line: indentation, a flow `{`, `? `.
        let tab = entry
            .key
            .bytes
            .and_then(|(start, _)| {
                let before = text.get(..start)?;
                let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
                Some(before[line_start..].contains('\t'))
            })
            .unwrap_or(false);
        return Err(ProfileError::new(
            file,
            entry.key.at,
            ProfileErrorKind::IndentedKey { key: name, tab },
        ));
    }
    Ok(name)
}

fn read_command(value: &Node) -> Result<String, ProfileErrorKind> {
    let Some(command) = value.scalar_text() else {
        return Err(ProfileErrorKind::Command(CommandError::NotACommand {
            found: value.found(),
        }));
    };
    validate_command(&command).map_err(ProfileErrorKind::Command)?;
    Ok(command)
}

/// `null` or nothing means "not given".
fn read_scale(value: &Node, limits: &Limits) -> Result<Option<u32>, ProfileErrorKind> {
    if matches!(value.raw, Raw::Null) {
        return Ok(None);
    }
    let scale = value
        .scalar_text()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u32>().ok())
        .filter(|&scale| scale <= limits.max_scale);
    match scale {
        Some(scale) => Ok(Some(scale)),
        None => Err(ProfileErrorKind::Scale {
            max_scale: limits.max_scale,
            found: value.found(),
        }),
    }
}

/// `null` or nothing means "not given".
fn read_memory(value: &Node) -> Result<Option<u64>, ProfileErrorKind> {
    if matches!(value.raw, Raw::Null) {
        return Ok(None);
    }
    match value.scalar_text() {
        Some(text) => parse_memory(&text)
            .map(Some)
            .map_err(ProfileErrorKind::Memory),
        None => Err(ProfileErrorKind::MemoryNotAScalar {
            found: value.found(),
        }),
    }
}

/// `build` or `release`: a shell command like `command`; `null` means "not given".
fn read_step(key: &'static str, value: &Node) -> Result<Option<String>, ProfileErrorKind> {
    if matches!(value.raw, Raw::Null) {
        return Ok(None);
    }
    let Some(command) = value.scalar_text() else {
        return Err(ProfileErrorKind::Step {
            key,
            error: CommandError::NotACommand {
                found: value.found(),
            },
        });
    };
    validate_command(&command).map_err(|error| ProfileErrorKind::Step { key, error })?;
    Ok(Some(command))
}

/// An HTTP path that goes into a request line as it is: it must not be able
/// to add a header or a second request (no spaces, CR, LF or other controls).
fn read_healthcheck(value: &Node) -> Result<Option<String>, ProfileErrorKind> {
    if matches!(value.raw, Raw::Null) {
        return Ok(None);
    }
    let path = value.scalar_text().filter(|path| {
        path.starts_with('/')
            && path.len() <= crate::MAX_HEALTHCHECK_BYTES
            && path.bytes().all(|b| b.is_ascii_graphic())
    });
    match path {
        Some(path) => Ok(Some(path)),
        None => Err(ProfileErrorKind::Healthcheck {
            found: value.found(),
        }),
    }
}

/// Whole seconds, `30` or `30s`; `null` means "not given".
fn read_healthcheck_timeout(value: &Node) -> Result<Option<u32>, ProfileErrorKind> {
    if matches!(value.raw, Raw::Null) {
        return Ok(None);
    }
    let seconds = value
        .scalar_text()
        .map(|text| text.strip_suffix('s').map(str::to_owned).unwrap_or(text))
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u32>().ok())
        .filter(|seconds| (1..=crate::MAX_HEALTHCHECK_TIMEOUT_SECS).contains(seconds));
    match seconds {
        Some(seconds) => Ok(Some(seconds)),
        None => Err(ProfileErrorKind::HealthcheckTimeout {
            found: value.found(),
        }),
    }
}
