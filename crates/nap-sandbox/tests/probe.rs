//! The probe at daemon start: it finds a working sandbox or says what is missing and how to
//! fix it; and the operator's read-only paths, checked against nap's own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nap_sandbox::{ProbeError, Protected, Sandbox, SandboxOptions};

use crate::both_modes;
use crate::util::{Fixture, is_root, is_unprivileged_rerun, self_command, write};

fn options(fx: &Fixture, bwrap: Option<PathBuf>, ro_paths: Vec<PathBuf>) -> SandboxOptions {
    SandboxOptions {
        bwrap,
        ro_paths,
        protected: Protected {
            data_dir: fx.data_dir.clone(),
            home: Some(fx.home.clone()),
            control_socket: fx.control_socket.clone(),
        },
        state_dir: fx.state_dir(),
    }
}

async fn probe_error(options: &SandboxOptions) -> String {
    Sandbox::probe(options)
        .await
        .expect_err("the probe fails")
        .to_string()
}

both_modes! {
    async fn a_missing_bwrap_says_how_to_install_it(fx: Fixture) {
        let message =
            probe_error(&options(&fx, Some("/nonexistent/bwrap".into()), Vec::new())).await;
        assert!(message.contains("/nonexistent/bwrap"), "{message}");
        assert!(message.contains("apt-get install bubblewrap"), "{message}");
        assert!(message.contains("isolation: none"), "{message}");
    }
}

both_modes! {
    async fn a_program_that_is_not_bwrap_is_refused(fx: Fixture) {
        let message = probe_error(&options(&fx, Some("/usr/bin/true".into()), Vec::new())).await;
        assert!(message.contains("/usr/bin/true does not look like bubblewrap"), "{message}");
    }
}

both_modes! {
    async fn an_old_bwrap_is_refused_with_the_version_needed(fx: Fixture) {
        // A fake: no bwrap older than 0.8 can be installed here. It answers `--version` as
        // bubblewrap 0.4.1 did, and would fail anything else.
        let fake = fx.root.path().join("old-bwrap");
        write(&fake, "#!/bin/sh\n[ \"$1\" = --version ] && echo 'bubblewrap 0.4.1'\nexit 1\n");
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        eprintln!("using a fake bwrap that says it is 0.4.1");
        let message = probe_error(&options(&fx, Some(fake), Vec::new())).await;
        assert!(message.contains("is bubblewrap 0.4.1, too old"), "{message}");
        let needed = if is_root() { "0.5.0" } else { "0.8.0" };
        assert!(message.contains(&format!("needs {needed} or newer")), "{message}");
        assert!(message.contains("isolation: none"), "{message}");
    }
}

both_modes! {
    async fn nap_paths_inside_what_every_sandbox_sees_are_refused(fx: Fixture) {
        // A daemon whose home is under /usr would show it to every app.
        let mut options = options(&fx, None, Vec::new());
        options.protected.home = Some("/usr/lib/nap-home".into());
        let message = probe_error(&options).await;
        assert!(
            message.contains("the daemon's home /usr/lib/nap-home lies inside /usr"),
            "{message}"
        );
    }
}

both_modes! {
    async fn read_only_paths_that_would_expose_nap_are_refused(fx: Fixture) {
        let data_parent = fx.data_dir.parent().expect("a parent").to_owned();
        let link = fx.root.path().join("innocent-looking");
        std::os::unix::fs::symlink(&fx.data_dir, &link).expect("symlink");
        let cases: Vec<(PathBuf, String)> = vec![
            ("/".into(), "refused, it is the whole host filesystem".into()),
            (
                data_parent.clone(),
                format!("refused, it contains the data directory {}", fx.data_dir.display()),
            ),
            (
                fx.data_dir.join("apps"),
                format!("refused, it lies inside the data directory {}", fx.data_dir.display()),
            ),
            (link.clone(), "refused, it contains the data directory".into()),
            ("/tmp".into(), "refused, it would replace the sandbox's own /tmp".into()),
            ("/etc".into(), "refused, it would replace the sandbox's own /etc".into()),
            ("/proc/1".into(), "refused, it would replace the sandbox's own /proc".into()),
            ("opt/runtime".into(), "expected an absolute path".into()),
            ("/opt/../var/lib".into(), "expected a path without '..'".into()),
        ];
        for (path, expected) in cases {
            let message = probe_error(&options(&fx, None, vec![path.clone()])).await;
            assert!(
                message.starts_with(&format!("sandbox_ro_paths: {}: ", path.display())),
                "{message}"
            );
            assert!(message.contains(&expected), "{path:?}: {message}");
        }
        // The home rule: a path containing the daemon's home.
        let mut home_options = options(&fx, None, vec![fx.home.clone()]);
        home_options.protected.data_dir = "/nonexistent/data".into();
        let message = probe_error(&home_options).await;
        assert!(message.contains("it contains the daemon's home"), "{message}");
    }
}

both_modes! {
    async fn a_read_only_path_is_there_read_only_and_a_missing_one_is_skipped(fx: Fixture) {
        // A runtime outside /usr, as under /opt, here in the fixture (outside the data dir).
        let runtime = fx.root.path().join("runtime");
        write(&runtime.join("bin/tool"), "#!/bin/sh\necho tool ran\n");
        std::fs::set_permissions(runtime.join("bin/tool"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        for dir in [fx.root.path(), &runtime, &runtime.join("bin")] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let alias = fx.root.path().join("runtime-current");
        std::os::unix::fs::symlink(&runtime, &alias).expect("symlink");
        let missing = PathBuf::from("/nonexistent/runtime");
        let sandbox = Sandbox::probe(&options(&fx, None, vec![alias.clone(), missing.clone()]))
            .await
            .expect("the paths are fine");
        assert_eq!(sandbox.ro_paths().skipped, vec![missing]);
        assert_eq!(sandbox.ro_paths().bound().collect::<Vec<&Path>>(), vec![alias.as_path()]);
        let launch = sandbox
            .launch(
                &fx.policy(&[]),
                &["/bin/sh", "-c", &format!(
                    "'{alias}/bin/tool' && '{runtime}/bin/tool' && \
                     (touch '{runtime}/new') 2>&1; ls '{data}' 2>&1; true",
                    alias = alias.display(),
                    runtime = runtime.display(),
                    data = fx.data_dir.display(),
                )],
            )
            .expect("a valid policy");
        let run = crate::util::Running::spawn(&launch, launch.command("")).finish().await.ok();
        assert!(run.stdout.starts_with("tool ran\ntool ran\n"), "{run:#?}");
        assert!(run.stdout.contains("Read-only file system"), "{run:#?}");
        assert!(run.stdout.contains("No such file or directory"), "the data dir: {run:#?}");
    }
}

/// Set for the run of this test inside a user namespace that may not have children.
const NO_USERNS_VAR: &str = "NAP_SANDBOX_TEST_NO_USERNS";

#[tokio::test]
async fn without_user_namespaces_an_ordinary_user_is_told_what_to_enable() {
    const NAME: &str = "probe::without_user_namespaces_an_ordinary_user_is_told_what_to_enable";
    if std::env::var_os(NO_USERNS_VAR).is_some() {
        let fx = Fixture::new_unprobed();
        let error = Sandbox::probe(&options(&fx, None, Vec::new()))
            .await
            .expect_err("no user namespace can be made");
        let message = error.to_string();
        eprintln!("the probe says: {message}");
        assert!(
            matches!(error, ProbeError::UserNamespaces { .. }),
            "{message}"
        );
        assert!(
            message.contains("user.max_user_namespaces is 0"),
            "{message}"
        );
        assert!(
            message.contains("sysctl -w user.max_user_namespaces="),
            "{message}"
        );
        assert!(message.contains("isolation: none"), "{message}");
        return;
    }
    if !is_root() || is_unprivileged_rerun() {
        eprintln!("skipped: only root can make a user namespace that forbids nested ones");
        return;
    }
    // A user namespace mapping root and the unprivileged uid, whose own limit of nested user
    // namespaces is 0 (as `sysctl user.max_user_namespaces=0` makes it on a host); in it, the
    // test runs again as the unprivileged uid, which is what a non-root nap would be.
    let uid = crate::util::UNPRIVILEGED_UID;
    let inner = format!(
        "echo in-namespace; read _ready; exec /bin/sh -c 'echo 0 > /proc/sys/user/max_user_namespaces && \
         exec setpriv --reuid={uid} --regid={uid} --clear-groups -- \"$@\"' sh {}",
        self_command(NAME)
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = tokio::process::Command::new("unshare")
        .args(["--user", "--", "/bin/sh", "-c", &inner])
        .env(NO_USERNS_VAR, "1")
        .env("HOME", "/nonexistent")
        .current_dir("/")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("unshare runs");
    let pid = child.id().expect("a pid");
    // Its ids can be mapped once it is in its new namespace, which it says.
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    {
        use tokio::io::AsyncBufReadExt;
        tokio::time::timeout(crate::util::STEP, stdout.read_line(&mut first))
            .await
            .expect("in time")
            .expect("read");
    }
    assert_eq!(first, "in-namespace\n");
    for (file, id) in [("uid_map", uid), ("gid_map", uid)] {
        std::fs::write(
            format!("/proc/{pid}/{file}"),
            format!("0 0 1\n{id} {id} 1\n"),
        )
        .expect("map the namespace's ids");
    }
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").await.expect("let it go on");
    }
    let mut rest = String::new();
    {
        use tokio::io::AsyncReadExt;
        tokio::time::timeout(crate::util::STEP, stdout.read_to_string(&mut rest))
            .await
            .expect("in time")
            .expect("read");
    }
    let output = tokio::time::timeout(crate::util::STEP, child.wait_with_output())
        .await
        .expect("in time")
        .expect("the re-run ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert!(
        output.status.success() && rest.contains("test result: ok. 1 passed"),
        "{rest}{stderr}"
    );
}

both_modes! {
    async fn a_read_only_path_under_etc_joins_the_sandboxs_etc(fx: Fixture) {
        // A runtime's configuration under /etc (Debian's Java keeps it in
        // /etc/java-17-openjdk): any host directory of /etc that the sandbox does not show.
        let Some(dir) = ["/etc/default", "/etc/apt", "/etc/profile.d"]
            .into_iter()
            .map(PathBuf::from)
            .find(|dir| dir.is_dir())
        else {
            eprintln!("skipped: this host has none of the directories tried");
            return;
        };
        let plain = Fixture::new().await;
        let hidden = plain.sh(&format!("ls '{}' 2>&1; true", dir.display())).await.ok();
        assert!(hidden.stdout.contains("No such file or directory"), "{hidden:#?}");
        let sandbox = Sandbox::probe(&options(&fx, None, vec![dir.clone()]))
            .await
            .expect("a path inside /etc is fine");
        let script = format!("ls -A '{}'; cat /etc/passwd | cut -d: -f1", dir.display());
        let launch = sandbox
            .launch(&fx.policy(&[]), &["/bin/sh", "-c", &script])
            .expect("a valid policy");
        let run = crate::util::Running::spawn(&launch, launch.command("")).finish().await.ok();
        let mut host: Vec<String> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        host.sort();
        let listed: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(listed[..host.len()], host.iter().map(String::as_str).collect::<Vec<_>>()[..]);
        assert_eq!(listed[host.len()..], ["root", "app", "nobody"], "{run:#?}");
    }
}
