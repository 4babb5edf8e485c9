//! `nap`: git push to deploy, in one binary. This file is only glue: parse
//! the arguments, run, print an error once, set the exit code.

mod blocking_write;
mod cli;
mod config;
mod hook;

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: the router spawns a tokio task per
/// client connection, each an aligned allocation, which glibc serves slowly
/// (docs/benchmarks.md, "The router (issue 15)").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nap: {e:#}");
            ExitCode::FAILURE
        }
    }
}
