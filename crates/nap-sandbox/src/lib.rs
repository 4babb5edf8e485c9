//! The sandbox every instance, build and one-off command of an app runs in.
//!
//! An app's code is untrusted: anyone allowed to push can make it do anything its uid may do.
//! This crate turns a typed [`Policy`] and a command into a [`Launch`] of bubblewrap (`bwrap`,
//! a small, audited setuid-free tool that Flatpak uses), and [`Sandbox::probe`] proves at
//! daemon start that such a sandbox can be made on this host, or says what is missing.
//!
//! # What an app sees
//!
//! The sandbox's filesystem is an allowlist, not the host's `/` with holes in it: anything
//! not listed here does not exist inside, so a new secret on the host is hidden by default.
//!
//! | inside                         | what it is                                              |
//! |--------------------------------|---------------------------------------------------------|
//! | `/app` (working directory)     | the release tree, read-only (writable for the build)    |
//! | `/storage` (`$NAP_STORAGE`)    | the app's persistent directory, writable                |
//! | `/cache` (`$NAP_CACHE`)        | the build cache, writable, when the policy has one      |
//! | `/tmp` (`HOME`), `/dev/shm`    | private, empty tmpfs, gone when the process ends        |
//! | `/usr`, `/bin`, `/lib`, ...    | the host's programs and libraries, read-only            |
//! | `/etc`                         | read-only: copies of a few host files programs need (DNS, hosts, time zone, `ld.so.cache`, ...), the host's CA certificates and `alternatives` links, and its own `passwd`/`group` naming only root, the app (`app`) and nobody |
//! | the operator's paths           | `sandbox_ro_paths` (a runtime under `/opt`), read-only  |
//! | `/proc`                        | its own: only the sandbox's processes                    |
//! | `/dev`                         | `null`, `zero`, `full`, `random`, `urandom`, a `/dev/tty` that is `/dev/null`, its own `pts` |
//!
//! So nap's data directory (users, host key, secrets, other apps' configs, repositories and
//! release trees), the control socket, the daemon's home, `/root`, `/home`, `/etc/shadow`,
//! `/var`, `/run` and `/sys` are not there at all. The root of the sandbox is read-only:
//! the app can write only to `/storage`, `/cache`, `/tmp` and `/dev/shm`.
//!
//! # What an app is
//!
//! - Its own PID namespace (it sees and can signal only its own processes; bwrap's small init
//!   is pid 1), IPC namespace, UTS namespace, cgroup namespace and mount namespace.
//! - `no_new_privs`, no capabilities (effective, permitted, inheritable, ambient and bounding
//!   sets all empty).
//! - With [`Identity::AppUser`] (nap runs as root): its own uid and gid, no supplementary
//!   groups; what it writes in its storage belongs to that uid on the host.
//! - With [`Identity::DaemonUser`] (nap runs as an ordinary user): nap's uid inside a user
//!   namespace of its own, which it cannot nest further.
//! - Its environment is exactly the policy's (plus `NAP_STORAGE`, `NAP_CACHE`, `HOME`, `PATH`
//!   when missing, and `PWD`); nothing of the daemon's is inherited. No environment value
//!   and no host path appears on any process's command line (see `launch.rs`).
//!
//! # What it shares with the host
//!
//! The network namespace: an app listens on `127.0.0.1:$PORT` of the host, where the router
//! and health checks reach it. That also means it can connect to every other loopback port
//! of the host (other apps' instances, local databases) and to abstract unix sockets, and
//! that `/proc/net` lists the host's connections. Unsharing the network would take a veth
//! pair or a port proxy per instance; see `docs/decisions.md`.
//!
//! # Signals and process groups
//!
//! The sandbox stays in its caller's process group (no `--new-session`), so a SIGTERM to the
//! group reaches the app itself, which may shut down gracefully; bwrap's outer process dies
//! of it at once, and bwrap's init (pid 1 inside, which ignores SIGTERM) leaves when the last
//! process inside has gone. SIGKILL to the group kills init, and with it every process of the
//! PID namespace, even one that left the group with `setsid`. There is no
//! `--die-with-parent`: it would turn that SIGTERM into an immediate SIGKILL of the app, and
//! it fires when the *thread* that spawned bwrap ends, which in a tokio daemon is any time.
//!
//! # Composing it
//!
//! ```no_run
//! # async fn example(sandbox: &nap_sandbox::Sandbox, policy: &nap_sandbox::Policy,
//! #     cgroup_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! let launch = sandbox.launch(policy, &["/bin/sh", "-c", "exec python3 app.py"])?;
//! // The prelude runs in the outer shell before it execs bwrap: here it joins a cgroup, so
//! // that bwrap and every process of the sandbox are in it.
//! let mut command = launch.command(&nap_sandbox::join_cgroup(1, 97));
//! command
//!     .arg(cgroup_dir)
//!     .stdout(std::process::Stdio::piped())
//!     .stderr(std::process::Stdio::piped())
//!     .process_group(0);
//! let child = launch.spawn(&mut command)?;
//! # drop(child); Ok(()) }
//! ```
//!
//! **Architecture Invariant:** this is the only crate that knows bubblewrap. It knows nothing
//! of apps, releases or instances: a policy names directories, an environment and an
//! identity, and that is all.

mod etc;
mod launch;
mod policy;
mod ro_paths;
mod sandbox;

pub use launch::{AppStdin, Launch, join_cgroup};
pub use policy::{
    APP_DIR, APP_USER_NAME, CACHE_DIR, CACHE_VAR, DEFAULT_PATH, HOME_DIR, Identity, LaunchError,
    Policy, STORAGE_DIR, STORAGE_VAR, prepare_writable_dir,
};
pub use ro_paths::{Protected, RoPathError, RoPaths, check_ro_paths};
pub use sandbox::{BwrapVersion, ProbeError, Sandbox, SandboxOptions};
