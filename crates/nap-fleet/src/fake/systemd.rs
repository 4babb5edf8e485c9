//! What the fake machines need of systemd's unit syntax to run a service:
//! specifiers, `Environment=` assignments, command lines with their
//! prefixes, quoting and `$` substitution (systemd.service(5),
//! systemd.exec(5), systemd.unit(5)), for the subset nap's units use.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::unit::{UnitOption, option_values};

/// One `Exec*=` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecCommand {
    /// The program and its arguments, unquoted.
    pub(crate) argv: Vec<String>,
    /// `-`: a failure does not count.
    pub(crate) ignore_failure: bool,
    /// `+` or `!`: runs with full privileges, outside the sandbox options.
    pub(crate) privileged: bool,
    /// `:`: no `$` substitution.
    pub(crate) no_substitution: bool,
}

/// `Restart=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restart {
    No,
    OnFailure,
    Always,
}

/// A path mount of the sandbox options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bind {
    pub(crate) source: String,
    pub(crate) target: String,
    pub(crate) read_only: bool,
    /// `-SOURCE`: skipped when the source does not exist.
    pub(crate) optional: bool,
}

/// A `[Service]` section, read the way systemd reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Service {
    pub(crate) environment: BTreeMap<String, String>,
    /// `EnvironmentFile=`: path and whether it may be missing (`-`).
    pub(crate) environment_files: Vec<(String, bool)>,
    pub(crate) start_pre: Vec<ExecCommand>,
    pub(crate) start: Option<ExecCommand>,
    pub(crate) stop_post: Vec<ExecCommand>,
    pub(crate) restart: Restart,
    pub(crate) restart_sec: Duration,
    /// `StateDirectory=` (under /var/lib), `RuntimeDirectory=` (/run), …:
    /// the variable systemd sets, and the full paths.
    pub(crate) directories: Vec<(&'static str, Vec<String>)>,
    pub(crate) binds: Vec<Bind>,
    /// `TemporaryFileSystem=`: path, read-only.
    pub(crate) temporary: Vec<(String, bool)>,
    /// `InaccessiblePaths=`: path, optional.
    pub(crate) inaccessible: Vec<(String, bool)>,
    pub(crate) private_tmp: bool,
}

/// systemd's directories of a system manager, as specifiers and as the
/// bases of `StateDirectory=` and its kin.
pub(crate) const STATE_DIR: &str = "/var/lib";
pub(crate) const RUNTIME_DIR: &str = "/run";
pub(crate) const CACHE_DIR: &str = "/var/cache";
pub(crate) const LOGS_DIR: &str = "/var/log";

/// Fills systemd's specifiers in `text` for unit `name` on machine
/// `machine_id`.
pub(crate) fn specifiers(text: &str, name: &str, machine_id: &str) -> Result<String, String> {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let (prefix, instance) = stem.split_once('@').unwrap_or((stem, ""));
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let value = match chars.next() {
            Some('%') => "%",
            Some('i' | 'I') => instance,
            Some('n') => name,
            Some('N') => stem,
            Some('p' | 'P') => prefix,
            Some('S') => STATE_DIR,
            Some('t') => RUNTIME_DIR,
            Some('C') => CACHE_DIR,
            Some('L') => LOGS_DIR,
            Some('m') => machine_id,
            Some(other) => return Err(format!("the fake does not know the specifier %{other}")),
            None => return Err("a lone % at the end".to_owned()),
        };
        out.push_str(value);
    }
    Ok(out)
}

/// Splits a value into words the way systemd does for command lines and
/// `Environment=`: single and double quotes, C escapes, whitespace between
/// words. A quote may start in the middle of a word.
pub(crate) fn words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => word.push(unescape(&mut chars)?),
                (_, c) => word.push(c),
            }
        }
        if let Some(q) = quote {
            return Err(format!("an unterminated {q} in {text:?}"));
        }
        words.push(word);
    }
}

fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, String> {
    let hex = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, digits: usize| {
        let text: String = chars.take(digits).collect();
        u32::from_str_radix(&text, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| format!("a bad escape \\x{text}"))
    };
    match chars.next() {
        Some('a') => Ok('\u{7}'),
        Some('b') => Ok('\u{8}'),
        Some('f') => Ok('\u{c}'),
        Some('n') => Ok('\n'),
        Some('r') => Ok('\r'),
        Some('t') => Ok('\t'),
        Some('v') => Ok('\u{b}'),
        Some('s') => Ok(' '),
        Some('x') => hex(chars, 2),
        Some('u') => hex(chars, 4),
        Some(c @ ('\\' | '"' | '\'' | ' ' | ';')) => Ok(c),
        Some(other) => Err(format!("the fake does not know the escape \\{other}")),
        None => Err("a lone \\ at the end".to_owned()),
    }
}

/// Reads one `Exec*=` value (specifiers already filled).
pub(crate) fn exec_command(value: &str) -> Result<ExecCommand, String> {
    let mut rest = value.trim_start();
    let mut command = ExecCommand {
        argv: Vec::new(),
        ignore_failure: false,
        privileged: false,
        no_substitution: false,
    };
    while let Some(c) = rest.chars().next() {
        match c {
            '-' => command.ignore_failure = true,
            '+' | '!' => command.privileged = true,
            ':' => command.no_substitution = true,
            '@' => return Err("the fake does not support the @ prefix".to_owned()),
            _ => break,
        }
        rest = &rest[1..];
    }
    command.argv = words(rest)?;
    if command.argv.is_empty() {
        return Err(format!("an empty command line: {value:?}"));
    }
    if command.argv.iter().any(|word| word == ";") {
        return Err("the fake does not run several commands in one line".to_owned());
    }
    Ok(command)
}

/// systemd's substitution at exec time: `$$` is `$`, `${NAME}` the value,
/// and a word that is exactly `$NAME` the value split at whitespace.
pub(crate) fn substitute(command: &ExecCommand, env: &BTreeMap<String, String>) -> Vec<String> {
    if command.no_substitution {
        return command.argv.clone();
    }
    let mut argv = Vec::new();
    for word in &command.argv {
        if let Some(name) = word.strip_prefix('$')
            && !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            if let Some(value) = env.get(name) {
                argv.extend(value.split_whitespace().map(str::to_owned));
            }
            continue;
        }
        let mut out = String::with_capacity(word.len());
        let mut rest = word.as_str();
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(more) = after.strip_prefix('$') {
                out.push('$');
                rest = more;
            } else if let Some(braced) = after.strip_prefix('{')
                && let Some(end) = braced.find('}')
            {
                out.push_str(env.get(&braced[..end]).map_or("", String::as_str));
                rest = &braced[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        argv.push(out);
    }
    argv
}

/// Reads the `[Service]` section of a unit's options, specifiers filled.
pub(crate) fn service(
    options: &[UnitOption],
    name: &str,
    machine_id: &str,
) -> Result<Service, String> {
    let values = |key: &str| -> Result<Vec<String>, String> {
        option_values(options, "Service", key)
            .into_iter()
            .map(|value| specifiers(value, name, machine_id))
            .collect()
    };
    let mut environment = BTreeMap::new();
    for line in values("Environment")? {
        if line.trim().is_empty() {
            environment.clear();
        }
        for word in words(&line)? {
            // systemd ignores assignments it cannot read, with a warning.
            if let Some((key, value)) = word.split_once('=') {
                environment.insert(key.to_owned(), value.to_owned());
            }
        }
    }
    let optional_paths = |key: &str| -> Result<Vec<(String, bool)>, String> {
        let mut paths = Vec::new();
        for line in values(key)? {
            for word in words(&line)? {
                match word.strip_prefix('-') {
                    Some(path) => paths.push((path.to_owned(), true)),
                    None => paths.push((word, false)),
                }
            }
        }
        Ok(paths)
    };
    let commands = |key: &str| -> Result<Vec<ExecCommand>, String> {
        values(key)?.iter().map(|v| exec_command(v)).collect()
    };
    let mut start = commands("ExecStart")?;
    if start.len() > 1 {
        return Err("more than one ExecStart= (Type=simple)".to_owned());
    }
    let restart = match values("Restart")?.last().map(String::as_str) {
        None | Some("no") => Restart::No,
        Some("always") => Restart::Always,
        Some("on-failure") => Restart::OnFailure,
        Some(other) => return Err(format!("the fake does not know Restart={other}")),
    };
    let restart_sec = match values("RestartSec")?.last() {
        None => Duration::from_millis(100),
        Some(value) => Duration::from_secs_f64(
            value
                .trim_end_matches('s')
                .parse::<f64>()
                .map_err(|_| format!("RestartSec={value} is not a number of seconds"))?,
        ),
    };
    let mut directories = Vec::new();
    for (key, variable, base) in [
        ("StateDirectory", "STATE_DIRECTORY", STATE_DIR),
        ("RuntimeDirectory", "RUNTIME_DIRECTORY", RUNTIME_DIR),
        ("CacheDirectory", "CACHE_DIRECTORY", CACHE_DIR),
        ("LogsDirectory", "LOGS_DIRECTORY", LOGS_DIR),
    ] {
        let mut paths = Vec::new();
        for line in values(key)? {
            for word in words(&line)? {
                if word.starts_with('/') || word.split('/').any(|part| part == "..") {
                    return Err(format!("{key}={word} must be a relative path"));
                }
                paths.push(format!("{base}/{word}"));
            }
        }
        if !paths.is_empty() {
            directories.push((variable, paths));
        }
    }
    let mut binds = Vec::new();
    for (key, read_only) in [("BindPaths", false), ("BindReadOnlyPaths", true)] {
        for line in values(key)? {
            for word in words(&line)? {
                let (optional, word) = match word.strip_prefix('-') {
                    Some(rest) => (true, rest.to_owned()),
                    None => (false, word),
                };
                let (source, target) = match word.split_once(':') {
                    Some((source, target)) => (source.to_owned(), target.to_owned()),
                    None => (word.clone(), word),
                };
                binds.push(Bind {
                    source,
                    target,
                    read_only,
                    optional,
                });
            }
        }
    }
    let mut temporary = Vec::new();
    for line in values("TemporaryFileSystem")? {
        for word in words(&line)? {
            let (path, options) = word.split_once(':').unwrap_or((&word, ""));
            temporary.push((path.to_owned(), options.split(',').any(|o| o == "ro")));
        }
    }
    Ok(Service {
        environment,
        environment_files: optional_paths("EnvironmentFile")?,
        start_pre: commands("ExecStartPre")?,
        start: start.pop(),
        stop_post: commands("ExecStopPost")?,
        restart,
        restart_sec,
        directories,
        binds,
        temporary,
        inaccessible: optional_paths("InaccessiblePaths")?,
        private_tmp: values("PrivateTmp")?
            .last()
            .is_some_and(|v| matches!(v.as_str(), "yes" | "true" | "1" | "on")),
    })
}

/// An `EnvironmentFile=`'s assignments: `KEY=VALUE` lines, `#` and `;`
/// comments, values optionally in quotes.
pub(crate) fn environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            Some((key.trim().to_owned(), unquoted.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifiers_and_words() {
        assert_eq!(
            specifiers("%S/a/%p/%i %% %n", "web@v1-1-2.service", "m").as_deref(),
            Ok("/var/lib/a/web/v1-1-2 % web@v1-1-2.service")
        );
        assert!(specifiers("%z", "a.service", "m").is_err());
        assert!(words("it's").is_err());
        assert_eq!(
            words(r#"/bin/sh -c 'a "b" $$c' x\sy "q\"r" it'x'"#).expect("words"),
            ["/bin/sh", "-c", r#"a "b" $$c"#, "x y", r#"q"r"#, "itx"]
        );
    }

    #[test]
    fn command_lines() {
        let command = exec_command(r#"+-/bin/sh -c 'echo $${HOME} ${A} $$B'"#).expect("reads");
        assert!(command.privileged && command.ignore_failure);
        let env = BTreeMap::from([("A".to_owned(), "1 2".to_owned())]);
        assert_eq!(
            substitute(&command, &env),
            ["/bin/sh", "-c", "echo ${HOME} 1 2 $B"]
        );
        let split = exec_command("/bin/echo $A").expect("reads");
        assert_eq!(substitute(&split, &env), ["/bin/echo", "1", "2"]);
        assert!(exec_command("@/bin/sh sh").is_err());
    }

    #[test]
    fn environment_files() {
        assert_eq!(
            environment_file("# c\nA=1\n B = \"x y\" \n;d\nnot an assignment\n"),
            [("A".into(), "1".into()), ("B".into(), "x y".into())]
        );
    }
}
