//! Rewriting the `command` of a profile while keeping everything else.

use crate::Limits;
use crate::command::validate_command;
use crate::error::{Position, ProfileError, ProfileErrorKind};
use crate::parse::{checked_key_name, parse};
use crate::raw::{Entry, Raw, read_entries};

/// Returns `text` with the value of `command` replaced by `new_command`.
///
/// Every other byte is kept: other keys, their order, comments, blank lines
/// and line endings, and a comment after the old value on its line. The old
/// value goes entirely, including the continuation lines of a block scalar
/// (`|`, `>`) or multi-line string. Without a `command` key, one is appended
/// as the last line.
///
/// The new value is written plain when that is unambiguous
/// (`command: python3 -m http.server $PORT`) and as a YAML double-quoted
/// string otherwise (`command: "gunicorn app:app"`).
///
/// `new_command` must pass the same checks as a `command` in a profile. The
/// result is parsed again and must yield exactly `new_command`; if it does
/// not, or if the profile is invalid for another reason (a bad `scale`,
/// malformed YAML), that is the error. `scale` is not checked against a
/// server maximum here, since rewriting the command does not change it.
pub fn replace_command(file: &str, text: &str, new_command: &str) -> Result<String, ProfileError> {
    let entries = read_entries(file, text)?.unwrap_or_default();
    let existing = entries
        .iter()
        .find(|entry| entry.key_name().as_deref() == Some("command"));

    let at = existing.map_or_else(|| end_position(text), |entry| entry.value.at);
    validate_command(new_command)
        .map_err(|error| ProfileError::new(file, at, ProfileErrorKind::Command(error)))?;

    // The bytes text[start..end] give way to `lead` and the encoded command.
    let (start, end, lead, trail) = match existing {
        Some(entry) => {
            checked_key_name(file, text, entry)?;
            let (start, end, lead) = value_range(text, entry).ok_or_else(|| {
                ProfileError::new(file, entry.key.at, ProfileErrorKind::ReplaceFailed)
            })?;
            (start, end, lead.to_owned(), "")
        }
        None => {
            let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
            let lead = if text.is_empty() || text.ends_with('\n') {
                "command: ".to_owned()
            } else {
                format!("{newline}command: ")
            };
            (text.len(), text.len(), lead, newline)
        }
    };

    let limits = Limits {
        max_scale: u32::MAX,
    };
    let mut last_error = ProfileError::new(file, at, ProfileErrorKind::ReplaceFailed);
    let (Some(before), Some(after)) = (text.get(..start), text.get(end..)) else {
        return Err(last_error);
    };
    for encoded in [plain(new_command), Some(double_quoted(new_command))]
        .into_iter()
        .flatten()
    {
        let candidate = format!("{before}{lead}{encoded}{trail}{after}");
        match parse(file, &candidate, &limits) {
            Ok(parsed) if parsed.profile.command == new_command => return Ok(candidate),
            Ok(_) => {}
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

/// The byte range of the old value of `entry` and what to put before the
/// new value there (a space after the colon, when the range starts at it).
fn value_range(text: &str, entry: &Entry) -> Option<(usize, usize, &'static str)> {
    let (_, key_end) = entry.key.bytes?;
    let after_key = text.get(key_end..)?;
    let colon = key_end + after_key.find(|c: char| c != ' ' && c != '\t')?;
    if text.get(colon..)?.chars().next()? != ':' {
        return None;
    }
    let colon_end = colon + 1;
    let value = &entry.value;
    let (value_start, value_end) = value.bytes?;

    match value.raw {
        // A list or mapping: only its first token has a span, so take the
        // rest of the key line and every indented line after it.
        Raw::List | Raw::Map(_) => Some((colon_end, continuation_end(text, colon_end), " ")),
        // `command:` with nothing after it: insert after the colon, keeping
        // any comment on the line.
        Raw::Null if value_start == value_end => Some((colon_end, colon_end, " ")),
        // A value starting on a later line (block scalar, or a plain value
        // on the next line): drop everything from the colon, `|` header
        // included, up to the end of the value's last line.
        _ if value.at.line > entry.key.at.line => {
            let mut end = value_end.max(colon_end);
            while end > colon_end
                && text
                    .get(..end)
                    .is_some_and(|before| before.ends_with(['\n', '\r', ' ', '\t']))
            {
                end -= 1;
            }
            Some((colon_end, end, " "))
        }
        // A value on the key line (perhaps continued below): replace just
        // it, keeping any anchor or tag before it and comment after it.
        _ => (value_start >= colon_end && value_end <= text.len()).then_some((
            value_start,
            value_end,
            "",
        )),
    }
}

/// The end of the content of the line holding `from`, or of the last
/// indented line after it (blank lines in between included, trailing ones not).
fn continuation_end(text: &str, from: usize) -> usize {
    let line_end = |start: usize| text[start..].find('\n').map_or(text.len(), |i| start + i);
    let content_end = |start: usize, end: usize| {
        if text[start..end].ends_with('\r') {
            end - 1
        } else {
            end
        }
    };
    let mut end_of_line = line_end(from);
    let mut end = content_end(from, end_of_line);
    while end_of_line < text.len() {
        let next = end_of_line + 1;
        let next_end = line_end(next);
        let line = &text[next..next_end];
        if line.trim().is_empty() {
            end_of_line = next_end;
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            break;
        }
        end = content_end(next, next_end);
        end_of_line = next_end;
    }
    end
}

/// Where an appended `command` line will be, for errors about it.
fn end_position(text: &str) -> Position {
    let lines = text.lines().count();
    Position {
        line: u32::try_from(lines + 1).unwrap_or(u32::MAX),
        column: 10,
    }
}

/// `command` written as a plain YAML scalar, when it is plainly safe to:
/// printable ASCII without `#` or `:` (which could start a comment or a
/// mapping), no surrounding spaces, and a first character that is no YAML
/// indicator. The caller still checks that it reads back unchanged
/// (`null` or `~` would not).
fn plain(command: &str) -> Option<String> {
    let first = command.chars().next()?;
    let safe_first = first.is_ascii_alphanumeric() || matches!(first, '/' | '.' | '_' | '$');
    let safe_rest = command
        .chars()
        .all(|c| (c == ' ' || c.is_ascii_graphic()) && c != '#' && c != ':');
    (safe_first && safe_rest && !command.ends_with(' ')).then(|| command.to_owned())
}

/// `command` as a YAML double-quoted string: `\` and `"` escaped, line
/// breaks and other control characters as escapes, everything else as is.
fn double_quoted(command: &str) -> String {
    let mut out = String::with_capacity(command.len() + 2);
    out.push('"');
    for c in command.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // YAML folds these line breaks and would drop a BOM.
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if c.is_control() || c == '\u{feff}' => {
                out.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
