//! Prints the bwrap options and command of a sample launch (for the docs).
use nap_sandbox::{Identity, Policy, Protected, Sandbox, SandboxOptions};
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?.keep();
    let dir = tempfile::TempDir::new_in(&dir)?.keep();
    struct D(std::path::PathBuf);
    impl D {
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    let dir = D(dir);
    let data_dir = dir.path().join("data");
    let release = data_dir.join("apps/myapp/releases/v3");
    let storage = data_dir.join("storage/myapp");
    std::fs::create_dir_all(&release)?;
    std::fs::create_dir_all(&storage)?;
    let sandbox = Sandbox::probe(&SandboxOptions {
        bwrap: None,
        ro_paths: vec!["/opt".into()],
        protected: Protected {
            control_socket: data_dir.join("nap.sock"),
            data_dir,
            home: None,
        },
        state_dir: dir.path().join("state"),
    })
    .await?;
    let identity = if sandbox.runs_as_root() {
        Identity::AppUser {
            uid: 200_001,
            gid: 200_001,
        }
    } else {
        Identity::DaemonUser
    };
    let policy = Policy {
        release,
        release_writable: false,
        storage,
        cache: None,
        env: [
            ("PORT".to_owned(), "20001".to_owned()),
            (
                "DATABASE_URL".to_owned(),
                "postgres://u:secret@db/x".to_owned(),
            ),
        ]
        .into(),
        identity,
    };
    let launch = sandbox.launch(&policy, &["/bin/sh", "-c", "exec python3 app.py"])?;
    let mut line = String::new();
    for o in launch.bwrap_options() {
        let o = o.to_string_lossy();
        if o.starts_with("--") && !line.is_empty() {
            println!("{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        if o.contains(['\n', ' ', '"', '$']) {
            line.push_str(&format!("{o:?}"));
        } else {
            line.push_str(&o);
        }
    }
    println!("{line}");
    if let Some(out) = std::env::var_os("OPTIONS_OUT") {
        let mut b = Vec::new();
        for o in launch.bwrap_options() {
            use std::os::unix::ffi::OsStrExt;
            b.extend_from_slice(o.as_bytes());
            b.push(0);
        }
        std::fs::write(out, b)?;
    }
    println!(
        "-- {}",
        launch
            .sandboxed_command()
            .iter()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut command = launch.command("");
    let child = launch.spawn(&mut command)?;
    let _ = child.wait_with_output().await?;
    Ok(())
}
