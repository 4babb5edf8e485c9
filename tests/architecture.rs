//! The crate graph docs/ARCHITECTURE.md promises, checked against `cargo metadata`: which
//! crate may know russh, gix, fleet and the backends, and which must do no IO. The text says
//! why; this says whether it is still true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The workspace's crates and, for each, the crates it uses at run time (normal
/// dependencies, not dev or build ones), by name.
struct Graph {
    members: BTreeSet<String>,
    direct: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn load() -> Graph {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--locked",
                "--manifest-path",
            ])
            .arg(workspace.join("Cargo.toml"))
            .output()
            .expect("run cargo metadata");
        assert!(
            output.status.success(),
            "cargo metadata: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
        let name_of: BTreeMap<&str, &str> = metadata["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().expect("id"),
                    p["name"].as_str().expect("name"),
                )
            })
            .collect();
        let members = metadata["workspace_members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|id| name_of[id.as_str().expect("id")].to_owned())
            .collect();
        let mut direct = BTreeMap::new();
        for node in metadata["resolve"]["nodes"].as_array().expect("resolve") {
            let deps = node["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|dep| {
                    dep["dep_kinds"]
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
                })
                .map(|dep| name_of[dep["pkg"].as_str().expect("pkg")].to_owned())
                .collect();
            direct.insert(name_of[node["id"].as_str().expect("id")].to_owned(), deps);
        }
        Graph { members, direct }
    }

    /// Everything `crate_name` links, directly or not.
    fn closure(&self, crate_name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![crate_name.to_owned()];
        while let Some(next) = todo.pop() {
            for dep in self.direct.get(&next).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen
    }

    /// The workspace crates that use `dependency` directly (`prefix`: any crate whose name
    /// starts with it, like `gix` and `gix-archive`).
    fn users_of(&self, prefix: &str) -> BTreeSet<String> {
        self.members
            .iter()
            .filter(|member| {
                self.direct[*member]
                    .iter()
                    .any(|dep| dep == prefix || dep.starts_with(&format!("{prefix}-")))
            })
            .cloned()
            .collect()
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn only_the_crates_the_text_names_know_russh_gix_and_the_backends() {
    let graph = Graph::load();
    assert_eq!(graph.users_of("russh"), set(&["nap-ssh"]));
    assert_eq!(graph.users_of("gix"), set(&["nap-git"]));
    assert_eq!(graph.users_of("rustls"), set(&["nap-certs"]));
    assert_eq!(graph.users_of("tokio-rustls"), set(&["nap-certs"]));
    // The daemon is where the backends are chosen; nobody else may name one.
    assert_eq!(graph.users_of("nap-fleet"), set(&["nap-daemon"]));
    assert_eq!(graph.users_of("nap-supervisor"), set(&["nap-daemon"]));
    // The build runs only as a step of the daemon's deploy.
    assert_eq!(graph.users_of("nap-build"), set(&["nap-daemon"]));
    assert_eq!(
        graph.users_of("nap-sandbox"),
        set(&["nap-build", "nap-daemon", "nap-supervisor"])
    );
    for backend_free in ["nap-runtime", "nap-web", "nap-router", "nap-ssh", "nap-git"] {
        let links = graph.closure(backend_free);
        for backend in ["nap-supervisor", "nap-fleet"] {
            assert!(!links.contains(backend), "{backend_free} links {backend}");
        }
    }
    // The fleet backend implements the trait on its own.
    let fleet = graph.closure("nap-fleet");
    assert!(
        !fleet.contains("nap-supervisor") && !fleet.contains("nix"),
        "{fleet:?}"
    );
    // The trait crate depends on no crate of nap's at all, nor on process control.
    let runtime = graph.closure("nap-runtime");
    assert!(
        runtime.iter().all(|dep| !dep.starts_with("nap-")) && !runtime.contains("nix"),
        "{runtime:?}"
    );
}

#[test]
fn the_pure_crates_do_no_io() {
    let graph = Graph::load();
    for pure in ["nap-core", "nap-profile"] {
        let links = graph.closure(pure);
        for io in [
            "tokio", "mio", "socket2", "hyper", "axum", "russh", "nix", "gix",
        ] {
            assert!(!links.contains(io), "{pure} links {io}");
        }
        assert!(
            links.iter().all(|dep| !dep.starts_with("nap-")),
            "{pure} uses another crate of nap's: {links:?}"
        );
    }
    // The small shared batteries know nothing of nap.
    let stdx = graph.closure("nap-stdx");
    assert!(stdx.iter().all(|dep| !dep.starts_with("nap-")), "{stdx:?}");
}

#[test]
fn every_crate_has_its_section_in_the_code_map() {
    let graph = Graph::load();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ARCHITECTURE.md"),
    )
    .expect("docs/ARCHITECTURE.md");
    for member in &graph.members {
        assert!(
            text.contains(&format!("### `crates/{member}`")),
            "docs/ARCHITECTURE.md has no section for {member}"
        );
    }
}
