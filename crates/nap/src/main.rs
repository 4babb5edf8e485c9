//! `nap`: git push to deploy, in one binary. This file is only glue: parse
//! the arguments, run, print an error once, set the exit code.

mod cli;
mod config;
mod hook;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nap: {e:#}");
            ExitCode::FAILURE
        }
    }
}
