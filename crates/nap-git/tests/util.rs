//! Fixtures made with the real `git`, isolated from the user's configuration.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary directory holding a work repository made by `fixtures/app.sh` and,
/// after [`Fixture::push_to_new_bare`], a bare repository made by `nap_git::init_bare`.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub work: PathBuf,
    pub bare: PathBuf,
}

impl Fixture {
    /// The app fixture, pushed to a fresh bare repository.
    pub fn app() -> Fixture {
        let fixture = Fixture::app_work_only();
        fixture.push_to_new_bare();
        fixture
    }

    /// The app fixture's work repository only.
    pub fn app_work_only() -> Fixture {
        let tmp = tempfile::tempdir().expect("temp dir");
        let work = tmp.path().join("work");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/app.sh");
        run(git_env(Command::new("sh").arg(script).arg(&work)));
        let bare = tmp.path().join("app.git");
        Fixture { tmp, work, bare }
    }

    /// `nap_git::init_bare` the bare repository and push master to it.
    pub fn push_to_new_bare(&self) {
        nap_git::init_bare(&self.bare).expect("init_bare");
        git(&self.work, &["push", "-q", path_str(&self.bare), "master"]);
    }

    /// Moves the bare repository's loose objects into `objects/incoming-test`, as git's
    /// push quarantine holds them during pre-receive; returns that directory.
    pub fn quarantine_loose_objects(&self) -> std::path::PathBuf {
        let objects = self.bare.join("objects");
        let incoming = objects.join("incoming-test");
        std::fs::create_dir(&incoming).expect("create the quarantine");
        for entry in std::fs::read_dir(&objects).expect("read objects") {
            let entry = entry.expect("read objects");
            if entry.file_name().len() == 2 {
                std::fs::rename(entry.path(), incoming.join(entry.file_name()))
                    .expect("move into the quarantine");
            }
        }
        incoming
    }

    /// The id of `rev` in the work repository.
    pub fn rev_parse(&self, rev: &str) -> String {
        git(&self.work, &["rev-parse", rev]).trim().to_owned()
    }

    /// The bare repository opened without quarantine.
    pub fn open(&self) -> nap_git::Repo {
        nap_git::open(&self.bare, &nap_git::Quarantine::default()).expect("open")
    }
}

/// Run `git -C dir args…` and return its stdout; panics with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let mut command = Command::new("git");
    command.arg("-C").arg(dir).args(args);
    let output = run(git_env(&mut command));
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// A command with git's user and system configuration switched off and a fixed identity.
pub fn git_env(command: &mut Command) -> &mut Command {
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Nap Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Nap Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .env_remove("GIT_DIR")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
}

/// Run `command`, panicking with its output unless it succeeds.
pub fn run(command: &mut Command) -> Output {
    let output = command.output().expect("spawn");
    assert!(
        output.status.success(),
        "{command:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Every path under `dir` whose file name is `name`.
pub fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if entry.file_name() == name {
            found.push(path.clone());
        }
        if entry.file_type().expect("file type").is_dir() {
            found.extend(find_named(&path, name));
        }
    }
    found
}

/// Run a git `command` (already given its arguments) with `stdin`, returning stdout trimmed.
pub fn git_stdin(command: &mut Command, stdin: &str) -> String {
    use std::io::Write;
    let mut child = git_env(command)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{command:?} failed");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}
