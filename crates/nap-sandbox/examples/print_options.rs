//! Prints what a sandbox is made of: bwrap's options (which it reads from a pipe) and the
//! command it runs, for a sample app with one config var and `/opt` as a read-only path.
//!
//! `cargo run -p nap-sandbox --example print_options`

use nap_sandbox::{Identity, Policy, Protected, Sandbox, SandboxOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let release = data_dir.join("apps/myapp/releases/v3");
    let storage = data_dir.join("storage/myapp");
    std::fs::create_dir_all(&release)?;
    let sandbox = Sandbox::probe(&SandboxOptions {
        bwrap: None,
        ro_paths: vec!["/opt".into()],
        protected: Protected {
            control_socket: data_dir.join("nap.sock"),
            data_dir: data_dir.clone(),
            home: None,
        },
        state_dir: data_dir.join("sandbox"),
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
    nap_sandbox::prepare_writable_dir(&storage, identity)?;
    let policy = Policy {
        release,
        release_writable: false,
        storage,
        cache: None,
        env: [
            ("PORT".to_owned(), "20001".to_owned()),
            ("DATABASE_URL".to_owned(), "postgres://u:pw@db/x".to_owned()),
        ]
        .into(),
        identity,
    };
    let launch = sandbox.launch(&policy, &["/bin/sh", "-c", "exec python3 app.py"])?;
    // One option per line, with its arguments.
    let mut line = String::new();
    for word in launch.bwrap_options() {
        let word = word.to_string_lossy();
        if word.starts_with("--") && !line.is_empty() {
            println!("{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        if word.contains(['\n', ' ', '"', '$']) {
            line.push_str(&format!("{word:?}"));
        } else {
            line.push_str(&word);
        }
    }
    println!("{line}");
    let command: Vec<String> = launch
        .sandboxed_command()
        .iter()
        .map(|word| format!("{:?}", word))
        .collect();
    println!("-- {}", command.join(" "));
    Ok(())
}
