//! Turning a [`Policy`] and a command into a bwrap invocation, and spawning it.
//!
//! What the caller runs is a small `/bin/sh` script (`$0` is bwrap's path):
//!
//! ```sh
//! PRELUDE                      # the caller's, e.g. joining the instance's cgroup
//! exec "$0" --args 3 -- 'COMMAND' 'WORDS' 3<&0 4<<'…' 5<<'…' </dev/null
//! …the sandbox's /etc/passwd…
//! …the sandbox's /etc/group…
//! ```
//!
//! - bwrap reads its options NUL-separated from fd 3, a copy of the shell's stdin, onto which
//!   [`Launch::spawn`] writes them. So no host path and no environment value shows in any
//!   process's argv (`ps` on the host lists every process's argv, and bwrap's init keeps its
//!   argv for as long as the sandbox runs). Only the command itself (after `--`) must be on
//!   the real argv: bwrap takes nothing after `--` from the options file.
//! - The environment is in those options too (`--clearenv`, `--setenv`), so the shell and
//!   bwrap itself start with nothing but `PATH`: a variable like `LD_PRELOAD` or
//!   `GCONV_PATH` from an app's config never reaches a process that runs as root.
//! - With [`Identity::AppUser`], bwrap runs as root (without a user namespace, so that the
//!   uid outside is the app's own uid) and execs `setpriv`, which switches to the app's uid
//!   and gid, clears the supplementary groups and drops every capability. `setpriv` still
//!   starts as root, so the app's variables travel under other names (`NAP_SANDBOX_ENV_*`)
//!   and a tiny shell, already running as the app, renames them before it execs the command.
//!   A command that is a `/bin/sh -c` script itself (every instance's wrapper is) does the
//!   renaming in its own first line instead, which saves one shell per start.
//! - `/etc/passwd` and `/etc/group` are the sandbox's own (so `getpwuid` knows the app's uid,
//!   and the host's users stay unlisted); they come in on fds 4 and 5, from here-documents,
//!   because they hold nothing secret.
//! - stdin becomes `/dev/null` before bwrap starts (or, for a one-off `run` that reads its
//!   client's input, the stdout socket: [`AppStdin`]), and bwrap closes fds 3 to 5 once it
//!   has read them, so the app starts with nothing open but stdin, stdout and stderr.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::etc::{ETC_DIRECTORIES, ETC_FILES};
use crate::policy::{
    APP_DIR, APP_USER_NAME, CACHE_DIR, HOME_DIR, Identity, LaunchError, Policy, RESERVED_PREFIX,
    STORAGE_DIR,
};
use crate::sandbox::Sandbox;

/// The `PATH` of the wrapper shell and of bwrap itself (never the app's).
const HOST_PATH: &str = "/usr/bin:/bin";

/// Where `setpriv` is, on the host and (through `/usr`) inside the sandbox.
pub(crate) const SETPRIV: &str = "/usr/bin/setpriv";

/// The shell that renames the app's variables once it runs as the app (see the module docs).
const RENAME_SHELL: &str = "eval \"$NAP_SANDBOX_RENAME\"; exec \"$@\"";

/// The renaming alone, as the first line of a command's own `/bin/sh -c` script.
const RENAME_LINE: &str = "eval \"$NAP_SANDBOX_RENAME\"";

/// Directories at the top of `/` where programs find binaries and libraries besides `/usr`:
/// symlinks into `/usr` on a merged-usr system, directories on an older one.
const ROOT_PROGRAM_DIRS: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// One of [`ROOT_PROGRAM_DIRS`] as the host has it.
#[derive(Debug, Clone)]
pub(crate) enum RootEntry {
    Symlink { at: PathBuf, target: PathBuf },
    Directory(PathBuf),
}

/// Reads how the host lays out [`ROOT_PROGRAM_DIRS`].
pub(crate) fn host_root_entries() -> Vec<RootEntry> {
    ROOT_PROGRAM_DIRS
        .iter()
        .filter_map(|name| {
            let at = Path::new("/").join(name);
            let meta = std::fs::symlink_metadata(&at).ok()?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&at).ok()?;
                Some(RootEntry::Symlink { at, target })
            } else if meta.is_dir() {
                Some(RootEntry::Directory(at))
            } else {
                None
            }
        })
        .collect()
}

/// The host paths every sandbox sees read-only, or copies of (whatever the operator adds):
/// nothing of nap's may lie inside them.
pub(crate) fn base_host_paths(root_entries: &[RootEntry]) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("/usr")];
    for entry in root_entries {
        if let RootEntry::Directory(dir) = entry {
            paths.push(dir.clone());
        }
    }
    for file in ETC_FILES.iter().chain(&ETC_DIRECTORIES) {
        if let Ok(resolved) = std::fs::canonicalize(Path::new("/etc").join(file)) {
            paths.push(resolved);
        }
    }
    paths
}

/// Where the sandboxed app's stdin comes from. The sandbox's own stdin carries bwrap's
/// options (and ends with them), so it cannot be the app's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppStdin {
    /// `/dev/null`: the app reads end of file at once (instances).
    #[default]
    Null,
    /// The same descriptor as its stdout. Give the command a socket as stdout (one end of a
    /// `UnixStream::pair`, say): the app writes its output to the socket and reads its input
    /// from it, as a program started by inetd does, and shutting down the writing side of
    /// the other end is its end of file. How a one-off `run` gets its client's input without
    /// a fourth descriptor (which only unsafe code could hand a child).
    FromStdout,
}

/// A sandboxed command, ready to spawn: see the module docs for how it runs.
#[derive(Debug, Clone)]
pub struct Launch {
    bwrap: PathBuf,
    /// bwrap's options, written on fd 3.
    options: Vec<OsString>,
    /// What runs in the sandbox (after bwrap's `--`).
    command: Vec<OsString>,
    passwd: String,
    group: String,
}

impl Sandbox {
    /// Builds the sandbox for one process: `command` (`["/bin/sh", "-c", "..."]`) run under
    /// `policy`. Checks the policy (directories exist, variable names, the identity fits how
    /// nap runs) and touches nothing.
    pub fn launch<S: AsRef<OsStr>>(
        &self,
        policy: &Policy,
        command: &[S],
    ) -> Result<Launch, LaunchError> {
        let (uid, gid) = match policy.identity {
            Identity::AppUser { uid, gid } => {
                if uid == 0 || gid == 0 {
                    return Err(LaunchError::RootIdentity { uid, gid });
                }
                if self.euid != 0 {
                    return Err(LaunchError::AppUserWithoutRoot { euid: self.euid });
                }
                (uid, gid)
            }
            Identity::DaemonUser => {
                if self.euid == 0 {
                    return Err(LaunchError::SharedUidAsRoot);
                }
                (self.euid, self.egid)
            }
        };
        if command.is_empty() {
            return Err(LaunchError::EmptyCommand);
        }
        if let Some(index) = command
            .iter()
            .position(|word| word.as_ref().as_bytes().contains(&0))
        {
            return Err(LaunchError::NulInCommand { index });
        }
        policy.check_directories()?;
        let env = policy.app_environment()?;

        let mut options = Options::default();
        self.namespaces_and_privileges(&mut options, policy.identity);
        let etc = self
            .etc
            .current()
            .map_err(|source| LaunchError::EtcCopies {
                dir: self.state_dir.clone(),
                source,
            })?;
        self.filesystem(&mut options, policy, &etc);
        options.push(["--chdir", APP_DIR, "--clearenv"]);

        let mut sandboxed: Vec<OsString> = Vec::new();
        match policy.identity {
            Identity::AppUser { uid, gid } => {
                let mut rename = String::new();
                for (name, value) in &env {
                    let carrier = format!("{RESERVED_PREFIX}ENV_{name}");
                    rename.push_str(&format!("export {name}=\"${carrier}\"; unset {carrier}\n"));
                    options.push(["--setenv", &carrier, value]);
                }
                rename.push_str(&format!("unset {RESERVED_PREFIX}RENAME\n"));
                options.push(["--setenv", &format!("{RESERVED_PREFIX}RENAME"), &rename]);
                sandboxed.extend(
                    [
                        SETPRIV,
                        &format!("--reuid={uid}"),
                        &format!("--regid={gid}"),
                        "--clear-groups",
                        "--inh-caps=-all",
                        "--bounding-set=-all",
                        "--",
                    ]
                    .map(OsString::from),
                );
                sandboxed.extend(renaming(command));
            }
            Identity::DaemonUser => {
                for (name, value) in &env {
                    options.push(["--setenv", name, value]);
                }
                sandboxed.extend(command.iter().map(|word| word.as_ref().to_owned()));
            }
        }

        Ok(Launch {
            bwrap: self.bwrap.clone(),
            options: options.0,
            command: sandboxed,
            passwd: passwd(uid, gid),
            group: group(gid),
        })
    }

    fn namespaces_and_privileges(&self, options: &mut Options, identity: Identity) {
        if identity == Identity::DaemonUser {
            // The app's uid is nap's own: a user namespace is what takes its capabilities
            // on the host away, and the app may not make further ones (each is more kernel
            // surface, and nothing an app needs).
            options.push(["--unshare-user", "--disable-userns"]);
        }
        // No network namespace: the router and the health checks reach the app on
        // 127.0.0.1:$PORT of the host.
        options.push([
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]);
        if let Identity::AppUser { .. } = identity {
            // bwrap run by root keeps every capability unless told otherwise: keep only what
            // setpriv needs to switch to the app's uid and drop the bounding set. setpriv
            // drops all three before the app starts.
            options.push([
                "--cap-drop",
                "ALL",
                "--cap-add",
                "CAP_SETUID",
                "--cap-add",
                "CAP_SETGID",
                "--cap-add",
                "CAP_SETPCAP",
            ]);
        }
    }

    fn filesystem(&self, options: &mut Options, policy: &Policy, etc: &Path) {
        options.push(["--ro-bind", "/usr", "/usr"]);
        for entry in &self.root_entries {
            match entry {
                RootEntry::Symlink { at, target } => {
                    options.push_os(["--symlink".as_ref(), target.as_os_str(), at.as_os_str()]);
                }
                RootEntry::Directory(dir) => {
                    options.push_os(["--ro-bind".as_ref(), dir.as_os_str(), dir.as_os_str()]);
                }
            }
        }
        // /etc before the operator's paths: one of them may lie inside it (its mount point
        // is in the copies).
        options.push_os(["--ro-bind".as_ref(), etc.as_os_str(), "/etc".as_ref()]);
        for dir in ETC_DIRECTORIES {
            let path = Path::new("/etc").join(dir);
            if path.is_dir() {
                options.push_os(["--ro-bind-try".as_ref(), path.as_os_str(), path.as_os_str()]);
            }
        }
        // bwrap 0.8 makes the missing parents of a mount point with mode 0700, which would
        // leave an operator's `/opt` unreadable to an app that is not root: make them first,
        // 0755.
        let mut parents = BTreeSet::new();
        let mount_points = self
            .ro_paths
            .bound
            .iter()
            .flat_map(|(resolved, configured)| [resolved.as_path(), configured.as_path()]);
        for mount_point in mount_points {
            for ancestor in mount_point.ancestors().skip(1) {
                let exists = ancestor.starts_with("/usr") || ancestor.starts_with("/etc");
                if ancestor.parent().is_some() && !exists {
                    parents.insert(ancestor.to_owned());
                }
            }
        }
        for parent in &parents {
            options.push_os(["--dir".as_ref(), parent.as_os_str()]);
        }
        for (resolved, configured) in &self.ro_paths.bound {
            options.push_os([
                "--ro-bind".as_ref(),
                resolved.as_os_str(),
                resolved.as_os_str(),
            ]);
            // The configured path is a symlink on the host (`/opt/python` to
            // `/opt/python-3.12`): keep it one inside, so absolute paths through it work.
            let exists = configured.starts_with("/usr") || configured.starts_with("/etc");
            if configured != resolved && !exists {
                options.push_os([
                    "--symlink".as_ref(),
                    resolved.as_os_str(),
                    configured.as_os_str(),
                ]);
            }
        }
        options.push([
            "--perms",
            "0644",
            "--ro-bind-data",
            "4",
            "/etc/passwd",
            "--perms",
            "0644",
            "--ro-bind-data",
            "5",
            "/etc/group",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            // bwrap's /dev/tty is the host's, which opens the controlling terminal of
            // whoever started nap in a terminal: with it, an app could push keystrokes into
            // that terminal (TIOCSTI). The sandbox's /dev/tty is /dev/null instead.
            "--dev-bind",
            "/dev/null",
            "/dev/tty",
            "--perms",
            "1777",
            "--tmpfs",
            "/dev/shm",
            // In a user namespace the app owns bwrap's /dev; nothing may be added to it.
            "--remount-ro",
            "/dev",
            "--perms",
            "1777",
            "--tmpfs",
            "/tmp",
        ]);
        let release_bind = if policy.release_writable {
            "--bind"
        } else {
            "--ro-bind"
        };
        options.push_os([
            release_bind.as_ref(),
            policy.release.as_os_str(),
            APP_DIR.as_ref(),
        ]);
        options.push_os([
            "--bind".as_ref(),
            policy.storage.as_os_str(),
            STORAGE_DIR.as_ref(),
        ]);
        if let Some(cache) = &policy.cache {
            options.push_os(["--bind".as_ref(), cache.as_os_str(), CACHE_DIR.as_ref()]);
        }
        // Last, so that every mount point above exists: the sandbox's own root (where bwrap
        // made `/etc`, `/app`, ...) becomes read-only, so the app can write nowhere but its
        // storage, the cache, /tmp and /dev/shm.
        options.push(["--remount-ro", "/"]);
    }
}

impl Launch {
    /// The options bwrap reads from fd 3, for logs and tests; nothing of it is on any argv.
    pub fn bwrap_options(&self) -> &[OsString] {
        &self.options
    }

    /// What runs inside the sandbox (after bwrap's `--`): the policy's command, behind
    /// `setpriv` and the renaming shell with [`Identity::AppUser`].
    pub fn sandboxed_command(&self) -> &[OsString] {
        &self.command
    }

    /// The command that starts the sandbox: `/bin/sh` running `prelude` and then exec'ing
    /// bwrap, so bwrap (and every process of the sandbox) inherits whatever the prelude set
    /// up, such as membership of a cgroup. The prelude's positional parameters are the
    /// command's further arguments (`command.arg(cgroup_dir)` is `$1`); it must not read
    /// stdin, which carries bwrap's options.
    ///
    /// The command's environment is `PATH` only and its stdin is piped; set stdout, stderr
    /// and the process group as usual, then start it with [`Launch::spawn`].
    pub fn command(&self, prelude: &str) -> Command {
        self.command_with_stdin(prelude, AppStdin::Null)
    }

    /// [`Launch::command`], with the app's stdin taken from `stdin` (see [`AppStdin`]).
    pub fn command_with_stdin(&self, prelude: &str, stdin: AppStdin) -> Command {
        let mut script: Vec<u8> = Vec::new();
        script.extend_from_slice(prelude.as_bytes());
        script.extend_from_slice(b"\nexec \"$0\" --args 3 --");
        for word in &self.command {
            script.push(b' ');
            script.extend_from_slice(&single_quoted(word));
        }
        script.extend_from_slice(b" 3<&0 4<<'NAP_SANDBOX_PASSWD' 5<<'NAP_SANDBOX_GROUP' ");
        script.extend_from_slice(match stdin {
            AppStdin::Null => b"</dev/null\n".as_slice(),
            AppStdin::FromStdout => b"<&1\n".as_slice(),
        });
        script.extend_from_slice(self.passwd.as_bytes());
        script.extend_from_slice(b"NAP_SANDBOX_PASSWD\n");
        script.extend_from_slice(self.group.as_bytes());
        script.extend_from_slice(b"NAP_SANDBOX_GROUP\n");

        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(OsString::from_vec(script))
            .arg(&self.bwrap)
            .env_clear()
            .env("PATH", HOST_PATH)
            .stdin(Stdio::piped());
        command
    }

    /// Spawns `command` (made by [`Launch::command`]) and writes bwrap's options on its
    /// stdin, from a task of its own so that a large environment never blocks the caller
    /// (the task ends when bwrap has read them, or when the process is gone).
    ///
    /// Before it spawns, every descriptor of this process from 3 up is marked close-on-exec:
    /// bwrap passes whatever it inherits on to the app, and a descriptor that whoever started
    /// nap leaked to it (a directory outside, say) would let the app reach past the sandbox.
    /// nap hands nothing to a child by inheritance but its stdio, so this costs nothing else.
    pub fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        close_fds::set_fds_cloexec_threadsafe(3, &[]);
        let mut child = command.spawn()?;
        let Some(mut stdin) = child.stdin.take() else {
            let _ = child.start_kill();
            return Err(io::Error::other(
                "the sandbox's stdin must be piped: it carries bwrap's options",
            ));
        };
        let mut options = Vec::new();
        for option in &self.options {
            options.extend_from_slice(option.as_bytes());
            options.push(0);
        }
        tokio::spawn(async move {
            // A process that is gone before reading (the prelude failed) says why in its
            // exit status; the caller sees that.
            if let Err(error) = stdin.write_all(&options).await {
                tracing::debug!(%error, "sandbox did not read its options");
            }
        });
        Ok(child)
    }
}

/// `command` behind the shell that renames the app's variables (as the app, after setpriv).
/// A command that is itself `/bin/sh -c SCRIPT ...` gets the renaming as the first line of
/// its own script, which saves a shell per start; any other runs under [`RENAME_SHELL`].
fn renaming<S: AsRef<OsStr>>(command: &[S]) -> Vec<OsString> {
    let words: Vec<&OsStr> = command.iter().map(AsRef::as_ref).collect();
    if let [shell, flag, script, rest @ ..] = words.as_slice()
        && *shell == "/bin/sh"
        && *flag == "-c"
    {
        let mut first = RENAME_LINE.as_bytes().to_vec();
        first.push(b'\n');
        first.extend_from_slice(script.as_bytes());
        let mut renamed = vec![OsString::from(*shell), OsString::from(*flag)];
        renamed.push(OsString::from_vec(first));
        renamed.extend(rest.iter().map(|word| word.to_os_string()));
        return renamed;
    }
    let mut wrapped: Vec<OsString> = ["/bin/sh", "-c", RENAME_SHELL, "nap-sandbox"]
        .map(OsString::from)
        .to_vec();
    wrapped.extend(words.iter().map(|word| word.to_os_string()));
    wrapped
}

/// bwrap's options as they are built.
#[derive(Default)]
struct Options(Vec<OsString>);

impl Options {
    fn push<const N: usize>(&mut self, words: [&str; N]) {
        self.0.extend(words.map(OsString::from));
    }

    fn push_os<const N: usize>(&mut self, words: [&OsStr; N]) {
        self.0.extend(words.map(OsStr::to_owned));
    }
}

/// A prelude line for [`Launch::command`] that moves the outer shell into the cgroup whose
/// directory is the positional parameter `param` (`1` for `$1`), or exits with `failed`.
///
/// The shell writes `0`, "the writer itself", and on cgroup v1 into the cgroup's `tasks`,
/// which moves the calling thread alone. For that a current kernel (seen on 6.18) skips the
/// global lock that moving a whole process (`cgroup.procs`) takes, and the first taking of
/// that lock after a quiet spell waits for an RCU grace period while it holds the cgroup
/// mutex: 10–14 ms on the machines nap is tested on, during which every cgroup operation of
/// the host waits too (the next instance's `mkdir` among them); an older kernel takes the
/// lock either way. The shell has a single thread, so moving it moves the process, and what
/// it execs and forks stays inside. A v2 cgroup of the usual (domain) kind has no `tasks`;
/// there it writes `cgroup.procs`.
pub fn join_cgroup(param: u8, failed: i32) -> String {
    format!(
        "if [ -e \"${param}/tasks\" ]; then echo 0 > \"${param}/tasks\"; \
         else echo 0 > \"${param}/cgroup.procs\"; fi || exit {failed}"
    )
}

/// `word` in single quotes for `/bin/sh`: every byte literal, `'` written as `'\''`.
fn single_quoted(word: &OsStr) -> Vec<u8> {
    let mut quoted = vec![b'\''];
    for &byte in word.as_bytes() {
        if byte == b'\'' {
            quoted.extend_from_slice(b"'\\''");
        } else {
            quoted.push(byte);
        }
    }
    quoted.push(b'\'');
    quoted
}

/// The sandbox's `/etc/passwd`: root (the owner of everything under `/usr`), the app, and
/// nobody (the owner of what a user namespace cannot map).
fn passwd(uid: u32, gid: u32) -> String {
    let mut text = format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n\
         {APP_USER_NAME}:x:{uid}:{gid}:nap app:{HOME_DIR}:/bin/sh\n"
    );
    if uid != NOBODY {
        text.push_str(&format!(
            "nobody:x:{NOBODY}:{NOBODY}:nobody:/nonexistent:/usr/sbin/nologin\n"
        ));
    }
    text
}

/// The sandbox's `/etc/group`, to match [`passwd`].
fn group(gid: u32) -> String {
    let mut text = format!("root:x:0:\n{APP_USER_NAME}:x:{gid}:\n");
    if gid != NOBODY {
        text.push_str(&format!("nogroup:x:{NOBODY}:\n"));
    }
    text
}

/// The overflow uid and gid: what a user namespace shows for ids it does not map.
const NOBODY: u32 = 65534;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(single_quoted(OsStr::new("a b")), b"'a b'");
        assert_eq!(single_quoted(OsStr::new("it's")), b"'it'\\''s'");
        assert_eq!(single_quoted(OsStr::new("$HOME\n`x`")), b"'$HOME\n`x`'");
    }

    #[test]
    fn a_shell_script_renames_the_variables_itself() {
        let script = renaming(&["/bin/sh", "-c", "exec app \"$1\"", "sh", "x y"]);
        assert_eq!(
            script,
            [
                "/bin/sh",
                "-c",
                "eval \"$NAP_SANDBOX_RENAME\"\nexec app \"$1\"",
                "sh",
                "x y"
            ]
            .map(OsString::from)
        );
        let program = renaming(&["/usr/bin/true", "-c"]);
        assert_eq!(
            program,
            [
                "/bin/sh",
                "-c",
                RENAME_SHELL,
                "nap-sandbox",
                "/usr/bin/true",
                "-c"
            ]
            .map(OsString::from)
        );
    }

    #[test]
    fn the_sandbox_names_its_users() {
        assert_eq!(
            passwd(200001, 200002),
            "root:x:0:0:root:/root:/usr/sbin/nologin\n\
             app:x:200001:200002:nap app:/tmp:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        );
        assert_eq!(group(65534), "root:x:0:\napp:x:65534:\n");
    }
}
