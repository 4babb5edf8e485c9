//! What the benchmark needs from Debian, installed when it is missing and the
//! benchmark runs as root; otherwise one message that names the packages.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::Options;

/// A program the benchmark runs, the Debian package it comes with, and the figures
/// that need it.
struct Need {
    program: &'static str,
    package: &'static str,
    figures: &'static [&'static str],
}

const NEEDS: [Need; 6] = [
    Need {
        program: crate::servers::SSHD,
        package: "openssh-server",
        figures: &["small", "small-fast", "big", "sessions"],
    },
    Need {
        program: crate::nginx::NGINX,
        package: "nginx",
        figures: &["router"],
    },
    Need {
        program: "/usr/bin/wrk",
        package: "wrk",
        figures: &["router"],
    },
    Need {
        program: "/usr/bin/openssl",
        package: "openssl",
        figures: &["router"],
    },
    Need {
        program: "/usr/bin/busybox",
        package: "busybox",
        figures: &["small-fast", "sandbox"],
    },
    Need {
        program: "/usr/bin/bwrap",
        package: "bubblewrap",
        figures: &[
            "small",
            "small-fast",
            "big",
            "sessions",
            "scale",
            "sandbox",
            "rss",
        ],
    },
];

/// The packages the chosen figures need that are not installed.
fn missing(options: &Options) -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = NEEDS
        .iter()
        .filter(|need| need.figures.iter().any(|figure| options.wants(figure)))
        .filter(|need| !Path::new(need.program).exists())
        .map(|need| need.package)
        .collect();
    packages.dedup();
    packages
}

fn apt_get(args: &[&str]) -> anyhow::Result<bool> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .context("cannot run apt-get")?;
    Ok(status.success())
}

/// Installs what the chosen figures need, as root; fails with the list of packages
/// otherwise.
pub fn ensure(options: &Options) -> anyhow::Result<()> {
    let packages = missing(options);
    if packages.is_empty() {
        return Ok(());
    }
    let list = packages.join(" ");
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the chosen figures need the Debian packages {list}, which are not installed; \
             run nap-bench as root (it then installs them itself), or install them with\n  \
             sudo apt-get install -y --no-install-recommends {list}\n\
             or leave those figures out with --only"
        );
    }
    eprintln!("nap-bench: apt-get install -y --no-install-recommends {list}");
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&packages);
    // A fresh machine may have no package lists yet, or stale ones: then update
    // them and try once more.
    let installed = apt_get(&install)? || (apt_get(&["update"])? && apt_get(&install)?);
    if !installed {
        bail!("apt-get install {list} failed");
    }
    let still = missing(options);
    if !still.is_empty() {
        bail!(
            "apt-get installed {list}, but {} is still missing",
            still.join(" ")
        );
    }
    Ok(())
}
