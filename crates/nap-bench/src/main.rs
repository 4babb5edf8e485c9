//! `nap-bench`: measures nap side by side with the reference stack (OpenSSH's sshd running
//! stock `git-receive-pack` into plain bare repositories) and prints medians, ratios and
//! targets.
//!
//! ```text
//! cargo run --release -p nap-bench [-- --quick] [--runs N] [--only NAME[,NAME]] [--serve-arg ARG]
//!     NAME: router, small, small-fast, build, big, checkout, sessions, scale, sandbox, rss
//! ```
//!
//! It builds nap (`cargo build --release -p nap`) unless `--no-build`, starts every server
//! it measures on 127.0.0.1 in temp directories, and stops all of them (and nap's
//! instances) on exit, on error and on Ctrl-C. It exits 0 whether targets are met or not;
//! non-zero only when it could not run.

mod build_cached;
mod cleanup;
mod figures;
mod install;
mod nginx;
mod report;
mod repos;
mod router;
mod router_under_test;
mod sandbox_start;
mod servers;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

/// The allocator the `nap` binary uses, so that the router figure, which runs the
/// router in this process, measures it as `nap serve` runs it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The figures, in the order they run.
pub const FIGURES: [&str; 10] = [
    "router",
    "checkout",
    "small",
    "small-fast",
    "build",
    "big",
    "sessions",
    "scale",
    "sandbox",
    "rss",
];

/// Command-line options.
#[derive(Debug)]
pub struct Options {
    /// Measured runs per figure (warm-up runs come on top).
    pub runs: usize,
    /// Figures to run.
    pub only: Vec<String>,
    /// The repository generator.
    pub mkrepo: PathBuf,
    /// Skip `cargo build --release -p nap`.
    pub no_build: bool,
    /// The nap binary, instead of the one next to this one.
    pub nap: Option<PathBuf>,
    /// Repack the big repository after generating it.
    pub repack: bool,
    /// Extra arguments for every `nap serve` (to try settings; the report says so).
    pub serve_args: Vec<String>,
    /// Only start what the router figure measures and keep it running (for profiling).
    pub serve_router: bool,
}

impl Options {
    /// Whether `figure` was selected.
    pub fn wants(&self, figure: &str) -> bool {
        self.only.iter().any(|f| f == figure)
    }
}

const USAGE: &str = "\
usage: nap-bench [--quick] [--runs N] [--only NAME[,NAME...]] [--mkrepo PATH] [--no-build] [--nap PATH] [--repack] [--serve-arg ARG]...
  --quick       3 runs per figure instead of 5
  --runs N      N measured runs per figure
  --only NAME   run only these figures: router, small, small-fast, build, big, checkout,
                sessions, scale, sandbox, rss (repeatable)
  --mkrepo PATH the repository generator [default: $NAP_BENCH_MKREPO, else shared/mkrepo.py beside the checkout]
  --no-build    do not run `cargo build --release -p nap` first
  --nap PATH    the nap binary [default: next to this binary, i.e. target/release/nap]
  --repack      repack the generated big repository (the client then reuses its deltas,
                so the big push measures the servers rather than the client's compression)
  --serve-arg A an extra argument for `nap serve` (repeatable; e.g. --serve-arg=--health-grace-ms=200)
  --serve-router  start only what the router figure measures (nginx and nap's router, HTTP
                and HTTPS, in front of two nginx backends), print the ports and keep them
                running until standard input ends: for profiling the router";

fn parse_args() -> anyhow::Result<Option<Options>> {
    let mut options = Options {
        runs: 5,
        only: Vec::new(),
        mkrepo: std::env::var_os("NAP_BENCH_MKREPO").map_or_else(default_mkrepo, PathBuf::from),
        no_build: false,
        nap: None,
        serve_args: Vec::new(),
        repack: false,
        serve_router: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--quick" => options.runs = 3,
            "--runs" => {
                options.runs = value("--runs")?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| format!("--runs: expected a positive number\n{USAGE}"))?;
            }
            "--only" => {
                for name in value("--only")?.split(',').filter(|s| !s.is_empty()) {
                    if !FIGURES.contains(&name) {
                        bail!("--only: unknown figure '{name}'\n{USAGE}");
                    }
                    options.only.push(name.to_owned());
                }
            }
            "--mkrepo" => options.mkrepo = value("--mkrepo")?.into(),
            "--nap" => options.nap = Some(value("--nap")?.into()),
            "--no-build" => options.no_build = true,
            "--repack" => options.repack = true,
            "--serve-arg" => options.serve_args.push(value("--serve-arg")?),
            "--serve-router" => options.serve_router = true,
            _ => bail!("unknown argument '{arg}'\n{USAGE}"),
        }
    }
    if options.only.is_empty() {
        options.only = FIGURES.iter().map(|f| (*f).to_owned()).collect();
    }
    Ok(Some(options))
}

/// The workspace root (this crate is `crates/nap-bench`).
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

fn nap_binary(options: &Options) -> anyhow::Result<PathBuf> {
    if !options.no_build && options.nap.is_none() {
        eprintln!("nap-bench: cargo build --release -p nap");
        let status = Command::new("cargo")
            .args(["build", "--release", "-p", "nap"])
            .current_dir(workspace_root())
            .status()
            .context("cannot run cargo")?;
        if !status.success() {
            bail!("cargo build --release -p nap failed ({status})");
        }
    }
    let bin = match &options.nap {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot find this binary")?
            .with_file_name("nap"),
    };
    if !bin.exists() {
        bail!(
            "{} does not exist; build it with `cargo build --release -p nap` or pass --nap",
            bin.display()
        );
    }
    Ok(bin)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(Some(options)) => options,
        Ok(None) => return ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nap-bench: {error:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = cleanup::install_signal_handler() {
        eprintln!("nap-bench: {error:#}");
        return ExitCode::FAILURE;
    }
    if options.serve_router {
        let served = cleanup::BenchDir::new("nap-bench-router-")
            .and_then(|dir| router::serve_for_profiling(dir.path()));
        return match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("nap-bench: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let bin = match nap_binary(&options) {
        Ok(bin) => bin,
        Err(error) => {
            eprintln!("nap-bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    match figures::run_all(&options, &bin) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("nap-bench: could not run: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `shared/mkrepo.py` beside the checkout (the project's shared folder sits next
/// to the repository's own).
fn default_mkrepo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/mkrepo.py")
}
